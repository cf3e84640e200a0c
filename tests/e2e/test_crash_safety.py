"""Accidents a packaging run meets on a real machine (issue #23): a second run into the same
destination, `kill -9` in the middle of verify, a live service beside a packaging run, a packager
whose environment holds credentials."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nbformat
import psutil
import pytest
from nb2prod.adapters import bento

from tests.conftest import IRIS, SLOW_START_ENV, code, copy_iris, slow_start
from tests.e2e.conftest import Run, bento_tags
from tests.e2e.test_cleanup import kill, leftovers, nb2prod_env, running

pytestmark = pytest.mark.e2e

TOKEN = "crash-safety-token-0123"


def package_in_background(
    notebook: Path, out: Path, log: Path, **env: str
) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "nb2prod", "package", str(notebook), "--out", str(out)],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **env}, start_new_session=True,
        )  # fmt: skip


def wait_for(condition, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 400) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)


def test_a_second_run_is_refused_and_kill_9_leaves_nothing_the_next_run_does_not_remove(
    tmp_path: Path,
) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    notebook = slow_start(copy_iris(tmp_path))  # verify lasts 10 s: the kill comes during it
    dist = tmp_path / "dist"
    out = dist / "iris-classifier-1.0.0"
    tags = bento_tags()
    log = tmp_path / "first.out"
    first = package_in_background(notebook, out, log, TMPDIR=str(tmp), **{SLOW_START_ENV: "10"})
    spawned: set[psutil.Process] = set()
    try:
        wait_for(lambda: "execute" in log.read_text(), first, log)
        second = nb2prod_env("package", notebook, "--out", out, TMPDIR=tmp)
        assert second.code == 1
        assert f"another nb2prod run is writing this release (pid {first.pid}" in second.stderr

        def verifying() -> bool:
            with contextlib.suppress(psutil.Error):
                spawned.update(psutil.Process(first.pid).children(recursive=True))
            serving = any("serve" in " ".join(p.cmdline()) for p in running(spawned))
            return serving and "▸ verify" in log.read_text()  # the bento is built: it waits

        wait_for(verifying, first, log)
        first.kill()  # SIGKILL: nothing of nb2prod's own runs on the way out
        first.wait()
        deadline = time.monotonic() + 60
        while running(spawned) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert running(spawned) == []  # the verify server ended with its parent
        assert [p.name for p in dist.iterdir() if ".partial-" in p.name]  # what it left ...
        assert len(bento_tags()) == len(tags) + 1  # ... and the bento it had built

        third = nb2prod_env("package", notebook, "--out", out, TMPDIR=tmp)
        assert third.code == 0, third.stdout + third.stderr
        assert f"cleaned up after an interrupted run: pid {first.pid}" in third.stdout
        assert sorted(p.name for p in dist.iterdir()) == ["iris-classifier-1.0.0"]
        made = json.loads((out / "release.json").read_text())["bento_tag"]
        assert bento_tags() == sorted([*tags, made])  # the killed run's bento is gone
        assert leftovers(tmp) == []
    finally:
        kill(first, spawned)


def served_counters(client: httpx.Client) -> float:
    text = client.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nb2prod_requests_total{") and 'outcome="ok"' in line
    )


def test_a_live_services_counters_survive_another_server_in_the_same_home(
    iris_release: tuple[Path, Run],
) -> None:
    release, _ = iris_release
    tag = json.loads((release / "release.json").read_text())["bento_tag"]
    example = json.loads((release / "examples.json").read_text())["examples"][0]["input"]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        bento.serve(tag, env={"NB2PROD_API_TOKEN": TOKEN}) as live,
        httpx.Client(base_url=live.url, headers=headers, timeout=10) as client,
    ):
        for _ in range(5):
            assert client.post("/v1/predict", json=example).status_code == 200
        assert served_counters(client) == 5
        # what package and verify do: another server starts and stops in the same BENTOML_HOME
        with bento.serve(tag, env={"NB2PROD_API_TOKEN": TOKEN}) as other:
            assert httpx.get(f"{other.url}/readyz", timeout=10).status_code == 200
        assert served_counters(client) == 5
        assert client.post("/v1/predict", json=example).status_code == 200
        assert served_counters(client) == 6


def test_the_kernel_gets_none_of_the_packagers_secrets(tmp_path: Path) -> None:
    path = copy_iris(tmp_path)
    node = nbformat.read(IRIS, as_version=4)
    node.cells.insert(1, code("import os\nprint(sorted(os.environ.items()))"))
    nbformat.write(node, path)
    secrets = {
        "NB2PROD_API_TOKEN": "tok-of-the-packager-0123456",
        "DB_PASSWORD": "db-pass-0123456789",
    }
    out = tmp_path / "dist" / "iris-classifier-1.0.0"
    run = nb2prod_env("package", path, "--out", out, **secrets)
    assert run.code == 0, run.stdout + run.stderr
    executed = (out / "notebook.executed.ipynb").read_text()
    assert "'PATH'" in executed  # the cell printed the kernel's environment ...
    for name, value in secrets.items():  # ... which holds neither name nor value
        assert name not in executed and value not in executed

    # a credential the config lets in and the notebook prints: refused, the cell named
    (tmp_path / "nb2prod.toml").write_text(
        (tmp_path / "nb2prod.toml").read_text() + '\n[execution]\nenv = ["DB_PASSWORD"]\n'
    )
    before = sorted(p.name for p in out.parent.iterdir())
    refused = nb2prod_env("package", path, "--out", out, "--no-cache", "--replace", **secrets)
    assert refused.code == 1
    assert "cell 1 `import os`, output line 1: the value of DB_PASSWORD" in refused.stderr
    assert secrets["DB_PASSWORD"] not in refused.stderr + refused.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == before  # nothing written


def test_kill_9_of_serve_stops_the_server(iris_release: tuple[Path, Run], tmp_path: Path) -> None:
    from tests.e2e.test_cleanup import port_is_free, start_serving

    proc, port = start_serving(iris_release[0], tmp_path / "serve.log")
    spawned = set(psutil.Process(proc.pid).children(recursive=True))
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 60
        while (running(spawned) or not port_is_free(port)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert running(spawned) == []
        assert port_is_free(port)
    finally:
        kill(proc, spawned)
