"""Adapter: where a notebook stands in git (commit and dirty flag), for provenance."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GitState:
    commit: str | None  # None: not in a repository (or git is not installed)
    dirty: bool | None


def git_state(path: Path) -> GitState:
    directory = path.resolve().parent

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, check=False
        )

    try:
        head = git("rev-parse", "HEAD")
    except FileNotFoundError:
        return GitState(None, None)
    if head.returncode != 0:
        return GitState(None, None)
    status = git("status", "--porcelain")
    return GitState(head.stdout.strip(), bool(status.stdout.strip()))
