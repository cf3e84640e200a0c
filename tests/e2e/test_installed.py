"""nb2prod as a user installs it: a wheel built from the tree, a fresh venv, a directory outside the
repository. An editable checkout hides missing package data; this test does not."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from nb2prod.adapters.loopback import free_port, wait_ready

from tests.conftest import IRIS, ROOT

# `wheel`: the session's wheel built from the tree (tests/e2e/conftest.py)

pytestmark = pytest.mark.e2e


def test_the_wheel_is_one_package_with_its_templates(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"nb2prod"}, f"the wheel puts {sorted(top)} into site-packages"
    assert any(n.startswith("nb2prod/templates/release/") for n in names)
    assert any(n.startswith("nb2prod/templates/report/") for n in names)
    assert "nb2prod/runtime/app.py" in names


def test_installed_wheel_checks_packages_and_serves(
    wheel: Path, tmp_path: Path, isolated_state: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[examples]"],
        check=True, capture_output=True, cwd=tmp_path,
    )  # fmt: skip
    work = tmp_path / "user"
    work.mkdir()
    shutil.copy(IRIS, work / "iris.ipynb")
    shutil.copy(IRIS.parent / "nb2prod.toml", work / "nb2prod.toml")
    # nothing of the source tree may be importable: a clean environment, run from elsewhere
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")} | {
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"
    }
    nb2prod = str(venv / "bin" / "nb2prod")
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import nb2prod; print(nb2prod.__file__)"],
        capture_output=True, text=True, cwd=work, env=env, check=True,
    )  # fmt: skip
    assert str(venv) in located.stdout and str(ROOT) not in located.stdout
    # the container path finds its containers.conf inside the installed package (issue #23: it
    # looked for site-packages/templates/), with runc or without
    conf = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "from nb2prod.adapters.container import "
         "containers_conf as c; print(c(runc='/usr/sbin/runc')); print(c(runc=''))"],
        capture_output=True, text=True, cwd=work, env=env, check=True,
    )  # fmt: skip
    for path in conf.stdout.split():
        assert path.startswith(str(venv)) and Path(path).is_file(), path

    checked = subprocess.run(
        [nb2prod, "check", "iris.ipynb"], capture_output=True, text=True, cwd=work, env=env
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    packaged = subprocess.run(
        [nb2prod, "package", "iris.ipynb"], capture_output=True, text=True, cwd=work, env=env
    )
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    release = work / "dist" / "iris-classifier-1.0.0"
    assert (release / "service" / "runtime" / "app.py").is_file()

    port = free_port()
    server = subprocess.Popen(
        [nb2prod, "serve", str(release), "--port", str(port)],
        cwd=work, env=env | {"NB2PROD_API_TOKEN": "installed-test-not-secret"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        gone = wait_ready(
            url,
            started=time.monotonic(),
            timeout_s=90,
            stopped=lambda: None if server.poll() is None else f"exit {server.returncode}",
        )
        assert gone is None, f"nb2prod serve stopped before it was ready ({gone})"
        example = json.loads((release / "examples.json").read_text())["examples"][0]
        answer = httpx.post(
            f"{url}/v1/predict",
            json=example["input"],
            headers={"Authorization": "Bearer installed-test-not-secret"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["output"] == example["output"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
