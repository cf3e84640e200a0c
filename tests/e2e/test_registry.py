"""`containerize --push` to a real OCI registry on loopback (Debian's `docker-registry`, started
and stopped here), the image pulled back by digest and verified, and deploy files pinned by it.

The registry speaks plain HTTP on a free loopback port with a temporary storage directory, so
every push says `--no-tls-verify`; a push without it must fail and say so. The release is a copy
of the session's iris release: the push record (images.jsonl) stays out of the other tests' way.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from nb2prod.adapters import container
from nb2prod.adapters.loopback import free_port
from nb2prod.release.reader import Release

from tests.e2e.conftest import IMAGE, MarkedBundle, Run, nb2prod, podman

REGISTRY = shutil.which("docker-registry")
_MISSING = [t for t in ("podman", "mmdebstrap", "openssl", "skopeo") if shutil.which(t) is None]
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("private_store"),
    pytest.mark.skipif(
        REGISTRY is None,
        reason="docker-registry not installed (Debian's OCI registry: apt-get install "
        "docker-registry; .ci/run installs it)",
    ),
    pytest.mark.skipif(
        bool(_MISSING),
        reason=f"{', '.join(_MISSING)} not installed (apt-get install skopeo "
        f"{container.DEBIAN_PACKAGES})",
    ),
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a registry of this module's own; stopped and its storage removed after."""
    assert REGISTRY is not None
    work = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = work / "config.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(work / "storage")}},
                "http": {"addr": f"127.0.0.1:{port}"},
            }
        )
    )
    log = (work / "registry.log").open("wb")
    proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (work / "registry.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "docker-registry did not answer /v2/ in 30 s"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def release_copy(iris_release: tuple[Path, Run], tmp_path_factory: pytest.TempPathFactory) -> Path:
    release, _ = iris_release
    copy = tmp_path_factory.mktemp("pushed") / release.name
    shutil.copytree(release, copy)
    return copy


def skopeo_inspect(reference: str) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{reference}"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def containerize(release: Path, ca: MarkedBundle, *push: str) -> Run:
    return nb2prod(
        "containerize", release, "--backend", "podman", "--ca-bundle", ca.path, "--tag", IMAGE,
        *push, timeout=1200,
    )  # fmt: skip


def test_push_records_the_digest_pull_back_by_digest_verify_and_pin(
    release_copy: Path, image: Run, ca_bundle: MarkedBundle, registry: str, tmp_path: Path
) -> None:
    manifest_before = (release_copy / "release.json").read_bytes()
    run = containerize(release_copy, ca_bundle, "--push", f"{registry}/iris-classifier",
                       "--no-tls-verify")  # fmt: skip
    assert run.code == 0, run.stdout + run.stderr
    destination = f"{registry}/iris-classifier:1.0.0"  # the tag defaults to the version
    assert f"pushed {destination}" in run.stdout
    found = re.search(r"digest\s+(sha256:[0-9a-f]{64})", run.stdout)
    assert found, run.stdout
    digest = found.group(1)
    pinned = f"{registry}/iris-classifier@{digest}"
    assert f"pinned     {pinned}" in run.stdout

    # the registry has it under that digest, with the release's labels
    remote = skopeo_inspect(destination)
    assert remote["Digest"] == digest
    packaged = Release.open(release_copy)
    assert remote["Labels"]["nb2prod.bento-tag"] == packaged.bento_tag
    assert skopeo_inspect(pinned)["Digest"] == digest

    # recorded beside the release, which stays intact: release.json is not touched
    (record,) = [json.loads(li) for li in (release_copy / "images.jsonl").read_text().splitlines()]
    assert (record["destination"], record["digest"], record["pinned"]) == (
        destination, digest, pinned
    )  # fmt: skip
    assert (release_copy / "release.json").read_bytes() == manifest_before
    packaged.check_integrity()
    assert [r.digest for r in Release.open(release_copy).pushed_images] == [digest]

    # pulled back by digest and verified against the release
    podman("pull", "--tls-verify=false", pinned)
    verified = nb2prod("verify", release_copy, "--image", pinned, "--backend", "podman")
    assert verified.code == 0, verified.stdout + verified.stderr
    assert "3 examples answer as in the notebook" in verified.stdout

    # deploy-files pins the image by the recorded digest, named by its tag or by nothing
    for given in ([], ["--image", destination]):
        out = tmp_path / f"deploy{len(given)}"
        written = nb2prod("deploy-files", release_copy, *given, "--out", out)
        assert written.code == 0, written.stdout + written.stderr
        assert "digest     from images.jsonl" in written.stdout
        assert "not pinned" not in written.stdout
        deployment = yaml.safe_load((out / "kubernetes" / "deployment.yaml").read_text())
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == pinned
        kserve = (out / "kserve" / "inferenceservice.yaml").read_text()
        assert pinned in kserve and destination not in kserve


def test_a_push_to_a_plain_http_registry_needs_no_tls_verify_said(
    release_copy: Path, image: Run, ca_bundle: MarkedBundle, registry: str
) -> None:
    before = (
        (release_copy / "images.jsonl").read_bytes()
        if (release_copy / "images.jsonl").exists()
        else b""
    )
    run = containerize(release_copy, ca_bundle, "--push", f"{registry}/iris-classifier:tls")
    assert run.code == 1, run.stdout + run.stderr
    assert f"push of {IMAGE} to {registry}/iris-classifier:tls failed" in run.stderr
    assert "--no-tls-verify" in run.stderr  # the hint says what to add
    after = (
        (release_copy / "images.jsonl").read_bytes()
        if (release_copy / "images.jsonl").exists()
        else b""
    )
    assert after == before  # nothing recorded for a failed push
