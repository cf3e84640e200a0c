"""What ``package`` prepares in a thread while the notebook's kernel runs.

The packager's own process waits for the kernel (a separate process) for most of execute. The
stages after it import heavy libraries for the first time: detect-secrets for the leak scan,
matplotlib for the report's pictures. Those imports (seconds, with nothing to wait for) run
meanwhile in one thread; the stages then find the modules imported. Only imports: no setting and
no state of those libraries is changed, and a failure is ignored (the stage that needs the
library imports it again and reports its own error). The run also hands the thread what it can
know before the kernel is done (:meth:`Warmup.submit`): which distribution provides each module,
the host's pip settings the lock reads.

:meth:`Warmup.join` is called before the first stage that uses them, so no two threads of
nb2prod import the same modules at the same time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

from ..adapters import charts, secrets

T = TypeVar("T")


class Warmup:
    def __init__(self, steps: Sequence[Callable[[], None]] = (secrets.prepare, charts.prepare)):
        self._steps = tuple(steps)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nb2prod-warmup")
        self._started: list[Future[None]] = []

    def __enter__(self) -> Warmup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self._thread.shutdown(wait=True, cancel_futures=True)

    def start(self) -> Warmup:
        self._started = [self._thread.submit(_quietly, step) for step in self._steps]
        return self

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """``job`` run in the thread after the steps; its result (or error) is the future's."""
        return self._thread.submit(job)

    def join(self) -> None:
        """Wait for the steps (not for what was submitted)."""
        wait(self._started)


def _quietly(step: Callable[[], None]) -> None:
    with contextlib.suppress(Exception):
        step()
