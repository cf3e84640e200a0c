"""A release directory's signature (``release.sig``), checked with a public key.

``nb2prod sign`` (:mod:`.signing`) signs every file of the release directory with OpenSSF
model-signing (``adapters/modelsigning.py``). Here a signed release is checked file by file, so
the error names what changed: a file edited, added or removed since signing, release.json
re-hashed to hide it, a signature made with another key. model-signing's own verifier then has
the last word. The bento's copy of the signature is checked by the service at start
(``runtime/signature.py``) and by :meth:`.reader.Release.check_signature` for a bento tag.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..adapters import modelsigning
from ..errors import SignatureError
from ..runtime import signature as served
from ..runtime.model import sha256_file
from .writer import IMAGES_JSONL

SIGNATURE = served.SIGNATURE
# not signed and not checked: bytecode Python leaves when the service tests run in the release
UNSIGNED_DIRECTORY = "__pycache__"
# nor the append-only record of pushed images (release/writer.py), written after signing: each
# line's digest is the content address of what was pushed, checked by `verify --image NAME@DIGEST`
UNSIGNED_RECORD = IMAGES_JSONL
SIGN_HINT = "Sign the release with `nb2prod sign DIR --key KEY` (docs/security.md)."


def signed_files(root: Path) -> Iterator[str]:
    """The files of a release that its signature covers: all but the signature and bytecode."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        signed = UNSIGNED_DIRECTORY not in relative.parts and relative.as_posix() not in (
            SIGNATURE,
            UNSIGNED_RECORD,
        )
        if signed and path.is_file():
            yield relative.as_posix()


def unsigned_paths(root: Path) -> list[str]:
    """What ``sign`` leaves out (model-signing's ignore paths): the signature, bytecode folders,
    the record of pushed images."""
    folders = {p.relative_to(root).as_posix() for p in root.rglob(UNSIGNED_DIRECTORY) if p.is_dir()}
    record = [UNSIGNED_RECORD] if (root / UNSIGNED_RECORD).exists() else []
    return [SIGNATURE, *record, *sorted(folders)]


def read_public_key(public_key: Path) -> bytes:
    try:
        return public_key.read_bytes()
    except OSError as exc:
        raise SignatureError(
            f"--public-key {public_key}: cannot read it ({exc.strerror})",
            hint="Give the PEM public key of the key the release was signed with.",
        ) from None


def check_directory(root: Path, public_key: Path) -> None:
    """Refuse a release directory whose ``release.sig`` is missing, is not ``public_key``'s, or
    does not sign its files as they are now (each file named)."""
    signature = root / SIGNATURE
    if not signature.is_file():
        raise SignatureError(f"{signature}: missing: the release is not signed", hint=SIGN_HINT)
    try:
        signed = served.signed_digests(
            signature, read_public_key(public_key), f"--public-key {public_key}"
        )
    except served.SignatureError as exc:
        raise SignatureError(
            str(exc), hint="Give the public key of the key that signed this release."
        ) from None
    present = set(signed_files(root))
    differing = [
        f"{root / relative}: "
        + (
            "signed but missing"
            if relative not in present
            else f"sha256 differs from the one {SIGNATURE} signs"
        )
        for relative, digest in sorted(signed.items())
        if relative not in present or sha256_file(root / relative) != digest
    ]
    differing += [
        f"{root / r}: not part of the signed release" for r in sorted(present - set(signed))
    ]
    if differing:
        raise SignatureError(
            "; ".join(differing) + f": the release was modified after it was signed ({signature})",
            hint="Use the release as it was signed, or re-package and sign it again.",
        )
    modelsigning.verify(root, signature, public_key)
