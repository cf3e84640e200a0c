"""Processes nb2prod starts end when nb2prod does, however it ends (``kill -9`` included).

:func:`die_with_parent` is a ``preexec_fn`` for :class:`subprocess.Popen`: on Linux it asks the
kernel (``prctl(PR_SET_PDEATHSIG)``) to send the child SIGTERM when the thread that started it
dies, so a server started to verify a release, or by ``nb2prod serve``, stops with its parent
instead of answering on. BentoML's server takes SIGTERM as "shut down", stopping its workers.
Elsewhere it does nothing (the child then outlives a parent killed with SIGKILL, as before).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
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
