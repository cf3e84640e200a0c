"""The corpus (tests/corpus/): notebooks written here, each reproducing a pattern seen in a public
notebook, annotated as on a first try. Each is packaged by the installed wheel in one fresh venv
with the corpus's libraries, from a directory outside the repository, then served; inputs that
are not among its examples must get 200 answers, not degraded, the same from `/v1/predict` and
`/v1/predict_batch`.

The venv is made once for the session from the versions this interpreter has (so pip takes the
wheels it already downloaded or has on disk, and PyTorch is not fetched twice in one CI run). The
time of the set-up and of each notebook (package, then serve and answer) is printed at the end of
the session.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest
from nb2prod.adapters.loopback import free_port, wait_ready

from tests.conftest import ROOT
from tests.corpus.make_corpus import CORPUS
from tests.e2e.conftest import CORPUS_TIMINGS

pytestmark = pytest.mark.e2e

CORPUS_DIR = ROOT / "tests" / "corpus"
# What the corpus's notebooks import, installed at this interpreter's versions.
LIBRARIES = ("scikit-learn", "pandas", "lightgbm", "xgboost-cpu", "torch", "statsmodels")
TOKEN = "corpus-test-token-not-secret"
REL_TOL = 1e-9  # as verify: JSON round-trips floats exactly; this only absorbs BLAS reordering

# Notebooks that do not package (or answer) on the first try, each with the reason; strict, so the
# mark must go when the fix lands. None is marked now.
KNOWN: dict[str, str] = {}


@dataclass(frozen=True)
class CorpusEnv:
    venv: Path
    env: dict[str, str]

    @property
    def nb2prod(self) -> str:
        return str(self.venv / "bin" / "nb2prod")


@pytest.fixture(scope="session")
def corpus_env(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> CorpusEnv:
    started = time.monotonic()
    venv = tmp_path_factory.mktemp("corpus-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pins = [f"{name}=={version(name)}" for name in LIBRARIES]
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(wheel), *pins],
        capture_output=True, text=True, cwd=venv.parent, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    CORPUS_TIMINGS["set-up: venv with the wheel and libraries"] = time.monotonic() - started
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{os.environ['PATH']}"
    return CorpusEnv(venv, env)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b and type(a) is type(b))


def _unseen(folder: Path, name: str) -> list[dict[str, Any]]:
    nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    unseen: list[dict[str, Any]] = nb.metadata["nb2prod_test"]["unseen"]
    return unseen


def _answers(release: Path, corpus_env: CorpusEnv, inputs: list[dict[str, Any]]) -> None:
    port = free_port()
    server = subprocess.Popen(
        [corpus_env.nb2prod, "serve", str(release), "--port", str(port)],
        cwd=release.parent.parent, env=corpus_env.env | {"NB2PROD_API_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        gone = wait_ready(
            url,
            started=time.monotonic(),
            timeout_s=180,
            stopped=lambda: None if server.poll() is None else f"exit {server.returncode}",
        )
        assert gone is None, f"nb2prod serve {release} stopped before it was ready ({gone})"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        examples = [
            e["input"] for e in json.loads((release / "examples.json").read_text())["examples"]
        ]
        assert not [i for i in inputs if i in examples], "an unseen input is one of the examples"
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            singles = []
            for item in inputs:
                answer = client.post("/v1/predict", json=item)
                assert answer.status_code == 200, f"{item}: {answer.status_code} {answer.text}"
                body = answer.json()
                assert body["degraded"] is False, f"{item}: degraded: {body}"
                singles.append(body["output"])
            batch = client.post("/v1/predict_batch", json={"inputs": inputs})
            assert batch.status_code == 200, batch.text
            results = batch.json()["results"]
            assert [r["degraded"] for r in results] == [False] * len(inputs), results
            for item, single, result in zip(inputs, singles, results, strict=True):
                assert _same(single, result["output"]), (
                    f"{item}: /v1/predict answered {single}, /v1/predict_batch {result['output']}"
                )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(e.name, marks=[pytest.mark.xfail(strict=True, reason=KNOWN[e.name])])
        if e.name in KNOWN
        else e.name
        for e in CORPUS
    ],
)
def test_corpus_notebook_packages_and_answers_unseen_inputs(
    name: str, corpus_env: CorpusEnv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder = tmp_path_factory.mktemp(f"corpus-{name}") / name
    shutil.copytree(CORPUS_DIR / name, folder)
    run = _package(name, folder, corpus_env)
    assert run.returncode == 0, f"nb2prod package {name}.ipynb:\n{run.stdout}\n{run.stderr}"
    _serve_and_answer(name, folder, corpus_env)


@pytest.mark.parametrize("name", [e.name for e in CORPUS if e.bug])
def test_the_bug_a_first_try_had_is_named_and_its_fix_reuses_the_training(
    name: str, corpus_env: CorpusEnv, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The notebook as it was first written (its `bug`, make_corpus.py): the package names the
    cause; the user makes the fix the message suggests, and the re-package reuses the training."""
    folder = tmp_path_factory.mktemp(f"corpus-bug-{name}") / name
    shutil.copytree(CORPUS_DIR / name, folder)
    path = folder / f"{name}.ipynb"
    bug = nbformat.read(path, as_version=4).metadata["nb2prod_test"]["bug"]
    _apply(path, bug["fixed"], bug["buggy"])
    # a cache of its own: the fixed notebook is the one the first-try test packaged, whose run
    # the shared cache would give back whole
    corpus_env = CorpusEnv(
        corpus_env.venv, corpus_env.env | {"NB2PROD_CACHE_DIR": str(folder.parent / "cache")}
    )
    run = _package(name, folder, corpus_env, "with the bug")
    said = run.stdout + run.stderr
    assert run.returncode == 1, f"the package of {name} with its bug did not fail:\n{said}"
    assert not [text for text in bug["error"] if text not in said], said
    _apply(path, bug["buggy"], bug["fixed"])
    run = _package(name, folder, corpus_env, "after the fix")
    assert run.returncode == 0, f"nb2prod package {name}.ipynb:\n{run.stdout}\n{run.stderr}"
    _assert_trained_state_reused(run.stdout)
    _serve_and_answer(name, folder, corpus_env, "after the fix")


