"""``nb2prod sign``: a release directory signed offline with a private key.

The release is checked first (every file as release.json records it, its bento as packaged):
a signature vouches for what nb2prod packaged, never for a release changed since. Every file of
the directory but bytecode is signed with OpenSSF model-signing (``adapters/modelsigning.py``)
into ``release.sig``; the same signature goes into the bento in the store (``src/release.sig``),
so that it travels into the image and the service can check it at start
(``runtime/signature.py``). Both are written by ``writer.write_atomic``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..adapters import bento, modelsigning
from ..errors import SignatureError
from .reader import resolve
from .signature import SIGNATURE, signed_files, unsigned_paths
from .writer import write_atomic


@dataclass(frozen=True)
class Signed:
    """What ``sign`` wrote."""

    signature: Path  # release.sig in the release directory
    files: int  # how many files it signs
    bento_copy: Path | None  # the bento's copy; None when the bento is not in this store
    key_id: str  # sha256 of the public key (PEM), as the signature's hint records it

    def summary(self) -> str:
        copy = f"; copied into the bento ({self.bento_copy})" if self.bento_copy else ""
        return (
            f"{self.files} files signed into {self.signature} (key sha256:{self.key_id[:16]}){copy}"
        )


def sign(target: str, key: Path) -> Signed:
    """Sign the release directory ``target`` with the PEM private key ``key``."""
    release = resolve(target)
    root = release.directory
    if root is None:
        raise SignatureError(
            f"{target}: a bento, not a release directory: sign the release directory",
            hint="Give the directory `nb2prod package` wrote (dist/<name>-<version>/).",
        )
    if not key.is_file():
        raise SignatureError(
            f"--key {key}: no such file",
            hint="Give the PEM private key to sign with (docs/security.md says how to make one).",
        )
    release.check_integrity()
    with tempfile.TemporaryDirectory(prefix="nb2prod-sign-") as scratch:
        made = Path(scratch) / SIGNATURE
        modelsigning.sign(root, key, made, ignore=unsigned_paths(root))
        data = made.read_bytes()
    write_atomic(root / SIGNATURE, data)
    bento_copy = None
    if bento.exists(release.bento_tag):
        bento_copy = write_atomic(bento.path_of(release.bento_tag) / "src" / SIGNATURE, data)
    return Signed(
        signature=root / SIGNATURE,
        files=sum(1 for _ in signed_files(root)),
        bento_copy=bento_copy,
        key_id=_key_id(data),
    )


def _key_id(signature: bytes) -> str:
    """model-signing's key hint: the sha256 of the public key's PEM."""
    return str(json.loads(signature)["verificationMaterial"]["publicKey"]["hint"])
