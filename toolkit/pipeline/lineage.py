"""Data lineage on the host: the files a run read, hashed, and whether they are still the same.

The kernel records what the notebook opened for reading (:mod:`nb2prod.probe.lineage`); here
each file is hashed (path relative to the notebook's directory when inside it, size, sha256) into
release.json's ``lineage``. Every reuse (the up-to-date check, the run cache, the trained state)
re-hashes the files and misses when one changed or disappeared; a run that read data which
cannot be hashed (a URL, a network connection) is reused only with ``--reuse-unhashed-data``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..release.manifest import Lineage, LineageFile

RAW_FILE = "lineage.json"  # what the kernel recorded, in the capture directory
_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _shown(path: Path, notebook_dir: Path) -> str:
    try:
        return path.relative_to(notebook_dir).as_posix()
    except ValueError:
        return str(path)


def _located(entry: LineageFile, notebook_dir: Path) -> Path:
    path = Path(entry.path)
    return path if path.is_absolute() else notebook_dir / path


def hash_files(paths: Iterable[str], unhashable: Iterable[str], notebook_dir: Path) -> Lineage:
    """The lineage of a run that read ``paths`` (absolute); files gone since are left out."""
    notebook_dir = notebook_dir.resolve()
    files = []
    for raw in sorted(set(paths)):
        path = Path(raw)
        try:
            size = path.stat().st_size
            files.append(LineageFile(path=_shown(path, notebook_dir), size=size,
                                     sha256=file_sha256(path)))  # fmt: skip
        except OSError:
            continue
    return Lineage(files=tuple(files), unhashable=tuple(sorted(set(unhashable))))


def read_recorded(capture_dir: Path, notebook_dir: Path) -> tuple[Lineage, tuple[str, ...]]:
    """(the lineage, the top-level modules the notebook's cells imported) from what the kernel
    recorded; nothing recorded (an older probe) is an empty lineage."""
    path = capture_dir / RAW_FILE
    try:
        raw: Mapping[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Lineage(), ()
    lineage = hash_files(raw.get("files", ()), raw.get("unhashable", ()), notebook_dir)
    return lineage, tuple(raw.get("modules", ()))


def merge(first: Lineage, second: Lineage) -> Lineage:
    """Both runs' data: a trained state's lineage and what the cells run again read."""
    files = {f.path: f for f in first.files} | {f.path: f for f in second.files}
    return Lineage(
        files=tuple(files[p] for p in sorted(files)),
        unhashable=tuple(sorted(set(first.unhashable) | set(second.unhashable))),
    )


def data_changed(lineage: Lineage | None, notebook_dir: Path, reuse_unhashed: bool) -> str | None:
    """Why the data ``lineage`` records is not known to be the same now, or None when it is."""
    if lineage is None:
        return None
    notebook_dir = notebook_dir.resolve()
    for entry in lineage.files:
        path = _located(entry, notebook_dir)
        try:
            if path.stat().st_size != entry.size or file_sha256(path) != entry.sha256:
                return f"{entry.path} changed since the last run"
        except OSError:
            return f"{entry.path}, which the last run read, is gone"
    if lineage.unhashable and not reuse_unhashed:
        shown = ", ".join(lineage.unhashable[:3]) + (", ..." if len(lineage.unhashable) > 3 else "")
        return (
            f"the last run read data that cannot be hashed ({shown}); "
            "pass --reuse-unhashed-data to reuse it"
        )
    return None


def summary(lineage: Lineage) -> str:
    """``read 2 files (data.csv, labels.csv)``, for the execute line."""
    if not lineage.files and not lineage.unhashable:
        return "read no data files"
    parts = []
    if lineage.files:
        names = ", ".join(f.path for f in lineage.files[:3])
        more = ", ..." if len(lineage.files) > 3 else ""
        parts.append(f"read {len(lineage.files)} file(s) ({names}{more})")
    if lineage.unhashable:
        parts.append(f"{len(lineage.unhashable)} source(s) that cannot be hashed")
    return ", ".join(parts)
