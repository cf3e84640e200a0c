"""Which modules imported by service cells no installed distribution provides, found statically.

The lock pins the distributions that provide the service's imports (``probe/environment.py`` asks
``importlib.metadata.packages_distributions()`` in the kernel, which runs in this environment); a
module no distribution provides stops ``package`` at lock, after the whole notebook ran. This finds
the same modules before anything runs: the standard library is fine, a distribution's top-level
module is fine, and of the rest it says whether the module is a file or package beside the
notebook (the kernel imports it from there; the service would not have it), importable from
elsewhere on ``sys.path`` with no distribution behind it, or not importable at all.

Nothing is imported: distributions are read from their ``top_level.txt`` or ``RECORD`` files (as
``packages_distributions()`` reads them, without parsing every distribution's metadata, which
takes most of a second in a large environment), and ``find_spec`` is asked of top-level names
only, which runs no package's code.
"""

from __future__ import annotations

import csv
import importlib.util
import inspect
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import machinery, metadata
from pathlib import Path
from typing import Literal

# never requirements: the interpreter's own modules and the notebook's namespace
_NOT_DISTRIBUTIONS = frozenset({"builtins", "__main__", "__mp_main__", "__future__"})

Whence = Literal["local", "unlisted", "missing"]


@dataclass(frozen=True)
class Unprovided:
    """A top-level module no installed distribution provides."""

    module: str
    whence: Whence  # local: beside the notebook; unlisted: importable, no distribution; missing
    where: Path | None = None  # the file or directory it would be imported from

    def describe(self, notebook_dir: Path) -> str:
        """``p_analysis is a module beside the notebook (p_analysis.py)``, and the like."""
        if self.whence == "local":
            shown = self.where.relative_to(notebook_dir) if self.where else self.module
            return f"`{self.module}` is a module beside the notebook ({shown}), not an installed package"
        if self.whence == "unlisted":
            return (
                f"`{self.module}` is importable (from {self.where}) but no installed distribution "
                "provides it, so the lock cannot pin it"
            )
        return f"`{self.module}` is not installed in this environment (the kernel runs in it)"


def unprovided(modules: Iterable[str], notebook_dir: Path) -> tuple[Unprovided, ...]:
    """The top-level ``modules`` no installed distribution provides, sorted by name."""
    wanted = set(modules) - set(sys.stdlib_module_names) - _NOT_DISTRIBUTIONS
    missing = sorted(wanted - distributed(wanted))
    return tuple(_whence(module, notebook_dir) for module in missing)


def distributed(wanted: set[str]) -> set[str]:
    """Of ``wanted`` top-level modules, those an installed distribution provides: its
    ``top_level.txt`` names them, or else its ``RECORD`` lists their files (the two sources
    ``importlib.metadata.packages_distributions()`` reads). Stops once all are found."""
    found: set[str] = set()
    for dist in metadata.distributions():
        found |= wanted & _top_level(dist)
        if found == wanted:
            break
    return found


def _top_level(dist: metadata.Distribution) -> set[str]:
    declared = (dist.read_text("top_level.txt") or "").split()
    if declared:
        return set(declared)
    record = dist.read_text("RECORD")
    if record is not None:
        paths = [row[0] for row in csv.reader(record.splitlines()) if row]
    else:  # an egg-info or a distribution without RECORD: importlib reads what it has
        paths = [str(f) for f in dist.files or ()]
    names = set()
    for path in paths:
        first, sep, _ = path.partition("/")
        if sep and path.endswith(".py"):
            names.add(first)
        elif not sep and (name := inspect.getmodulename(path)) is not None:
            names.add(name)
    return names


def _whence(module: str, notebook_dir: Path) -> Unprovided:
    # the kernel's working directory is the notebook's, first on its sys.path
    beside = machinery.PathFinder.find_spec(module, [str(notebook_dir)])
    if beside is not None:
        return Unprovided(module, "local", _location(beside))
    try:  # a top-level name: nothing is imported to find it
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return Unprovided(module, "missing")
    return Unprovided(module, "unlisted", _location(spec))


def _location(spec: machinery.ModuleSpec) -> Path | None:
    if spec.submodule_search_locations:  # a package: its directory
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin) if spec.origin and spec.has_location else None
