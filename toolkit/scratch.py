"""A packaging run's temporary files: one scratch directory, and what outlives it.

While ``nb2prod package`` runs, :func:`run_scratch` points :mod:`tempfile` (and, through
``TMPDIR``, the tools it starts) at one directory of its own, which the run's claim on its
destination records (release/claim.py): a run that ends removes it, and the next run removes what a
killed one left. What an error names for the user to read (the executed notebook of a failed run,
a server's log) is made with :func:`keep_dir`, outside the scratch, so it survives the run.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_outside: str | None = None  # the temporary directory in use before the scratch replaced it


@contextmanager
def run_scratch(prefix: str = "nb2prod-run-") -> Iterator[Path]:
    """A new directory that is every temporary file's home for the ``with`` block."""
    global _outside
    root = Path(tempfile.mkdtemp(prefix=prefix))
    previous, outside = tempfile.tempdir, tempfile.gettempdir()
    tempfile.tempdir, _outside = str(root), outside
    try:
        yield root
    finally:
        tempfile.tempdir, _outside = previous, None
        shutil.rmtree(root, ignore_errors=True)


def keep_dir(prefix: str) -> Path:
    """A new directory that outlives the run's scratch, for what an error names."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_outside))


def keep(path: Path, prefix: str) -> Path:
    """``path`` itself when no scratch is in use (it outlives the command already), else a copy in
    a new :func:`keep_dir`: what an error names must still be there after the run."""
    if _outside is None:
        return path
    kept = keep_dir(prefix) / path.name
    shutil.copyfile(path, kept)
    return kept
