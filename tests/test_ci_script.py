"""`.ci/run` is what CI runs on a clean clone: a broken line there fails every landing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / ".ci" / "run"


def test_the_ci_script_parses_and_runs_make_test_then_lint() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    commands = [
        line.strip()
        for line in SCRIPT.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[:2] == ["set -euo pipefail", 'cd "$(dirname "$0")/.."']
    assert commands[-2:] == ["make test", "make lint"]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_shellcheck_finds_nothing_in_the_ci_script() -> None:
    found = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert found.returncode == 0, found.stdout
