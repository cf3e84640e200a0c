"""SBOM and signed releases (issue #25) on the real packaged iris release: its sbom.cdx.json is
valid CycloneDX listing the lock's pins; `nb2prod sign` with a real key pair, then `verify
--public-key` and a real `bentoml serve` with NB2PROD_PUBLIC_KEY_FILE refuse an edited file, a
re-hashed release.json and a swapped bento, naming the file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from nb2prod.adapters import bento
from nb2prod.errors import ServeError
from nb2prod.pipeline.lock import Lock
from nb2prod.release.writer import canonical_json, sha256_bytes, sha256_file

from tests.e2e.conftest import Run
from tests.e2e.test_cleanup import nb2prod_env
from tests.test_signing import key_pair

pytestmark = pytest.mark.e2e

TOKEN = "signing-token-0123456789"


def test_the_release_carries_a_valid_sbom_of_its_lock(iris_release: tuple[Path, Run]) -> None:
    release, _ = iris_release
    data = (release / "sbom.cdx.json").read_bytes()
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(data.decode())
    assert error is None, error
    sbom = json.loads(data)
    lock = Lock(direct=(), text=(release / "requirements.lock").read_text())
    assert {c["name"]: c["version"] for c in sbom["components"]} == lock.pins
    assert "cryptography" in lock.pins  # the start check of a signed release needs it
    manifest = json.loads((release / "release.json").read_text())
    assert manifest["files"]["sbom.cdx.json"] == sha256_bytes(data)
    assert sbom["metadata"]["component"]["version"] == manifest["version"]
    carried = bento.path_of(manifest["bento_tag"]) / "src" / "sbom.cdx.json"
    assert carried.read_bytes() == data  # and so into the image (label nb2prod.sbom)


@pytest.fixture
def signed(iris_release: tuple[Path, Run], tmp_path: Path) -> tuple[Path, Path, str, Path]:
    """(a signed copy of the release, a copy of the BentoML store, the bento tag, the public
    key): the session's own release and store stay intact."""
    release = tmp_path / "iris-classifier-1.0.0"
    shutil.copytree(iris_release[0], release)
    home = tmp_path / "bentoml"
    shutil.copytree(os.environ["BENTOML_HOME"], home, ignore=shutil.ignore_patterns("tmp"))
    private, public = key_pair(tmp_path / "keys")
    run = nb2prod_env("sign", release, "--key", private, BENTOML_HOME=home)
    assert run.code == 0, run.stdout + run.stderr
    assert "files signed into" in run.stdout and "copied into the bento" in run.stdout
    return release, home, json.loads((release / "release.json").read_text())["bento_tag"], public


def refused(release: Path, home: Path, public: Path) -> str:
    run = nb2prod_env(
        "verify", release, "--public-key", public, BENTOML_HOME=home, NB2PROD_API_TOKEN=TOKEN
    )
    assert run.code == 1, run.stdout + run.stderr
    return run.stderr


def test_a_signed_release_verifies_and_an_edited_or_rehashed_one_is_refused(
    signed: tuple[Path, Path, str, Path],
) -> None:
    release, home, _, public = signed
    run = nb2prod_env(
        "verify", release, "--public-key", public, BENTOML_HOME=home, NB2PROD_API_TOKEN=TOKEN
    )
    assert run.code == 0, run.stdout + run.stderr
    assert (
        f"signed by {public}" in run.stdout and "examples answer as in the notebook" in run.stdout
    )

    report = release / "evaluation" / "report.md"
    report.write_text(report.read_text().replace("accuracy", "accuracy (audited)"))
    assert f"{report}: sha256 differs from the one release.sig signs" in refused(
        release, home, public
    )
    manifest = json.loads((release / "release.json").read_text())
    manifest["files"]["evaluation/report.md"] = sha256_file(report)  # hide it from the hashes
    (release / "release.json").write_bytes(canonical_json(manifest))
    stderr = refused(release, home, public)
    assert f"{release / 'release.json'}: sha256 differs from the one release.sig signs" in stderr
    assert f"{report}: sha256 differs" in stderr


def test_a_swapped_bento_is_refused_by_verify_and_by_the_start_check(
    signed: tuple[Path, Path, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    release, home, tag, public = signed
    monkeypatch.setenv("BENTOML_HOME", str(home))
    env = {"NB2PROD_API_TOKEN": TOKEN, "NB2PROD_PUBLIC_KEY_FILE": str(public)}
    with bento.serve(tag, env=env, ready_timeout_s=120):
        pass  # the signed bento starts with the key configured

    # the bento store's copy edited, and its metadata.json re-hashed to pass the hash check
    src = bento.path_of(tag) / "src"
    pipeline = src / "service" / "pipeline.py"
    pipeline.write_text(pipeline.read_text() + "\nopen('/tmp/every-input', 'a')\n")
    metadata_path = src / "service" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["files"]["service/pipeline.py"] = sha256_file(pipeline)
    metadata_path.write_bytes(canonical_json(metadata))

    stderr = refused(release, home, public)
    assert f"{metadata_path}: sha256 differs from the one release.json records" in stderr
    run = nb2prod_env("verify", tag, "--public-key", public, BENTOML_HOME=home)
    assert run.code == 1 and f"{pipeline}: sha256 differs from the one release.sig" in run.stderr
    with pytest.raises(ServeError) as caught, bento.serve(tag, env=env, ready_timeout_s=120):
        pass
    assert "Refusing to start" in caught.value.message
    assert f"{pipeline}: sha256 differs from the one release.sig signs" in caught.value.message
