"""End-to-end fixtures: a real kernel, real `bentoml build`, real servers on loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import copy_iris

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def nb2prod(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> Run:
    """Run the real command line in a subprocess, as a user would."""
    proc = subprocess.run(
        [sys.executable, "-m", "nb2prod", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
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
    """The iris example packaged once for the session: (release directory, the run)."""
    work = tmp_path_factory.mktemp("iris")
    notebook = copy_iris(work)
    run = nb2prod("package", notebook, "--out", work / "dist" / "iris-classifier-1.0.0")
    assert run.code == 0, run.stdout + run.stderr
    return work / "dist" / "iris-classifier-1.0.0", run
