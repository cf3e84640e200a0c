"""The distributions of this environment (the kernel runs in it) and which ones the service needs."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from importlib import metadata

# never requirements: the interpreter's own modules and the notebook's namespace
_NOT_DISTRIBUTIONS = frozenset({"builtins", "__main__", "__mp_main__"})


def installed_distributions() -> dict[str, str]:
    """Every distribution of this environment -> version, sorted by name (the first one wins
    when a name is installed twice, as importlib.metadata resolves it)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        found.setdefault(dist.metadata["Name"], dist.version)
    return dict(sorted(found.items()))


def requirements(modules: Iterable[str]) -> tuple[dict[str, str], tuple[str, ...]]:
    """(distribution -> version for every module, the modules no distribution provides)."""
    providers = metadata.packages_distributions()
    wanted = set(modules) - set(sys.stdlib_module_names) - _NOT_DISTRIBUTIONS
    found: dict[str, str] = {}
    unresolved = []
    for module in sorted(wanted):
        dists = providers.get(module)
        if not dists:
            unresolved.append(module)
            continue
        for dist in dists:
            found[metadata.metadata(dist)["Name"]] = metadata.version(dist)
    return found, tuple(unresolved)
