"""What execute shows and keeps of the kernel's run (adapters/kernel.py writes the log): each cell
as it starts, named as errors name it; the log's last lines for an error; and the last successful
run's log of each notebook, kept in nb2prod's cache directory.

A failed run's log is kept beside its executed notebook (pipeline/execute.py); a successful run's
is copied to ``<cache>/logs/<notebook stem>-<hash of its path>.kernel.log``, replacing the one
of the run before, since the output written below Python (workers, C extensions) is nowhere else.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import nbformat

from ..adapters.kernel import log_tail
from ..notebook.annotations import Cell
from ..progress import Progress
from ..resources import cache_root
from .capture import CAPTURE_TAG

TAIL_LINES = 20


def cell_line(
    position: int, total: int, cell: nbformat.NotebookNode, cells: Mapping[int, Cell]
) -> str:
    """How the progress and the kernel log name a cell as it starts: ``[k/N]`` (its place among
    the code cells that run), then the cell as errors name it (index, role, first line);
    ``cells`` are the notebook's annotated cells by index."""
    tags = cell.metadata.get("tags", [])
    if CAPTURE_TAG in tags:  # nb2prod's own code: its first line would say nothing to the user
        does = cell.metadata.get("nb2prod", {}).get("does")
        if does:
            return f"[{position}/{total}] nb2prod: {does}"
        what = "examples, fitted state, hold-out scores, contract probe"
        return f"[{position}/{total}] nb2prod's probe: {what}"
    if "injected-parameters" in tags:
        return f"[{position}/{total}] the parameters papermill injected"
    index = cell.metadata.get("nb2prod", {}).get("index")
    known = cells.get(index) if isinstance(index, int) else None
    return f"[{position}/{total}] " + (known.label if known else "a cell")


def announce(
    progress: Progress,
    position: int,
    total: int,
    cell: nbformat.NotebookNode | None,
    cells: Mapping[int, Cell],
) -> str:
    """Tells ``progress`` which cell starts (``cell``) or that it has run (None)."""
    line = "" if cell is None else cell_line(position, total, cell, cells)
    progress.update("execute", line)
    return line


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
