"""The distributions of this environment (the kernel runs in it) and which ones the service needs.

Both read each distribution's metadata once: parsing a METADATA file is what costs (hundreds
of distributions in a data-science environment, each with its long description), and
``importlib.metadata`` parses it again for every field asked of it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata

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
