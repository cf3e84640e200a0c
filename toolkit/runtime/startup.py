"""When a served process started, had imported the service and had loaded the model.

Two marks: :func:`imported` (the last line of the generated service module: it and everything it
imports are loaded) and :func:`loaded` (the end of ``Handlers.__init__``: the model and its fitted
state are loaded), which also writes them as one JSON log line, so that operators see a worker's
start in their logs and ``nb2prod verify`` reads its cold start in phases from them
(docs/service.md, "Cold start"). Times are seconds on the system's boot clock
(``CLOCK_BOOTTIME``), the clock ``/proc/<pid>/stat`` counts a process's start on, the same for
every process of the host (and of its containers).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

MESSAGE = "started"  # the log line's message; its "startup" field holds the marks
FIELD = "startup"
_MARKS: dict[str, float] = {}


def now() -> float:
    """Seconds since boot, on the clock /proc counts process starts on."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_start(pid: int | str = "self", proc: Path = Path("/proc")) -> float | None:
    """When process ``pid`` started, in seconds since boot; None where /proc cannot tell."""
    try:
        stat = (proc / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; starttime is field 22
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def imported() -> None:
    """The service module and its imports are loaded (the first call counts)."""
    _MARKS.setdefault("imported_s", now())


def loaded(logger: logging.Logger) -> dict[str, Any]:
    """The model and its fitted state are loaded: log this process's marks, and return them."""
    marks = marks_now()
    logger.info(MESSAGE, extra={"fields": {FIELD: marks}})
    return marks


def marks_now() -> dict[str, Any]:
    """This process's marks: its start, imported and loaded (seconds since boot), and its pid."""
    loaded_at = now()
    return {
        "pid": os.getpid(),
        "process_start_s": process_start(),
        "imported_s": _MARKS.get("imported_s"),
        "loaded_s": loaded_at,
    }
