"""What a notebook wrote beside itself while it ran (its working directory is its own directory).

A listing is names, sizes and modification times only (no hashing): the files of the directory
and of its subdirectories down to :data:`DEPTH`, hidden names and caches left out, at most
:data:`MAX_ENTRIES` of them (a directory holding a data lake is listed in part, the same part
each time: entries are visited in sorted order). A directory at the depth limit is one entry,
changed when its own modification time changes (an entry added or removed).
"""

from __future__ import annotations

import os
from pathlib import Path

DEPTH = 2  # the directory itself and one level of subdirectories: ``out/submission.csv``
MAX_ENTRIES = 5000
SHOWN = 5  # names in the note; the rest are counted
_SKIPPED = frozenset({"__pycache__", ".ipynb_checkpoints", "node_modules"})

Listing = dict[str, tuple[int, int]]  # relative path -> (mtime_ns, size)


def listing(directory: Path) -> Listing:
    """The files under ``directory`` (see the module's docstring for what is left out)."""
    found: Listing = {}
    _walk(directory, "", 1, found)
    return found


def _walk(directory: Path, prefix: str, depth: int, found: Listing) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if len(found) >= MAX_ENTRIES:
            return
        if entry.name.startswith(".") or entry.name in _SKIPPED:
            continue
        name = prefix + entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            stat = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if is_dir and depth < DEPTH:
            _walk(Path(entry.path), name + "/", depth + 1, found)
        elif is_dir:
            found[name + "/"] = (stat.st_mtime_ns, 0)
        else:
            found[name] = (stat.st_mtime_ns, stat.st_size)


def written(before: Listing, after: Listing) -> list[str]:
    """The entries of ``after`` that are new or changed since ``before``, sorted."""
    return sorted(name for name, stamp in after.items() if before.get(name) != stamp)


def files_written(before: Listing, after: Listing) -> str:
    """The entries written between the two listings, for a note ("a.csv, out/b.txt and 3
    more"); empty when there are none."""
    names = written(before, after)
    if not names:
        return ""
    shown = ", ".join(names[:SHOWN])
    more = len(names) - SHOWN
    return shown + (f" and {more} more" if more > 0 else "")
