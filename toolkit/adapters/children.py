"""Processes nb2prod starts end when nb2prod does, however it ends (``kill -9`` included).

:func:`die_with_parent` is a ``preexec_fn`` for :class:`subprocess.Popen`: on Linux it asks the
kernel (``prctl(PR_SET_PDEATHSIG)``) to send the child SIGTERM when the thread that started it
dies, so a server started to verify a release, or by ``nb2prod serve``, stops with its parent
instead of answering on. BentoML's server takes SIGTERM as "shut down", stopping its workers.
Elsewhere it does nothing (the child then outlives a parent killed with SIGKILL, as before).

:class:`Stopping` lets a child's graceful stop (a verify server's workers, a kernel's shutdown)
take its seconds in the background while nb2prod goes on, and still be over before the run is.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that ties the child's life to this process, or None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)  # looked up here, not in the forked child

    def preexec() -> None:  # runs in the child between fork and exec
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return preexec


class Stopping:
    """Children stopped in the background: :meth:`defer` hands a stop (a server's, whose
    workers shut down gracefully, or a kernel's) to a thread while the caller goes on; leaving
    this context waits until every one of them is done, however the block ends."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> Stopping:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait()

    def defer(self, stopping: Callable[[], None]) -> None:
        thread = threading.Thread(target=stopping, name="nb2prod-stop", daemon=True)
        thread.start()
        self._threads.append(thread)

    def wait(self) -> None:
        while self._threads:
            self._threads.pop().join()
