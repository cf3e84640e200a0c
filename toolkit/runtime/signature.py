"""The release's signature, as a served bento checks it before any worker starts.

``nb2prod sign`` signs the release directory with OpenSSF model-signing and an elliptic-curve
key (docs/security.md): ``release.sig`` is a Sigstore bundle whose DSSE envelope carries an
in-toto statement listing every file of the release with its sha256. The signature is copied
into the bento, so it travels into the image.

A bento has neither model-signing (with Sigstore's client it would double an image's Python
dependencies) nor the release's other files (the notebook, deploy/), so it checks its part: the
envelope's signature under the configured public key, then every file the service reads
(service/metadata.json, the files it records, the runtime copy) against the digest the signed
statement lists for it. Only ``cryptography`` is needed, which every release's lock carries for
this. ``tests/test_signing.py`` holds this reading to model-signing's own verifier on the same
signatures.

With no public key configured the check does nothing: the key is the deployer's, given in the
environment, never in the release (whoever can edit a release could edit a key it carried).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .model import sha256_file
from .schema import ServiceMetadata

SIGNATURE = "release.sig"  # at the top of a release directory and of a bento's src/
PUBLIC_KEY_ENV = "NB2PROD_PUBLIC_KEY"  # the PEM text
PUBLIC_KEY_FILE_ENV = "NB2PROD_PUBLIC_KEY_FILE"  # or a file holding it
PAYLOAD_TYPE = "application/vnd.in-toto+json"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle"
METADATA_JSON = "service/metadata.json"


class SignatureError(RuntimeError):
    """The release's signature is missing, malformed, made with another key, or does not cover
    a file as it is now; the message names the file."""


def configured_public_key() -> tuple[bytes, str] | None:
    """The deployer's public key (PEM) and where it came from: ``NB2PROD_PUBLIC_KEY``, or the
    file ``NB2PROD_PUBLIC_KEY_FILE`` names; None when neither is set."""
    text = os.environ.get(PUBLIC_KEY_ENV, "").strip()
    if text:
        return text.encode(), f"the public key in {PUBLIC_KEY_ENV}"
    name = os.environ.get(PUBLIC_KEY_FILE_ENV, "").strip()
    if not name:
        return None
    try:
        return Path(name).read_bytes(), f"the public key {name} ({PUBLIC_KEY_FILE_ENV})"
    except OSError as exc:
        raise SignatureError(
            f"{PUBLIC_KEY_FILE_ENV}={name}: cannot read the public key ({exc.strerror})"
        ) from None


def carried_files(metadata: ServiceMetadata) -> list[str]:
    """What a bento carries of its release and the service reads: service/metadata.json, every
    file it records, the runtime copy (relative to the release root)."""
    return sorted({METADATA_JSON, *metadata.carried()})


def check_release(root: Path, metadata: ServiceMetadata) -> None:
    """Refuse to start when a public key is configured and ``root``'s ``release.sig`` is not
    that key's signature of the files the service reads, as they are now."""
    try:
        configured = configured_public_key()
        if configured is not None:
            check_files(root, carried_files(metadata), *configured)
    except SignatureError as exc:
        raise SignatureError(f"{exc}. Refusing to start.") from None


def check_files(root: Path, files: Iterable[str], public_key: bytes, key_name: str) -> None:
    """``root``'s signature verified under ``public_key`` (called ``key_name`` in messages),
    and each of ``files`` (relative to ``root``) with the sha256 it signs."""
    path = root / SIGNATURE
    if not path.is_file():
        raise SignatureError(
            f"{path}: missing: the release is not signed, and {key_name} says it must be. "
            "Sign it (nb2prod sign DIR --key KEY) before building its image"
        )
    signed = signed_digests(path, public_key, key_name)
    differing = []
    for relative in sorted(set(files)):
        file = root / relative
        if relative not in signed:
            differing.append(f"{file}: not part of the signed release")
        elif not file.is_file():
            differing.append(f"{file}: signed but missing")
        elif sha256_file(file) != signed[relative]:
            differing.append(f"{file}: sha256 differs from the one {SIGNATURE} signs")
    if differing:
        raise SignatureError(
            "; ".join(differing) + f": the release was modified after it was signed ({path})"
        )


def signed_digests(path: Path, public_key: bytes, key_name: str) -> dict[str, str]:
    """The files ``path`` (a model-signing bundle) signs, relative path -> sha256, once its
    signature verifies under ``public_key`` (called ``key_name`` in messages)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    algorithms: dict[int, type[hashes.HashAlgorithm]] = {  # model-signing's, by curve size
        256: hashes.SHA256,
        384: hashes.SHA384,
        521: hashes.SHA512,
    }
    try:
        key = serialization.load_pem_public_key(public_key)
    except ValueError:
        raise SignatureError(f"{key_name}: not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.key_size not in algorithms:
        raise SignatureError(
            f"{key_name}: not a P-256, P-384 or P-521 key, the curves model-signing signs with"
        )
    bundle = _json(path, path.read_bytes())
    if not isinstance(bundle, dict):
        bundle = {}
    envelope = bundle.get("dsseEnvelope")
    if not str(bundle.get("mediaType", "")).startswith(BUNDLE_MEDIA_TYPE) or not isinstance(
        envelope, dict
    ):
        raise SignatureError(f"{path}: not a model-signing signature (a Sigstore bundle)")
    spki = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hint = bundle.get("verificationMaterial", {}).get("publicKey", {}).get("hint")
    if hint and hint != hashlib.sha256(spki).hexdigest():
        raise SignatureError(f"{path}: signed with another key than {key_name}")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
    except (KeyError, IndexError, TypeError, binascii.Error):
        raise SignatureError(f"{path}: its DSSE envelope has no payload or signature") from None
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise SignatureError(f"{path}: the envelope's payload is not an in-toto statement")
    try:
        key.verify(signature, pae(payload), ec.ECDSA(algorithms[key.curve.key_size]()))
    except InvalidSignature:
        raise SignatureError(
            f"{path}: the signature does not verify under {key_name}: the signature or the "
            "statement it signs was altered"
        ) from None
    return resources(_json(path, payload), path)


def pae(payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding of ``payload`` (what the key signs)."""
    return b"DSSEv1 %d %s %d %s" % (
        len(PAYLOAD_TYPE),
        PAYLOAD_TYPE.encode(),
        len(payload),
        payload,
    )


def resources(statement: Any, path: Path) -> dict[str, str]:
    """The statement's files (relative path -> sha256); only model-signing's per-file sha256
    serialization is understood."""
    if not isinstance(statement, dict):
        statement = {}
    predicate = statement.get("predicate")
    if statement.get("predicateType") != PREDICATE_TYPE or not isinstance(predicate, dict):
        raise SignatureError(f"{path}: not a model-signing statement ({PREDICATE_TYPE})")
    method = predicate.get("serialization", {})
    if method.get("method") != "files" or method.get("hash_type") != "sha256":
        raise SignatureError(
            f"{path}: signs with {method.get('method')}/{method.get('hash_type')}; nb2prod "
            "checks per-file sha256 signatures (nb2prod sign makes them)"
        )
    return {
        str(r["name"]): str(r["digest"])
        for r in predicate.get("resources", [])
        if isinstance(r, dict) and r.get("algorithm") == "sha256"
    }


def _json(path: Path, data: bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise SignatureError(f"{path}: not valid JSON: not a model-signing signature") from None