def _serve_and_answer(name: str, folder: Path, corpus_env: CorpusEnv, when: str = "") -> None:
    (release,) = (folder / "dist").glob("*-1.0.0")
    started = time.monotonic()
    try:
        _answers(release, corpus_env, _unseen(folder, name))
    finally:
        CORPUS_TIMINGS[f"{name}: serve and answer{' ' + when if when else ''}"] = (
            time.monotonic() - started
        )


def _package(
    name: str, folder: Path, corpus_env: CorpusEnv, when: str = ""
) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    try:
        return subprocess.run(
            [corpus_env.nb2prod, "package", f"{name}.ipynb"],
            cwd=folder, env=corpus_env.env, capture_output=True, text=True, timeout=1800,
            check=False,
        )  # fmt: skip
    finally:
        CORPUS_TIMINGS[f"{name}: package{' ' + when if when else ''}"] = time.monotonic() - started


def _apply(path: Path, before: str, after: str) -> None:
    node = nbformat.read(path, as_version=4)
    (cell,) = [c for c in node.cells if c.cell_type == "code" and before in c.source]
    cell.source = cell.source.replace(before, after)
    nbformat.write(node, path)


def _assert_trained_state_reused(stdout: str) -> None:
    """A first run whose probe fails (the single/batch check) keeps its trained state, so the run
    after the fix reuses it."""
    (line,) = [li for li in stdout.splitlines() if li.startswith("✓ execute")]
    assert "reused the trained state of the last run" in line, line
