"""deploy/ for the iris release: the golden tree, and the generated Deployment actually run.

`podman kube play` runs the Deployment from `nb2prod deploy-files` with a Secret holding the token
and the image built by `nb2prod containerize` (pinned by digest), then requests through the
published port must answer like the notebook (the same comparison `nb2prod verify` makes) and a
request without the token must get 401; `podman kube down` removes it all. What podman 4.3 lacks
is added to the test's copy only: it has no `--publish`, so the container port gets a hostPort on
loopback; it runs one pod per Deployment, so replicas is 1.
"""

from __future__ import annotations

import base64
import json
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes_validate
import pytest
import yaml
from nb2prod.adapters.locust import LOCUSTFILE
from nb2prod.adapters.loopback import free_port, wait_ready
from nb2prod.pipeline.verify import check_served, expectations
from nb2prod.release.reader import Release

from tests.conftest import tree_snapshot
from tests.e2e.conftest import IMAGE, Run, nb2prod, podman
from tests.golden import compare_tree

pytestmark = pytest.mark.e2e
_MISSING = [t for t in ("podman", "mmdebstrap", "openssl", "catatonit") if shutil.which(t) is None]
needs_podman = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"{', '.join(_MISSING)} not installed (.ci/run installs them from Debian's packages; "
    "podman kube play builds its pause image with catatonit)",
)


@pytest.fixture(scope="module")
def deploy_dir(iris_release: tuple[Path, Run], tmp_path_factory: pytest.TempPathFactory) -> Path:
    release, _ = iris_release
    out = tmp_path_factory.mktemp("deploy") / "iris"
    run = nb2prod("deploy-files", release, "--out", out)
    assert run.code == 0, run.stdout + run.stderr
    assert "wrote 26 files" in run.stdout
    return out


def test_deploy_files_writes_what_the_release_has_in_deploy(
    iris_release: tuple[Path, Run], deploy_dir: Path
) -> None:
    """package wrote deploy/ after verify; deploy-files makes the same bytes from release.json."""
    release, _ = iris_release
    assert tree_snapshot(deploy_dir) == tree_snapshot(release / "deploy")
    manifest = json.loads((release / "release.json").read_text())
    assert manifest["serving"]["cold_start_s"] > 0 and manifest["serving"]["memory_bytes"] > 0
    assert "deploy/kubernetes/deployment.yaml" in manifest["files"]


def test_deploy_files_of_the_iris_release_match_the_golden_tree(
    deploy_dir: Path, request: pytest.FixtureRequest
) -> None:
    files = tree_snapshot(deploy_dir)
    # the locustfile is nb2prod's own, the same in every release: compared with it, not a golden
    assert files.pop("locustfile.py") == LOCUSTFILE.read_bytes()
    compare_tree(
        files, "deploy-iris", update=request.config.getoption("--update-goldens"),
        measured_memory=True,
    )  # fmt: skip
    for path, data in files.items():
        if path.startswith(("kubernetes/", "canary/")):
            kubernetes_validate.validate(yaml.safe_load(data), "1.29.0", strict=True)


@pytest.fixture
def kube_yaml(
    iris_release: tuple[Path, Run], image: Run, tmp_path: Path
) -> Iterator[tuple[Path, int, str]]:
    """(kube play file, loopback port, token) for the iris image pinned by digest; the pod and
    the Secret are removed afterwards whatever happened."""
    release, _ = iris_release
    digest = podman("image", "inspect", "--format", "{{.Digest}}", IMAGE).stdout.strip()
    pinned = f"{IMAGE.rsplit(':', 1)[0]}@{digest}"
    out = tmp_path / "deploy"
    run = nb2prod("deploy-files", release, "--image", pinned, "--out", out)
    assert run.code == 0 and "not pinned" not in run.stdout, run.stdout + run.stderr
    deployment = yaml.safe_load((out / "kubernetes" / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == pinned
    port, token = free_port(), secrets.token_urlsafe(24)
    deployment["spec"]["replicas"] = 1
    pod["containers"][0]["ports"][0].update(hostPort=port, hostIP="127.0.0.1")
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": volume["secret"]["secretName"]},
        "type": "Opaque",
        "data": {"token": base64.b64encode(token.encode()).decode()},
    }
    path = tmp_path / "kube.yaml"
    path.write_text(yaml.safe_dump_all([secret, deployment]))
    try:
        yield path, port, token
    finally:
        podman("kube", "down", str(path), check=False)
        podman("secret", "rm", secret["metadata"]["name"], check=False)


def exec_in(name: str, *command: str) -> Any:
    return podman("exec", name, *command, check=False)


@needs_podman
@pytest.mark.usefixtures("private_store")
def test_the_deployment_runs_in_podman_kube_play_with_parity_and_auth(
    iris_release: tuple[Path, Run], kube_yaml: tuple[Path, int, str]
) -> None:
    release, _ = iris_release
    path, port, token = kube_yaml
    started = time.monotonic()
    played = podman("kube", "play", str(path), check=False)
    assert played.returncode == 0, played.stdout + played.stderr
    (name,) = [
        n for n in podman("ps", "--format", "{{.Names}}").stdout.split() if n.endswith("-service")
    ]
    url = f"http://127.0.0.1:{port}"

    def stopped() -> str | None:
        state = podman("inspect", "--format", "{{.State.Status}}", name, check=False)
        return None if state.stdout.strip() == "running" else state.stdout.strip() or "gone"

    assert wait_ready(url, started=started, timeout_s=180, stopped=stopped) is None, podman(
        "logs", name, check=False
    ).stderr[-3000:]

    # The Secret's file is what the service reads. podman 4.3 mounts a Secret's `data` value
    # without base64-decoding it (Kubernetes and later podman decode it): accept either.
    mounted = exec_in(name, "cat", "/var/run/secrets/nb2prod/token").stdout.strip()
    assert mounted in (token, base64.b64encode(token.encode()).decode())
    packaged = Release.open(release)
    examples = packaged.examples
    report = check_served(
        url,
        mounted,
        expectations(examples, packaged.metadata.release.fallback.min_confidence),
        cold_start_s=time.monotonic() - started,
    )
    assert report.differences == () and report.examples == len(examples)
    assert 400 <= report.invalid_status < 500

    denied = httpx.post(f"{url}/v1/predict", json=examples[0].input, timeout=10)
    assert denied.status_code == 401

    # `nb2prod verify --url` says the same of the pod: metadata, examples, 4xx, 401
    token_file = path.parent / "token"
    token_file.write_text(mounted)
    live = nb2prod("verify", release, "--url", url, "--token-file", token_file)
    assert live.code == 0, live.stdout + live.stderr
    assert "✓ metadata" in live.stdout and "✓ no token      HTTP 401" in live.stdout
    assert httpx.get(f"{url}/readyz", timeout=10).status_code == 200  # probes need no token

    # what the manifest asks for holds in the running container
    assert exec_in(name, "id", "-u").stdout.strip() == "10001"
    assert exec_in(name, "touch", "/opt/bento/x").returncode != 0  # read-only root file system
    assert exec_in(name, "touch", "/tmp/x").returncode == 0  # the emptyDir is writable

    down = podman("kube", "down", str(path), check=False)
    assert down.returncode == 0, down.stderr
    assert podman("pod", "ps", "--quiet").stdout.strip() == ""
