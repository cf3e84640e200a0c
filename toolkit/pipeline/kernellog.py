"""The kernel's log of a run (written by adapters/kernel.py): its last lines for an error, and the
last successful run's log of each notebook, kept in nb2prod's cache directory.

A failed run's log is kept beside its executed notebook (pipeline/execute.py); a successful run's
is copied to ``<cache>/logs/<notebook stem>-<hash of its path>.kernel.log``, replacing the one
of the run before, since the output written below Python (workers, C extensions) is nowhere else.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from ..adapters.kernel import log_tail
from ..resources import cache_root

TAIL_LINES = 20


def tail_block(log: Path, lines: int = TAIL_LINES) -> str:
    """The last lines of the kernel's log, indented, to follow an error's first line."""
    tail = log_tail(log, lines)
    if not tail:
        return ""
    return "\nthe kernel's last output:\n" + "\n".join(f"  | {t}" for t in tail)


def last_log_path(notebook: Path) -> Path:
    """Where the last successful run of ``notebook`` keeps its kernel log."""
    digest = hashlib.sha256(str(notebook.resolve()).encode()).hexdigest()[:12]
    return cache_root() / "logs" / f"{notebook.stem}-{digest}.kernel.log"


def keep_last(log: Path, notebook: Path) -> Path | None:
    """``log`` copied to :func:`last_log_path` (atomically); None when it cannot be (a log is
    never worth failing a run for)."""
    target = last_log_path(notebook)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(prefix=".", suffix=".partial", dir=target.parent)
        os.close(fd)
        shutil.copyfile(log, partial)
        os.replace(partial, target)
    except OSError:
        return None
    return target
