"""Signed releases (issue #25): `nb2prod sign` with a real key pair, the release reader's and the
served bento's checks of it, and the bento's verifier held to model-signing's own."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import model_signing
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from nb2prod.adapters import bento
from nb2prod.cli import main
from nb2prod.errors import SignatureError, TargetError
from nb2prod.release.reader import Release
from nb2prod.release.signing import sign
from nb2prod.release.writer import canonical_json, sha256_bytes
from nb2prod.runtime import signature as served
from nb2prod.runtime.schema import ServiceMetadata, load

from tests.test_reader import bento_release, lay_bento

TAG = "iris-classifier:abc"


def key_pair(directory: Path, curve: ec.EllipticCurve | None = None) -> tuple[Path, Path]:
    """A fresh elliptic-curve key pair as PEM files: (private, public)."""
    key = ec.generate_private_key(curve or ec.SECP256R1())
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "release.key", directory / "release.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


@pytest.fixture
def signed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """(a signed release directory, its bento in the store, the public key)."""
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    root, files = bento_release(tmp_path / "dist" / "iris-classifier-1.0.0")
    store = lay_bento(tmp_path / "home", TAG, files)
    private, public = key_pair(tmp_path / "keys")
    made = sign(str(root), private)
    assert made.signature == root / "release.sig"
    assert made.bento_copy == store / "src" / "release.sig"
    assert made.files == len(files) + 1  # every file and release.json
    return root, store, public


def model_signing_verdict(root: Path, public: Path) -> str | None:
    """model-signing's own verifier on the release directory: None when it accepts."""
    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).verify(
            root, root / "release.sig"
        )
    except Exception as exc:  # ValueError for a file, InvalidSignature for a forged statement
        return str(exc) or type(exc).__name__
    return None


def served_verdict(store: Path, public: Path) -> str | None:
    """The served bento's start check with NB2PROD_PUBLIC_KEY_FILE: None when it starts."""
    src = store / "src"
    metadata = load(ServiceMetadata, src / "service" / "metadata.json")
    try:
        served.check_files(src, served.carried_files(metadata), public.read_bytes(), "the key")
    except served.SignatureError as exc:
        return str(exc)
    return None


def refusal(release: Release, public: Path) -> str:
    with pytest.raises(SignatureError) as caught:
        release.check_signature(public)
    return caught.value.message


def test_a_signed_release_verifies_with_nb2prod_model_signing_and_the_served_check(
    signed: tuple[Path, Path, Path],
) -> None:
    root, store, public = signed
    Release.open(root).check_signature(public)
    Release.of_bento(TAG).check_signature(public)
    assert model_signing_verdict(root, public) is None  # model-signing's own CLI would agree
    assert served_verdict(store, public) is None
    assert (store / "src" / "release.sig").read_bytes() == (root / "release.sig").read_bytes()
    statement = json.loads(
        base64.b64decode(json.loads((root / "release.sig").read_text())["dsseEnvelope"]["payload"])
    )
    names = {r["name"] for r in statement["predicate"]["resources"]}
    assert "release.json" in names and "service/pipeline.py" in names
    assert "release.sig" not in names


def test_an_edited_file_is_refused_naming_it(signed: tuple[Path, Path, Path]) -> None:
    root, store, public = signed
    contract = root / "contract.json"
    contract.write_bytes(contract.read_bytes().replace(b'"c', b'"d'))
    message = refusal(Release.open(root), public)
    assert message.startswith(f"{contract}: sha256 differs from the one release.sig signs")
    assert "modified after it was signed" in message
    assert model_signing_verdict(root, public) is not None


def test_a_rehashed_release_json_is_refused_naming_both(signed: tuple[Path, Path, Path]) -> None:
    root, store, public = signed
    pipeline = root / "service" / "pipeline.py"
    pipeline.write_bytes(pipeline.read_bytes() + b"open('/tmp/inputs', 'a')\n")
    shutil.copyfile(pipeline, store / "src" / "service" / "pipeline.py")
    manifest = json.loads((root / "release.json").read_text())
    manifest["files"]["service/pipeline.py"] = sha256_bytes(pipeline.read_bytes())
    (root / "release.json").write_bytes(canonical_json(manifest))
    Release.open(root).check_integrity()  # the hashes alone are fooled by a re-hash
    message = refusal(Release.open(root), public)
    assert f"{root / 'release.json'}: sha256 differs from the one release.sig signs" in message
    assert f"{pipeline}: sha256 differs from the one release.sig signs" in message


