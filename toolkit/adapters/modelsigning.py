"""OpenSSF model-signing: a directory signed offline with an elliptic-curve private key, and
verified with the public key.

The signature is a Sigstore bundle (``release.sig``): a DSSE envelope over an in-toto statement
listing every file of the directory with its sha256 (model-signing's ``files`` serialization),
no transparency log, no network. Anyone can check it with model-signing's own command
(``model_signing verify key DIR --signature DIR/release.sig --public_key PUB``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature

from ..errors import SignatureError


def sign(directory: Path, key: Path, signature: Path, ignore: Iterable[str]) -> None:
    """Sign every file of ``directory`` but ``ignore`` (relative paths) into ``signature``."""
    import model_signing

    try:
        hashing = model_signing.hashing.Config().set_ignored_paths(paths=list(ignore))
        config = model_signing.signing.Config().use_elliptic_key_signer(private_key=key)
        config.set_hashing_config(hashing).sign(directory, signature)
    # not a PEM private key (ValueError), encrypted (TypeError), not an elliptic-curve key such
    # as ed25519 (AttributeError: model-signing asks the key for its curve)
    except (ValueError, TypeError, AttributeError) as exc:
        raise SignatureError(
            f"{key}: model-signing cannot sign with it ("
            + ("not an elliptic-curve key" if isinstance(exc, AttributeError) else str(exc))
            + ")",
            hint="Give an unencrypted PEM elliptic-curve private key (P-256, P-384 or P-521), "
            "e.g. `openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 "
            "-nocrypt -out release.key` (docs/security.md).",
        ) from None


def verify(directory: Path, signature: Path, public_key: Path) -> None:
    """model-signing's verdict: every file ``signature`` signs has that sha256 in ``directory``
    (files it does not sign are the caller's to judge); a failure keeps model-signing's words."""
    import model_signing

    try:
        config = model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public_key)
        config.set_ignore_unsigned_files(True).verify(directory, signature)
    except (ValueError, InvalidSignature) as exc:
        raise SignatureError(
            f"{signature}: model-signing refuses it: {exc or 'the signature does not verify'}"
        ) from None
