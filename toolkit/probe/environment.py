"""The distributions of this environment (the kernel runs in it) and which ones the service needs.

Both read each distribution's metadata once: parsing a METADATA file is what costs (hundreds
of distributions in a data-science environment, each with its long description), and
``importlib.metadata`` parses it again for every field asked of it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

# never requirements: the interpreter's own modules and the notebook's namespace
_NOT_DISTRIBUTIONS = frozenset({"builtins", "__main__", "__mp_main__"})


def installed_distributions() -> dict[str, str]:
    """Every distribution of this environment -> version, sorted by name (the first one wins
    when a name is installed twice, as importlib.metadata resolves it)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        fields = dist.metadata  # parsed once for both fields (dist.version parses it again)
        found.setdefault(fields["Name"], fields["Version"])
    return dict(sorted(found.items()))


def requirements(
    modules: Iterable[str], providers: Mapping[str, Sequence[str]] | None = None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """(distribution -> version for every module, the modules no distribution provides);
    ``providers`` is :func:`every_provider`'s map when it is known already."""
    wanted = set(modules) - set(sys.stdlib_module_names) - _NOT_DISTRIBUTIONS
    providers = _providers(wanted) if providers is None else providers
    found: dict[str, str] = {}
    unresolved = []
    for module in sorted(wanted):
        dists = providers.get(module)
        if not dists:
            unresolved.append(module)
            continue
        for dist in dists:
            fields = metadata.distribution(dist).metadata
            found[fields["Name"]] = fields["Version"]
    return found, tuple(unresolved)


def record(
    file: Path, installed: Mapping[str, str], providers: Mapping[str, Sequence[str]]
) -> None:
    """Write what :func:`installed_distributions` and :func:`every_provider` found here to
    ``file`` (atomically: the kernel may look for it meanwhile), for :func:`recorded`."""
    data = {
        "executable": sys.executable,
        "path": sys.path,
        "installed": dict(installed),
        "providers": {module: list(names) for module, names in providers.items()},
    }
    partial = file.with_name(file.name + ".partial")
    partial.write_text(json.dumps(data), encoding="utf-8")
    os.replace(partial, file)


def recorded(file: str | None) -> tuple[dict[str, str], Mapping[str, Sequence[str]]] | None:
    """(installed distributions, each module's providers) as another process of this very
    environment recorded them, or None: no such file yet, another Python, or a ``sys.path``
    entry that only one of the two processes has holding distribution metadata (a notebook's
    directory with a project's ``.egg-info``, say), which would make them see different ones."""
    if file is None:
        return None
    try:
        data: Any = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("executable") != sys.executable:
        return None
    theirs = data.get("path")
    if not isinstance(theirs, list):
        return None
    if any(_holds_metadata(entry) for entry in set(sys.path) ^ set(theirs)):
        return None
    return dict(data["installed"]), {m: tuple(names) for m, names in data["providers"].items()}


def _holds_metadata(entry: str) -> bool:
    try:
        names = os.listdir(entry or ".")
    except OSError:
        return False  # a missing directory or a zip: no distribution metadata found there either
    return any(name.endswith((".dist-info", ".egg-info")) for name in names)


def every_provider() -> Mapping[str, Sequence[str]]:
    """Every top-level module of this environment -> the distributions providing it: the same
    map as ``importlib.metadata.packages_distributions()``, read as :func:`requirements` reads
    it (every distribution's metadata parsed for its name)."""
    return _providers(None)


def _providers(wanted: set[str] | None) -> Mapping[str, Sequence[str]]:
    """``importlib.metadata.packages_distributions()`` restricted to ``wanted`` (None: all): the
    same top-level names per distribution (its ``top_level.txt``, else its files), but only the
    distributions providing a wanted module have their metadata parsed for their name."""
    declared = getattr(metadata, "_top_level_declared", None)
    inferred = getattr(metadata, "_top_level_inferred", None)
    if declared is None or inferred is None:  # another Python's importlib: its own, in full
        every = metadata.packages_distributions()
        return every if wanted is None else {m: every[m] for m in wanted if m in every}
    found: dict[str, list[str]] = {}
    for dist in metadata.distributions():
        provided = [
            pkg for pkg in declared(dist) or inferred(dist) if wanted is None or pkg in wanted
        ]
        if provided:
            name = dist.metadata["Name"]
            for pkg in provided:
                found.setdefault(pkg, []).append(name)
    return found
