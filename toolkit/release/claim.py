"""One run at a time per release destination, and what a killed run left, found and removed.

``nb2prod package`` claims its destination (``dist/<name>-<version>``) before it reads what stands
there and holds the claim until the release is committed or discarded. The claim is an exclusive
``flock`` on a file named after the destination's absolute path in nb2prod's cache directory
(``claims/``: nothing is added beside the releases); the kernel drops the lock when the process
ends, however it ends (``kill -9`` included), so a claim can never outlive its run.

While it runs, the claimant records in that file what it is making that a crash would leave
behind: its staging directory, its scratch directory and, once built, its bento. A run that ends
normally empties the file. A run that finds the file non-empty when it takes the claim knows that
the previous run died mid-way; :meth:`Claim.leftovers` lists what that run recorded, and the
caller removes it (and says so). A second run while the first still holds the claim is refused,
naming the first (its pid, command and start time).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ReleaseBusyError
from ..resources import cache_root

CLAIM_SUFFIX = ".claim"


@dataclass(frozen=True)
class Leftovers:
    """What a run that died recorded before it died."""

    pid: int | None
    started: str | None
    paths: tuple[Path, ...] = ()  # staging and scratch directories
    bentos: tuple[str, ...] = ()  # bento tags built for a release that was never committed

    def __bool__(self) -> bool:
        return bool(self.paths or self.bentos)

    def describe(self) -> str:
        parts = [str(p) for p in self.paths] + [f"bento {t}" for t in self.bentos]
        who = f"pid {self.pid}" if self.pid else "an earlier run"
        return f"{who} (started {self.started or 'at an unknown time'}) left " + ", ".join(parts)


@dataclass
class Claim:
    """An exclusive claim on one destination; see the module docstring."""

    destination: Path
    file: Path
    _fd: int
    _state: dict[str, Any] = field(default_factory=dict)
    found: Leftovers | None = None  # what the previous holder left, if it died

    def record(self, *, path: Path | None = None, bento: str | None = None) -> None:
        """Note something a crash would leave behind (written to disk before it exists)."""
        if path is not None:
            self._state.setdefault("paths", []).append(str(path))
        if bento is not None:
            self._state.setdefault("bentos", []).append(bento)
        self._write(self._state)

    def forget(self, *, path: Path | None = None, bento: str | None = None) -> None:
        """Something recorded is gone (removed) or kept (committed): no longer a leftover."""
        if path is not None and str(path) in self._state.get("paths", []):
            self._state["paths"].remove(str(path))
        if bento is not None and bento in self._state.get("bentos", []):
            self._state["bentos"].remove(bento)
        self._write(self._state)

    def _write(self, state: dict[str, Any]) -> None:
        data = json.dumps(state, sort_keys=True).encode() if state else b""
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)


def claim_file(destination: Path) -> Path:
    """The destination's claim file: one per absolute path, in the cache directory."""
    destination = destination.resolve()
    digest = hashlib.sha256(str(destination).encode()).hexdigest()[:32]
    return cache_root() / "claims" / f"{destination.name}-{digest}{CLAIM_SUFFIX}"


def _read(fd: int) -> dict[str, Any]:
    raw = os.pread(fd, 1 << 20, 0)
    if not raw.strip():
        return {}
    try:
        state = json.loads(raw)
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


def _leftovers(state: dict[str, Any]) -> Leftovers | None:
    if not state:
        return None
    return Leftovers(
        pid=state.get("pid"),
        started=state.get("started"),
        paths=tuple(Path(p) for p in state.get("paths", []) if Path(p).exists()),
        bentos=tuple(state.get("bentos", [])),
    )


@contextlib.contextmanager
def claim(destination: Path) -> Iterator[Claim]:
    """Hold the destination's claim for the ``with`` block, or raise :class:`ReleaseBusyError`
    naming the run that holds it. On a normal exit (success or error) the record is emptied;
    what the block recorded and did not forget is its own to remove before it leaves."""
    file = claim_file(destination)
    file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            raise ReleaseBusyError(
                f"{destination}: another nb2prod run is writing this release "
                f"(pid {holder.get('pid', '?')}, started {holder.get('started', '?')}: "
                f"{holder.get('command', '?')})",
                hint="Wait for it to finish, or stop it; a run that was killed gives the claim "
                "back at once.",
            ) from None
        previous = _leftovers(_read(fd))
        state: dict[str, Any] = {
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(sys.argv)[:300],
        }
        if previous:  # keep them recorded until the caller has removed them
            state["paths"] = [str(p) for p in previous.paths]
            state["bentos"] = list(previous.bentos)
        held = Claim(destination.resolve(), file, fd, state, previous or None)
        held._write(state)
        try:
            yield held
        finally:
            held._write({})
    finally:
        os.close(fd)  # closing the last descriptor drops the flock
