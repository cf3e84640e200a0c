"""What ``package`` prepares in a thread while the notebook's kernel runs.

The packager's own process waits for the kernel (a separate process) for most of execute. The
stages after it import heavy libraries for the first time: detect-secrets for the leak scan,
matplotlib for the report's pictures. Those imports (seconds, with nothing to wait for) run
meanwhile in one daemon thread; the stages then find the modules imported. Only imports: no
setting and no state of those libraries is changed, and a failure is ignored (the stage that
needs the library imports it again and reports its own error).

:meth:`Warmup.join` is called before the first stage that uses them, so no two threads of
nb2prod import the same modules at the same time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence

from ..adapters import charts, secrets


class Warmup:
    def __init__(self, steps: Sequence[Callable[[], None]] = (secrets.prepare, charts.prepare)):
        self._steps = tuple(steps)
        self._thread = threading.Thread(target=self._run, name="nb2prod-warmup", daemon=True)

    def start(self) -> Warmup:
        self._thread.start()
        return self

    def _run(self) -> None:
        for step in self._steps:
            with contextlib.suppress(Exception):
                step()

    def join(self) -> None:
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join()
