"""Data lineage, inside the kernel: which files the notebook read, and what it read that cannot be
hashed (a URL, a network connection).

The host injects a first cell, ``start([...scratch directories])``, which installs an audit hook
(:func:`sys.addaudithook`), and a cell before the probe, ``finish(path)``, which writes what was
recorded. The hook is called for every audited event of the kernel (thousands of ``open`` events
while libraries import), so it only records the raw path; filtering (the interpreter's own files,
``/proc``, files the notebook wrote itself) happens once, in :func:`finish`. The host hashes the
files (``nb2prod.pipeline.lineage``). An audit hook cannot be removed: after ``finish`` it records
nothing more.

Only the standard library: this runs in the user's kernel.
"""

from __future__ import annotations

import json
import os
import site
import sys
import sysconfig
from typing import Any
from urllib.parse import urlsplit

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR
_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0", "::")


class _Recorder:
    def __init__(self, excluded: list[str]) -> None:
        self.excluded = excluded
        self.cwd = os.getcwd()
        self.read: set[str] = set()
        self.written: set[str] = set()
        self.urls: set[str] = set()
        self.hosts: set[str] = set()
        self.modules = set(sys.modules)
        self.active = True

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int) or path is None:
                return  # a file descriptor: already opened by name
            if not isinstance(path, str):
                try:
                    path = os.fsdecode(path)
                except TypeError:
                    return
            writing = (
                (isinstance(flags, int) and flags & _WRITE_FLAGS)
                or (isinstance(mode, str) and any(c in mode for c in "wax+"))
            )  # fmt: skip
            (self.written if writing else self.read).add(path)
        elif event == "sqlite3.connect":
            database = args[0] if args else None
            if isinstance(database, str | bytes | os.PathLike):
                name = os.fsdecode(database)
                if name and name != ":memory:" and not name.startswith("file:"):
                    self.read.add(name)
        elif event == "urllib.Request":
            self.urls.add(str(args[0]))
        elif event == "socket.connect":
            address = args[1] if len(args) > 1 else None
            if isinstance(address, tuple) and address and isinstance(address[0], str):
                host = address[0]
                if not host.startswith(_LOOPBACK):
                    port = address[1] if len(address) > 1 else ""
                    self.hosts.add(f"{host}:{port}")

    def result(self) -> dict[str, Any]:
        self.active = False
        excluded = tuple(_interpreter_dirs()) + tuple(
            os.path.join(os.path.abspath(p), "") for p in self.excluded
        )
        written = {self.absolute(p) for p in self.written}
        inside = os.path.join(self.cwd, "")
        code = {  # modules imported from elsewhere (an editable install); beside the notebook
            # they are the user's own code and count as what the run read
            path
            for m in list(sys.modules.values())
            if isinstance(path := getattr(m, "__file__", None), str) and not path.startswith(inside)
        }
        files = set()
        for raw in self.read:
            path = self.absolute(raw)
            if (
                path in written
                or path in code
                or path.startswith(excluded)
                or f"{os.sep}__pycache__{os.sep}" in path
                or not os.path.isfile(path)
            ):
                continue  # the notebook's output, the interpreter's or a library's, or gone
            files.add(path)
        url_hosts = {urlsplit(u).hostname or "" for u in self.urls}
        hosts = {h for h in self.hosts if h.rsplit(":", 1)[0] not in url_hosts}
        new_modules = {m.partition(".")[0] for m in set(sys.modules) - self.modules}
        return {
            "cwd": self.cwd,
            "files": sorted(files),
            "unhashable": sorted(self.urls) + sorted(f"connection to {h}" for h in hosts),
            "modules": sorted(m for m in new_modules if not m.startswith("_")),
        }

    def absolute(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.cwd, path))


def _interpreter_dirs() -> list[str]:
    """Where the interpreter's own files are (never data), and the kernel's pseudo-filesystems."""
    dirs = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    dirs.update(p for p in sysconfig.get_paths().values() if p)
    try:
        dirs.update(site.getsitepackages())
        dirs.add(site.getusersitepackages())
    except AttributeError:  # pragma: no cover - a virtualenv without the site helpers
        pass
    home = os.path.expanduser("~")
    dirs.update(
        os.path.join(home, d)
        for d in (".ipython", ".jupyter", ".local/share/jupyter", ".cache/matplotlib",
                  ".config/matplotlib", ".cache/fontconfig")
    )  # fmt: skip
    for variable in ("IPYTHONDIR", "MPLCONFIGDIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_CONFIG_DIR"):
        if os.environ.get(variable):
            dirs.add(os.environ[variable])
    dirs.update(("/proc", "/sys", "/dev", "/etc", "/usr", "/lib", "/lib64", "/run"))
    return [os.path.join(os.path.abspath(d), "") for d in dirs if d]


_recorder: _Recorder | None = None


def start(excluded: list[str]) -> None:
    """Record, from now on, what the kernel reads (``excluded``: nb2prod's scratch directories)."""
    global _recorder
    if _recorder is not None:  # pragma: no cover - one start per kernel
        return
    # the snapshot cell's pickler, loaded before the notebook's own imports are counted
    import cloudpickle  # noqa: F401

    _recorder = _Recorder(excluded)
    sys.addaudithook(_recorder.hook)


def finish(out_file: str) -> None:
    """Write what was recorded to ``out_file`` (JSON) and stop recording."""
    if _recorder is None:
        return
    result = _recorder.result()
    with open(out_file, "w", encoding="utf-8") as f:
        json.dump(result, f, sort_keys=True)
