"""The iris release as an OCI image with a real podman, on a base built by `nb2prod base-image`.

Everything runs in a private container store (CONTAINERS_STORAGE_CONF in a temporary
directory, the session fixture `private_store` in conftest.py) that is emptied afterwards; every
container a test starts is removed. Skipped where podman or mmdebstrap is missing; `.ci/run`
installs them, so it runs in CI.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest
from nb2prod.adapters import container
from nb2prod.image.base import DEFAULT_BASE

from tests.conftest import copy_iris, tree_snapshot
from tests.e2e.conftest import IMAGE, MarkedBundle, Run, nb2prod, podman

_MISSING = [tool for tool in ("podman", "mmdebstrap", "openssl") if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("private_store"),
    pytest.mark.skipif(
        bool(_MISSING),
        reason=f"{', '.join(_MISSING)} not installed (.ci/run installs them from Debian's "
        f"packages: apt-get install {container.DEBIAN_PACKAGES})",
    ),
]


def inspect(reference: str) -> dict:  # type: ignore[type-arg]
    return json.loads(podman("image", "inspect", reference).stdout)[0]  # type: ignore[no-any-return]


def test_base_image_is_built_from_debian_packages_then_reused(
    base_image: tuple[Run, Run],
) -> None:
    first, second = base_image
    assert "backend: podman (docker" in first.stdout or "backend: podman (" in first.stdout
    assert "✓ bootstrap" in first.stdout and "built in" in first.stdout
    assert DEFAULT_BASE in first.stdout and re.search(r"size\s+\d+ MB", first.stdout)
    assert f"reused {DEFAULT_BASE}" in second.stdout and "bootstrap" not in second.stdout
    data = inspect(DEFAULT_BASE)
    assert data["Config"]["Labels"]["org.opencontainers.image.title"] == "nb2prod-base"
    version = podman("run", "--rm", DEFAULT_BASE, "python3", "--version").stdout
    assert version.startswith("Python 3.11.")


def test_containerize_prints_backend_base_and_size(image: Run) -> None:
    assert "backend: podman (" in image.stdout
    assert "passed as a build secret" in image.stdout
    assert f"image {IMAGE}" in image.stdout
    assert re.search(r"size\s+\d+ MB", image.stdout)
    assert "STEP 1/" in image.stdout  # the build's steps are shown as they start


def test_image_answers_like_the_notebook_and_the_container_is_removed(
    iris_release: tuple[Path, Run], image: Run
) -> None:
    release, _ = iris_release
    run = nb2prod("verify", release, "--image", IMAGE)
    assert run.code == 0, run.stdout + run.stderr
    assert "3 examples answer as in the notebook" in run.stdout
    assert "HEALTHCHECK healthy" in run.stdout
    assert re.search(r"ready in \d+\.\d s", run.stdout)
    assert podman("ps", "--all", "--quiet").stdout.strip() == ""


def test_image_runs_as_non_root_with_labels_and_a_healthcheck(
    iris_release: tuple[Path, Run], image: Run
) -> None:
    release, _ = iris_release
    manifest = json.loads((release / "release.json").read_text())
    contract = json.loads((release / "contract.json").read_text())
    data = inspect(IMAGE)
    labels = data["Config"]["Labels"]
    assert labels["org.opencontainers.image.title"] == "iris-classifier"
    assert labels["org.opencontainers.image.version"] == "1.0.0"
    assert labels["org.opencontainers.image.created"]
    assert labels["nb2prod.name"] == "iris-classifier"
    assert labels["nb2prod.bento-tag"] == manifest["bento_tag"]
    assert labels["nb2prod.contract-sha256"] == contract["sha256"]
    # the release's SBOM is in the image, where its label says
    assert labels["nb2prod.sbom"] == "/opt/bento/src/sbom.cdx.json"
    sbom = podman("run", "--rm", IMAGE, "cat", labels["nb2prod.sbom"]).stdout
    assert sbom == (release / "sbom.cdx.json").read_text()
    assert data["Config"]["User"] not in ("", "0", "root", "0:0")
    assert "/readyz" in " ".join(data["Healthcheck"]["Test"])
    uid = podman("run", "--rm", IMAGE, "id", "-u").stdout.strip()
    assert uid != "0"


def test_image_has_no_compiler_toolchain(image: Run) -> None:
    found = podman(
        "run", "--rm", IMAGE, "sh", "-c", "command -v gcc cc c++ make git || true"
    ).stdout  # fmt: skip
    assert found.strip() == ""


# run as the image's user: each module's bytecode is there and matches its source (a stale .pyc
# would be compiled again at every start, and could not be written beside root-owned files)
COMPILED = """
import importlib.util, pathlib, struct
service = pathlib.Path("/opt/bento/src/service")
import bentoml
sources = [service / "service.py", service / "pipeline.py", service / "runtime" / "app.py",
           service / "runtime" / "startup.py", pathlib.Path(bentoml.__file__)]
