"""The one place that writes a release to disk.

A release is built in a `<name>.partial-*` directory beside its destination (same file system, so the final
move is a rename) and moved into place only by :meth:`Staging.commit`. Leaving the ``with`` block
without a commit removes the staging directory, so a failed run leaves no partial release and
never touches an earlier one. Structured files are written with sorted keys so the same input
gives byte-identical output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from ..runtime.model import sha256_file  # one hash function, shared with the service

RELEASE_JSON = "release.json"
# images pushed of a sealed release, one JSON object a line, appended: not in release.json's files
IMAGES_JSONL = "images.jsonl"


def canonical_json(data: Any) -> bytes:
    """Sorted keys, two-space indent, trailing newline: stable bytes for reviewers and hashes."""
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings (PromQL, scripts, descriptions) as literal blocks a reviewer can read."""


def _literal_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _literal_str)


def canonical_yaml(data: Any, header: str = "") -> bytes:
    """Sorted keys, block style, literal multi-line strings, no line wrapping, after ``header``
    (comment lines): the same data, the same bytes."""
    body = yaml.dump(
        data, Dumper=_LiteralDumper, sort_keys=True, default_flow_style=False, width=1000
    )
    return (header + body).encode()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> Path:
    """One file, all or nothing: written beside ``path``, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.partial-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as sink:
            sink.write(data)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 is for secrets; this is a plain file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def append_record(directory: Path, relative: str, record: Mapping[str, Any]) -> Path:
    """Append ``record`` as one line of JSON to ``relative`` in a sealed release ``directory``.

    The only write to a release after its commit: a file release.json does not list (so every
    recorded hash stays valid), opened for appending and written with one ``write`` call, so
    concurrent appends never interleave and earlier lines are never rewritten."""
    if not (directory / RELEASE_JSON).is_file():
        raise FileNotFoundError(f"{directory}: not a release directory (no {RELEASE_JSON})")
    path = directory / relative
    line = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"
    handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(handle, line.encode())
        os.fsync(handle)
    finally:
        os.close(handle)
    return path


class Staging:
    """A release under construction; see the module docstring."""

    def __init__(self, destination: Path) -> None:
        self.destination = destination.resolve()
        parent = self.destination.parent
        self._made_parents = [p for p in [parent, *parent.parents] if not p.exists()]
        parent.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.destination.name}.partial-", dir=parent))
        self.committed = False

    def __enter__(self) -> Staging:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.committed:
            self.discard()

    def path(self, relative: str) -> Path:
        return self.root / relative

    def write_bytes(self, relative: str, data: bytes) -> Path:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)  # a new file: a link made by link_files keeps the old one
        target.write_bytes(data)
        return target

    def write_json(self, relative: str, data: Any) -> Path:
        return self.write_bytes(relative, canonical_json(data))

    def write_yaml(self, relative: str, data: Any, header: str) -> Path:
        return self.write_bytes(relative, canonical_yaml(data, header))

    def write_tree(self, files: Mapping[str, bytes]) -> None:
        for relative, data in files.items():
            self.write_bytes(relative, data)

    def copy(self, relative: str, source: Path) -> Path:
        target = self.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        shutil.copyfile(source, target)
        return target

    def link_files(self, directory: Path, select: Callable[[str], bool]) -> list[str]:
        """Hard links (copies across file systems) in ``directory`` to the staged files that
        ``select`` admits, at the same relative paths; returns those paths. Writing a staged file
        again makes a new file (:meth:`write_bytes`, :meth:`copy`): the link keeps what it was."""
        linked = []
        for relative in self.files():
            if not select(relative):
                continue
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(self.root / relative, target)
            except OSError:  # another file system, or links not allowed: a copy
                shutil.copyfile(self.root / relative, target)
            linked.append(relative)
        return linked

    def files(self) -> Iterator[str]:
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                yield path.relative_to(self.root).as_posix()

    def hashes(self) -> dict[str, str]:
        """sha256 of every file except release.json itself."""
        return {rel: sha256_file(self.root / rel) for rel in self.files() if rel != RELEASE_JSON}

    def commit(self) -> Path:
        """Move the release into place, replacing an earlier release of the same version."""
        for cache in self.root.rglob("__pycache__"):
            shutil.rmtree(cache, ignore_errors=True)
        previous = None
        if self.destination.exists():
            previous = Path(
                tempfile.mkdtemp(
                    prefix=f"{self.destination.name}.old-", dir=self.destination.parent
                )
            )
            self.destination.rename(previous / "release")
        self.root.rename(self.destination)
        self.committed = True
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)
        return self.destination

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        for made in self._made_parents:  # innermost first
            try:
                made.rmdir()
            except OSError:
                break
