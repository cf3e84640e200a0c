"""End-to-end fixtures: a real kernel, real `bentoml build`, real servers on loopback."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from nb2prod.adapters import container
from nb2prod.adapters.pip_config import host_pip_settings

from tests.conftest import ROOT, copy_iris

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """nb2prod's wheel built from the tree, once for the session (tests/e2e/test_installed.py and
    tests/e2e/test_corpus.py install it into fresh venvs)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, cwd=out,
    )  # fmt: skip
    (built,) = out.glob("nb2prod-*.whl")
    return built


# What tests/e2e/test_corpus.py measured (seconds), printed at the end of the session.
CORPUS_TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CORPUS_TIMINGS:
        return
    terminalreporter.section("corpus timings (tests/e2e/test_corpus.py)")
    for name, seconds in CORPUS_TIMINGS.items():
        terminalreporter.write_line(f"{name:<40} {seconds:8.1f} s")
    terminalreporter.write_line(f"{'total':<40} {sum(CORPUS_TIMINGS.values()):8.1f} s")


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def nb2prod(
    *args: str | Path,
    cwd: Path | None = None,
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> Run:
    """Run the real command line in a subprocess, as a user would (``env``: variables to add)."""
    proc = subprocess.run(
        [sys.executable, "-m", "nb2prod", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        timeout=timeout,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


def bento_tags() -> Sequence[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "bentoml", "list", "-o", "json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    import json

    return sorted(b["tag"] for b in json.loads(proc.stdout or "[]"))


@pytest.fixture(scope="session")
def iris_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """The iris example packaged once for the session: (release directory, the run). A first
    run, whatever ran before it: its run cache is its own (:func:`iris_cache`), not the one
    other tests that package iris share."""
    work = tmp_path_factory.mktemp("iris")
    notebook = copy_iris(work)
    run = nb2prod(
        "package", notebook, "--out", work / "dist" / "iris-classifier-1.0.0",
        env={"NB2PROD_CACHE_DIR": str(work / "cache")},
    )  # fmt: skip
    assert run.code == 0, run.stdout + run.stderr
    return work / "dist" / "iris-classifier-1.0.0", run


def iris_cache(iris_release: tuple[Path, Run]) -> dict[str, str]:
    """The environment that packages with the run cache of :func:`iris_release`'s run."""
    return {"NB2PROD_CACHE_DIR": str(iris_release[0].parent.parent / "cache")}


IMAGE = "localhost/iris-classifier:e2e"


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    engine = container.choose("podman")
    return subprocess.run(
        engine.command(*args), capture_output=True, text=True, env=engine.environment(),
        check=check, timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="session")
def private_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A container store of the session's own, emptied and removed afterwards. Modules that use
    podman name it in ``pytest.mark.usefixtures`` so that every podman command sees it."""
    root = tmp_path_factory.mktemp("containers")
    conf = root / "storage.conf"
    conf.write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/graph"\nrunroot = "{root}/run"\n'
    )
    saved = os.environ.get("CONTAINERS_STORAGE_CONF")
    os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)
    try:
        yield root
    finally:
        podman("rm", "--all", "--force", check=False)
        podman("rmi", "--all", "--force", check=False)
        if saved is None:
            os.environ.pop("CONTAINERS_STORAGE_CONF", None)
        else:
            os.environ["CONTAINERS_STORAGE_CONF"] = saved
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class MarkedBundle:
    path: Path
    marker: str  # a line of a certificate that exists only in this bundle


@pytest.fixture(scope="session")
def ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> MarkedBundle:
    """The host's CA bundle (pip must work in the build) plus a certificate of our own whose
    base64 lines can be looked for in every layer."""
    host = host_pip_settings().cert or Path(ssl.get_default_verify_paths().cafile or "")
    assert host.is_file(), "no CA bundle on this host"
    work = tmp_path_factory.mktemp("ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=nb2prod test CA marker", "-keyout", str(work / "key.pem"),
         "-out", str(work / "marker.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    marker_pem = (work / "marker.pem").read_text()
    bundle = work / "nb2prod-test-ca-bundle.pem"
    bundle.write_text(host.read_text() + "\n" + marker_pem)
    body = [li for li in marker_pem.splitlines() if li and not li.startswith("-----")]
    return MarkedBundle(bundle, body[len(body) // 2])


@pytest.fixture(scope="session")
def base_image(private_store: Path) -> tuple[Run, Run]:
    """`nb2prod base-image` twice: built, then reused."""
    first = nb2prod("base-image", timeout=900)
    assert first.code == 0, first.stdout + first.stderr
    second = nb2prod("base-image")
    assert second.code == 0, second.stdout + second.stderr
    return first, second


@pytest.fixture(scope="session")
def image(
    iris_release: tuple[Path, Run], base_image: tuple[Run, Run], ca_bundle: MarkedBundle
) -> Run:
    release, _ = iris_release
    run = nb2prod(
        "containerize", release, "--backend", "podman", "--ca-bundle", ca_bundle.path,
        "--tag", IMAGE, timeout=1200,
    )  # fmt: skip
    assert run.code == 0, run.stdout + run.stderr
    return run