for source in sources:
    cached = pathlib.Path(importlib.util.cache_from_source(str(source)))
    if not cached.is_file():
        print(f"{source}: no {cached}")
        continue
    header = cached.read_bytes()[:16]
    if int.from_bytes(header[4:8], "little") == 0:  # timestamp-checked (PEP 552)
        mtime, size = struct.unpack("<II", header[8:16])
        stat = source.stat()
        if (mtime, size) != (int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF):
            print(f"{source}: {cached} is stale")
print("checked", len(sources))
"""


def test_image_has_the_service_compiled_at_build_time(image: Run) -> None:
    out = podman("run", "--rm", IMAGE, "python3", "-c", COMPILED).stdout
    assert out.strip() == "checked 5", out


def holding(reference: str, bundle: MarkedBundle, tmp_path: Path) -> tuple[int, list[str]]:
    """(layers scanned, where the bundle was found): file names, file contents and image
    metadata of every blob of the image's OCI archive."""
    archive = tmp_path / f"{reference.rsplit(':', 1)[-1]}.tar"
    podman("save", "--format", "oci-archive", "--output", str(archive), reference)
    marker, name = bundle.marker.encode(), bundle.path.name
    layers, found = 0, []
    with tarfile.open(archive) as outer:
        for blob in outer.getmembers():
            if not blob.isfile():
                continue
            data = outer.extractfile(blob).read()  # type: ignore[union-attr]
            try:
                layer = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")  # noqa: SIM115
            except tarfile.TarError:
                if marker in data or name.encode() in data:
                    found.append(f"{blob.name} (image metadata)")
                continue
            layers += 1
            with layer:
                for member in layer.getmembers():
                    path = member.name.lstrip("./")
                    if path.endswith(name) or (path == "run/secrets/ca" and member.size):
                        found.append(f"{blob.name}: {path}")
                    elif member.isfile():
                        content = layer.extractfile(member).read()  # type: ignore[union-attr]
                        if marker in content:
                            found.append(f"{blob.name}: {path} (content)")
    archive.unlink()
    return layers, found


def test_no_layer_contains_the_ca_bundle(
    image: Run, ca_bundle: MarkedBundle, tmp_path: Path
) -> None:
    layers, found = holding(IMAGE, ca_bundle, tmp_path)
    assert layers >= 5 and found == []


def test_the_layer_scan_finds_a_bundle_that_was_copied_in(
    base_image: tuple[Run, Run], ca_bundle: MarkedBundle, tmp_path: Path
) -> None:
    """The check above can fail: an image that COPYs the bundle is caught."""
    context = tmp_path / "leaky"
    context.mkdir()
    shutil.copy(ca_bundle.path, context / "bundle.pem")
    (context / "Containerfile").write_text(f"FROM {DEFAULT_BASE}\nCOPY bundle.pem /etc/leak.pem\n")
    podman("build", "--format", "docker", "-t", "localhost/leaky:1", str(context))
    _, found = holding("localhost/leaky:1", ca_bundle, tmp_path)
    assert any(f.endswith("etc/leak.pem (content)") for f in found), found
    podman("rmi", "localhost/leaky:1")


def test_a_failed_build_says_why_and_leaves_the_release_untouched(
    iris_release: tuple[Path, Run], image: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, _ = iris_release
    before = tree_snapshot(release)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the failed build's context and log stay
    run = nb2prod(
        "containerize", release, "--base-image", "localhost/nb2prod-no-such-base:1",
        "--tag", "localhost/never:1",
    )  # fmt: skip
    assert run.code == 1
    (line,) = [li for li in run.stderr.splitlines() if li.startswith("error: ")]
    assert "build of localhost/never:1 failed" in line
    assert "hint: Full log:" in run.stderr and "Traceback" not in run.stderr
    (log,) = tmp_path.glob("nb2prod-image-*/build.log")
    assert f"Full log: {log}" in run.stderr
    assert (log.parent / "context" / "Containerfile").is_file()
    assert tree_snapshot(release) == before
    assert podman("image", "exists", "localhost/never:1", check=False).returncode != 0


def test_package_containerize_builds_the_image_of_the_new_release(
    tmp_path: Path, image: Run, ca_bundle: MarkedBundle
) -> None:
    notebook = copy_iris(tmp_path)
    out = tmp_path / "dist" / "iris-classifier-1.0.0"
    run = nb2prod(
        "package", notebook, "--out", out, "--containerize", "--ca-bundle", ca_bundle.path,
        "--tag", "localhost/iris-classifier:packaged", timeout=1200,
    )  # fmt: skip
    assert run.code == 0, run.stdout + run.stderr
    assert "image localhost/iris-classifier:packaged" in run.stdout
    assert "--image localhost/iris-classifier:packaged" in run.stdout
    tag = json.loads((out / "release.json").read_text())["bento_tag"]
    labels = inspect("localhost/iris-classifier:packaged")["Config"]["Labels"]
    assert labels["nb2prod.bento-tag"] == tag
