"""How stages report progress: a small protocol the CLI renders; the core never prints."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Progress(Protocol):
    def started(self, stage: str, detail: str) -> None: ...

    def finished(self, stage: str, seconds: float, detail: str) -> None: ...

    def note(self, message: str) -> None: ...

    def update(self, stage: str, detail: str) -> None:
        """What the running ``stage`` is doing now (execute: the cell that runs); each update
        ends the previous step, which took the time since it was made. An empty ``detail`` ends
        the step without beginning another."""


class Silent:
    """A Progress that reports nothing (library use, tests)."""

    def started(self, stage: str, detail: str) -> None:
        pass

    def finished(self, stage: str, seconds: float, detail: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def update(self, stage: str, detail: str) -> None:
        pass


class StageTimer:
    """Times one stage; ``detail`` may be set inside the block to report what it produced."""

    def __init__(self) -> None:
        self.detail = ""


@contextmanager
def stage(progress: Progress, name: str, detail: str = "") -> Iterator[StageTimer]:
    progress.started(name, detail)
    timer = StageTimer()
    start = time.perf_counter()
    yield timer
    progress.finished(name, time.perf_counter() - start, timer.detail)


class RowProgress(Protocol):
    """How a long job over rows (batch scoring) reports how far it is; the CLI draws a bar."""

    def start(self, description: str, total: int | None) -> None: ...

    def advance(self, rows: int) -> None: ...

    def stop(self) -> None: ...


class SilentRows:
    """A RowProgress that reports nothing (library use, tests)."""

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def stop(self) -> None:
        pass
