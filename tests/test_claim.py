"""One run at a time per destination, and what a killed run left (release/claim.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nb2prod.errors import ReleaseBusyError
from nb2prod.release.claim import claim, claim_file

HOLD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from nb2prod.release.claim import claim
    destination, leftover = Path(sys.argv[1]), Path(sys.argv[2])
    with claim(destination) as held:
        leftover.mkdir(parents=True)
        held.record(path=leftover, bento="iris-classifier:deadbeef")
        print("holding", flush=True)
        time.sleep(600)
    """
)


def hold(destination: Path, leftover: Path) -> subprocess.Popen[str]:
    """A run in another process that claims ``destination``, records what it made, and waits."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(destination), str(leftover)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == "holding\n"
    return proc


def test_a_second_run_is_refused_naming_the_first(tmp_path: Path) -> None:
    destination = tmp_path / "dist" / "iris-classifier-1.0.0"
    first = hold(destination, tmp_path / "staging")
    try:
        with pytest.raises(ReleaseBusyError) as refused, claim(destination):
            pass
        assert f"pid {first.pid}" in refused.value.message
        assert str(destination) in refused.value.message
    finally:
        first.kill()
        first.wait()


def test_a_killed_run_gives_the_claim_back_and_its_leftovers_are_named(tmp_path: Path) -> None:
    destination = tmp_path / "dist" / "iris-classifier-1.0.0"
    staging = tmp_path / "dist" / "iris-classifier-1.0.0.partial-x"
    first = hold(destination, staging)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    with claim(destination) as held:
        assert held.found is not None
        assert held.found.pid == first.pid
        assert held.found.paths == (staging,)
        assert held.found.bentos == ("iris-classifier:deadbeef",)
        assert f"pid {first.pid}" in held.found.describe()
        held.forget(path=staging, bento="iris-classifier:deadbeef")
    with claim(destination) as again:  # forgotten, then emptied: nothing is found twice
        assert again.found is None


def test_the_claim_is_kept_out_of_the_destinations_directory(tmp_path: Path) -> None:
    destination = tmp_path / "dist" / "iris-classifier-1.0.0"
    with claim(destination):
        assert not (tmp_path / "dist").exists() or list((tmp_path / "dist").iterdir()) == []
    assert claim_file(destination) != claim_file(tmp_path / "other" / "iris-classifier-1.0.0")


def test_a_run_that_ends_leaves_nothing_recorded(tmp_path: Path) -> None:
    destination = tmp_path / "iris-classifier-1.0.0"
    with pytest.raises(RuntimeError), claim(destination) as held:
        held.record(path=tmp_path, bento="x:1")
        recorded = json.loads(claim_file(destination).read_text())
        assert recorded["bentos"] == ["x:1"] and recorded["pid"] == os.getpid()
        raise RuntimeError("a stage failed")
    assert claim_file(destination).read_text() == ""
    with claim(destination) as held:
        assert held.found is None


def test_leftovers_that_are_gone_are_not_named(tmp_path: Path) -> None:
    destination = tmp_path / "iris-classifier-1.0.0"
    claim_file(destination).parent.mkdir(parents=True, exist_ok=True)
    claim_file(destination).write_text(
        json.dumps({"pid": 1, "started": "then", "paths": [str(tmp_path / "gone")]})
    )
    with claim(destination) as held:
        assert held.found is None  # nothing of it is left: nothing to clean, nothing to say