def test_an_edited_bento_is_refused_by_the_reader_and_the_start_check(
    signed: tuple[Path, Path, Path],
) -> None:
    root, store, public = signed
    pipeline = store / "src" / "service" / "pipeline.py"
    pipeline.write_bytes(pipeline.read_bytes() + b"open('/tmp/inputs', 'a')\n")
    metadata_path = store / "src" / "service" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())  # re-hashed, so check_files is fooled
    metadata["files"]["service/pipeline.py"] = sha256_bytes(pipeline.read_bytes())
    metadata_path.write_bytes(canonical_json(metadata))
    # the release directory is intact and signed; its signed release.json holds the bento
    with pytest.raises(TargetError) as caught:
        Release.open(root).check_signature(public)
    assert caught.value.message.startswith(f"{metadata_path}: sha256 differs from the one")
    # the bento's own copy of the signature names both files
    message = refusal(Release.of_bento(TAG), public)
    assert f"{metadata_path}: sha256 differs from the one release.sig signs" in message
    assert f"{pipeline}: sha256 differs from the one release.sig signs" in message
    verdict = served_verdict(store, public)
    assert verdict is not None and f"{pipeline}: sha256 differs" in verdict


def test_a_bento_of_another_release_under_the_same_tag_is_refused(
    signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, store, public = signed
    # another release packaged under the same tag and signed with the same key: a genuine
    # signed bento, but not this release's
    other, files = bento_release(tmp_path / "other", pipeline=b"# another notebook's pipeline\n")
    shutil.rmtree(store)
    lay_bento(tmp_path / "home", TAG, files)
    sign(str(other), tmp_path / "keys" / "release.key")
    with pytest.raises(TargetError) as caught:
        Release.open(root).check_signature(public)
    metadata = store / "src" / "service" / "metadata.json"
    assert caught.value.message.startswith(f"{metadata}: sha256 differs from the one release.json")
    assert f"bento {TAG} is not the one packaged with this release" in caught.value.message
    # the served bento proves it is a signed release, not which one: deployments pin the image
    # by digest for that (docs/security.md)
    assert served_verdict(store, public) is None
    # this release's signature copied into the other bento: its files are not the signed ones
    (store / "src" / "release.sig").write_bytes((root / "release.sig").read_bytes())
    verdict = served_verdict(store, public)
    pipeline = store / "src" / "service" / "pipeline.py"
    assert verdict is not None and f"{pipeline}: sha256 differs" in verdict


def test_another_key_a_forged_statement_and_no_signature_are_refused(
    signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    root, store, public = signed
    _, stranger = key_pair(tmp_path / "stranger")
    assert "signed with another key than --public-key" in refusal(Release.open(root), stranger)
    assert model_signing_verdict(root, stranger) is not None
    assert "signed with another key" in (served_verdict(store, stranger) or "")

    # the statement edited to sign an edited file: the envelope's signature no longer verifies
    contract = root / "contract.json"
    contract.write_bytes(b'{"input": {}, "output": {}, "sha256": "evil"}\n')
    bundle = json.loads((root / "release.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    for resource in statement["predicate"]["resources"]:
        if resource["name"] == "contract.json":
            resource["digest"] = sha256_bytes(contract.read_bytes())
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (root / "release.sig").write_text(json.dumps(bundle))
    message = refusal(Release.open(root), public)
    assert message.startswith(f"{root / 'release.sig'}: the signature does not verify")
    assert model_signing_verdict(root, public) is not None

    (root / "release.sig").unlink()
    assert refusal(Release.open(root), public) == (
        f"{root / 'release.sig'}: missing: the release is not signed"
    )


def test_an_added_file_is_refused_but_bytecode_is_not(signed: tuple[Path, Path, Path]) -> None:
    root, _, public = signed
    (root / "service" / "__pycache__").mkdir()
    (root / "service" / "__pycache__" / "pipeline.cpython-311.pyc").write_bytes(b"\0")
    Release.open(root).check_signature(public)
    planted = root / "service" / "sitecustomize.py"
    planted.write_text("import os\n")
    assert refusal(Release.open(root), public).startswith(
        f"{planted}: not part of the signed release"
    )


def test_a_push_recorded_after_signing_keeps_the_signature(
    signed: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """images.jsonl is appended by `containerize --push` after `sign` (the CI workflow's order):
    the record is outside the signature, as it is outside release.json's hashes."""
    from nb2prod.release.writer import IMAGES_JSONL

    root, _, public = signed
    (root / IMAGES_JSONL).write_text('{"destination": "localhost:5000/iris:1.0.0"}\n')
    Release.open(root).check_signature(public)
    sign(
        str(root), root.parent.parent / "keys" / "release.key"
    )  # and signing a release that already records a push leaves it out
    Release.open(root).check_signature(public)


def test_the_served_check_reads_the_key_from_the_environment(
    signed: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, store, public = signed
    src = store / "src"
    metadata = load(ServiceMetadata, src / "service" / "metadata.json")
    monkeypatch.delenv(served.PUBLIC_KEY_ENV, raising=False)
    monkeypatch.delenv(served.PUBLIC_KEY_FILE_ENV, raising=False)
    signature = (src / "release.sig").read_bytes()
    (src / "release.sig").unlink()
    served.check_release(src, metadata)  # no key configured: an unsigned release starts
    monkeypatch.setenv(served.PUBLIC_KEY_ENV, public.read_text())
    with pytest.raises(served.SignatureError, match="release.sig: missing: the release is not"):
        served.check_release(src, metadata)
    (src / "release.sig").write_bytes(signature)
    monkeypatch.setenv(served.PUBLIC_KEY_ENV, public.read_text())
    served.check_release(src, metadata)
    monkeypatch.delenv(served.PUBLIC_KEY_ENV)
    monkeypatch.setenv(served.PUBLIC_KEY_FILE_ENV, str(public))
    served.check_release(src, metadata)
    examples = src / "contract.json"
    examples.write_bytes(examples.read_bytes() + b" ")
    with pytest.raises(served.SignatureError) as caught:
        served.check_release(src, metadata)
    assert str(caught.value).startswith(f"{examples}: sha256 differs from the one release.sig")
    assert str(caught.value).endswith("Refusing to start.")
    monkeypatch.setenv(served.PUBLIC_KEY_FILE_ENV, str(tmp_path / "absent.pub"))
    with pytest.raises(served.SignatureError, match="NB2PROD_PUBLIC_KEY_FILE=.*absent.pub: cannot"):
        served.check_release(src, metadata)


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1()], ids=["P-384", "P-521"])
def test_the_served_verifier_agrees_with_model_signing_on_every_curve(
    curve: ec.EllipticCurve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    root, files = bento_release(tmp_path / "dist" / "iris-classifier-1.0.0")
    store = lay_bento(tmp_path / "home", TAG, files)
    private, public = key_pair(tmp_path / "keys", curve)
    sign(str(root), private)
    assert model_signing_verdict(root, public) is None and served_verdict(store, public) is None
    for where in (root, store / "src"):
        (where / "service" / "pipeline.py").write_bytes(b"# edited\n")
    assert model_signing_verdict(root, public) is not None
    assert served_verdict(store, public) is not None


def test_sign_refuses_a_modified_release_a_bento_and_a_key_it_cannot_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "home"))
    root, files = bento_release(tmp_path / "dist" / "iris-classifier-1.0.0")
    lay_bento(tmp_path / "home", TAG, files)
    private, public = key_pair(tmp_path / "keys")
    with pytest.raises(SignatureError, match=r"release\.pub: model-signing cannot sign with it"):
        sign(str(root), public)
    ed = tmp_path / "ed25519.key"  # model-signing signs with P-256/384/521 keys only
    ed.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(
        SignatureError, match=r"ed25519\.key: .* \(not an elliptic-curve key\)"
    ) as caught:
        sign(str(root), ed)
    assert "P-256, P-384 or P-521" in (caught.value.hint or "")
    monkeypatch.setattr(bento, "info", lambda tag: {"tag": tag})  # `bentoml get` of the fake store
    with pytest.raises(SignatureError, match="a bento, not a release directory"):
        sign(TAG, private)
    (root / "contract.json").write_bytes(b"{}\n")
    with pytest.raises(
        TargetError, match="contract.json: sha256 differs from the one release.json"
    ):
        sign(str(root), private)
    assert not (root / "release.sig").exists()


def test_cli_sign_and_verify_public_key(signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    root, _, public = signed
    private, _ = key_pair(tmp_path / "again")
    result = CliRunner().invoke(main, ["sign", str(root), "--key", str(private)])
    assert result.exit_code == 0, result.output
    assert "files signed into" in result.output and "copied into the bento" in result.output
    # signed again with another key: the first key's holder refuses it before serving anything
    result = CliRunner().invoke(main, ["verify", str(root), "--public-key", str(public)])
    assert result.exit_code == 1
    assert (
        "error:" in result.output and "signed with another key than --public-key" in result.output
    )
