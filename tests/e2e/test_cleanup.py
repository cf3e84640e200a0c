"""What nb2prod leaves behind: no server after `nb2prod serve` or `nb2prod package` is stopped by a
signal, and nothing in the temporary directory but what an error names."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import nbformat
import psutil
import pytest
from nb2prod.adapters.loopback import free_port

from tests.conftest import IRIS, SLOW_START_ENV, code, copy_iris, slow_start
from tests.e2e.conftest import Run, bento_tags

pytestmark = pytest.mark.e2e


def nb2prod_env(*args: str | Path, **env: str | Path) -> Run:
    """The real command line in a subprocess, with extra environment variables."""
    proc = subprocess.run(
        [sys.executable, "-m", "nb2prod", *map(str, args)],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, **{k: str(v) for k, v in env.items()}},
    )  # fmt: skip
    return Run(proc.returncode, proc.stdout, proc.stderr)


def running(processes: set[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.Error:
            pass
    return alive


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return False
    with socket.socket() as listener:
        # SO_REUSEADDR: a connection in TIME_WAIT is not a server; a listening socket still is
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_serving(release: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`nb2prod serve RELEASE` ready on a free port. A port found free can be taken before the
    server binds it (BentoML's own control sockets take free ports too): then another one."""
    for _ in range(3):
        port = free_port()
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nb2prod", "serve", str(release), "--port", str(port)],
                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "NB2PROD_API_TOKEN": "cleanup-token-not-secret"},
                start_new_session=True,  # a signal the test sends reaches this process only
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    return proc, port
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        kill(proc, set())
        if "Address already in use" not in log.read_text():
            break
    raise AssertionError(f"nb2prod serve did not become ready:\n{log.read_text()}")


@pytest.fixture
def started(
    iris_release: tuple[Path, Run], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int, set[psutil.Process]]]:
    """`nb2prod serve RELEASE` ready on a free port: (process, port, what it started)."""
    proc, port = start_serving(iris_release[0], tmp_path / "serve.log")
    spawned = set(psutil.Process(proc.pid).children(recursive=True))
    try:
        yield proc, port, spawned
    finally:  # whatever the test found, stop everything it started
        kill(proc, spawned)


def kill(proc: subprocess.Popen[bytes], spawned: set[psutil.Process]) -> None:
    """SIGKILL ``proc``, what it started and what it has started since."""
    if proc.poll() is None:
        spawned = spawned | set(psutil.Process(proc.pid).children(recursive=True))
        proc.kill()
        proc.wait()
    for process in running(spawned):
        process.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_serve_stops_the_server_and_its_workers_on_a_signal(
    started: tuple[subprocess.Popen[bytes], int, set[psutil.Process]], sig: signal.Signals
) -> None:
    proc, port, spawned = started
    commands = [" ".join(p.cmdline()) for p in spawned]
    assert any("bento_main serve" in c for c in commands), commands
    assert any("worker" in c for c in commands), commands  # workers run in sessions of their own
    os.kill(proc.pid, sig)  # as `kill PID` does, not to the process group
    assert proc.wait(timeout=60) == 128 + sig
    assert running(spawned) == []  # exits only when everything it started is gone
    assert port_is_free(port)


def leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir())


def test_package_and_verify_leave_nothing_in_the_temp_dir(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    notebook = copy_iris(tmp_path)
    release = tmp_path / "dist" / "iris"
    # --no-cache: the notebook runs, as it does the first time
    run = nb2prod_env("package", notebook, "--out", release, "--no-cache", TMPDIR=tmp)
    assert run.code == 0, run.stdout + run.stderr
    assert leftovers(tmp) == []
    checked = nb2prod_env("verify", release, TMPDIR=tmp)
    assert checked.code == 0, checked.stdout + checked.stderr
    assert leftovers(tmp) == []


def test_a_failed_package_keeps_only_the_directory_its_error_names(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    path = copy_iris(tmp_path)
    node = nbformat.read(IRIS, as_version=4)
    node.cells.insert(5, code('#| nb2prod: train\nraise ValueError("labels are missing")'))
    nbformat.write(node, path)
    run = nb2prod_env("package", path, "--out", tmp_path / "dist", TMPDIR=tmp)
    assert run.code == 1
    kept = Path(run.stderr.split("is at ")[1].split()[0])
    assert kept.is_file() and kept.parent.parent == tmp
    assert leftovers(tmp) == [kept.parent.name]
    # the executed notebook and the kernel's log, both named by the error
    assert leftovers(kept.parent) == sorted([kept.name, "kernel.log"])
    assert "kernel.log" in run.stdout + run.stderr


def test_a_failed_verify_keeps_only_the_log_its_error_names(
    iris_release: tuple[Path, Run], tmp_path: Path
) -> None:
    release, _ = iris_release
    tag = json.loads((release / "release.json").read_text())["bento_tag"]
    home = tmp_path / "bentoml"  # a copy of the store, so the session's bento stays intact
    shutil.copytree(os.environ["BENTOML_HOME"], home, ignore=shutil.ignore_patterns("tmp"))
    source = home / "bentos" / tag.replace(":", "/") / "src"
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    # the bento's examples changed after packaging: refused before anything is served
    examples = json.loads((source / "examples.json").read_text())
    examples["examples"][0]["output"]["species"] = "not-a-species"
    (source / "examples.json").write_text(json.dumps(examples))
    refused = nb2prod_env("verify", tag, TMPDIR=tmp, BENTOML_HOME=home)
    assert refused.code == 1 and f"{source / 'examples.json'}: sha256 differs" in refused.stderr
    assert leftovers(tmp) == []

    # a server that stops before it is ready (a kill-switch path it cannot check): its log is
    # kept and named
    verified = nb2prod_env("verify", release, TMPDIR=tmp, NB2PROD_DISABLE_FILE="/" + "x" * 300)
    assert verified.code == 1 and "before it was ready" in verified.stderr, verified.stderr
    (kept,) = tmp.glob("nb2prod-serve-*/serve.log")
    assert f"Full log: {kept}" in verified.stderr
    assert leftovers(tmp) == [kept.parent.name]


def test_kill_during_package_leaves_no_server_staging_bento_or_temp_files(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    notebook = slow_start(copy_iris(tmp_path))  # verify lasts 10 s: the kill comes during it
    dist = tmp_path / "dist"
    tags = bento_tags()
    output = tmp_path / "package.out"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nb2prod", "package", str(notebook), "--out", str(dist / "iris")],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": str(tmp), SLOW_START_ENV: "10"}, start_new_session=True,
        )  # fmt: skip
    spawned: set[psutil.Process] = set()
    try:
        deadline = time.monotonic() + 300
        # the server starts while the bento is built: the kill comes once verify waits for it
        while "▸ verify" not in output.read_text() or not any(
            "bento_main serve" in " ".join(p.cmdline()) for p in running(spawned)
        ):
            assert proc.poll() is None and time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
            with contextlib.suppress(psutil.Error):
                spawned |= set(psutil.Process(proc.pid).children(recursive=True))
        assert "▸ verify" in output.read_text()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM, output.read_text()
        assert running(spawned) == []
        assert leftovers(tmp) == []
        assert list(dist.glob("*")) == []  # the staged release is gone
        assert bento_tags() == tags  # and so is the bento it had built
    finally:
        kill(proc, spawned)
