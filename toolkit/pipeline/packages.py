"""Which installed packages a run depends on, and whether they changed since.

A run depends on the distributions providing the modules the notebook's cells imported (recorded
in the kernel) and on every distribution its lock pins. Only those decide whether a run can be
reused: ``pip install`` of an unrelated package changes nothing. When one of them changed, the
run re-executes, and a release of the same version made with the old one is not rewritten:
:func:`nb2prod.pipeline.history.guard_packages` refuses, naming the package and both versions (docs/reproducibility.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..probe.environment import every_provider, record, requirements


def normal(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def run_packages(
    modules: Iterable[str], locked: Iterable[str], installed: Mapping[str, str]
) -> dict[str, str]:
    """Distribution -> installed version, for what the notebook imported and what the lock pins
    (a pinned distribution not installed here, such as a platform-only one, is left out)."""
    imported = _imported(tuple(sorted(set(modules))), tuple(sorted(installed.items())))
    versions = {normal(name): version for name, version in installed.items()}
    found = {normal(name): version for name, version in imported.items()}
    found |= {normal(n): versions[normal(n)] for n in locked if normal(n) in versions}
    found.pop("nb2prod", None)  # nb2prod's own version is part of every key already
    return dict(sorted(found.items()))


_IMPORTED: dict[tuple[tuple[str, ...], tuple[tuple[str, str], ...]], dict[str, str]] = {}
_PROVIDERS: dict[tuple[tuple[str, str], ...], Mapping[str, Sequence[str]]] = {}


def prepare(installed: Mapping[str, str], record_to: Path | None = None) -> None:
    """Which distributions provide every module of this environment, read once while the kernel
    runs (pipeline/warm.py), so that :func:`run_packages` then reads no distribution's files.
    Keyed by the run's ``installed`` distributions and versions, as :func:`_imported` is. With
    ``record_to``, written there too for the kernel's probe (``ProbePlan.environment_file``)."""
    key = tuple(sorted(installed.items()))
    if key not in _PROVIDERS:
        found = every_provider()
        _PROVIDERS.clear()  # one run's worth: the last key only
        _PROVIDERS[key] = found
    if record_to is not None:
        record(record_to, installed, _PROVIDERS[key])


def _imported(modules: tuple[str, ...], installed: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The distributions providing ``modules``, found once per run: a run asks twice for the
    same modules (when it keeps the trained state, and after the lock), and reading every
    distribution's files is what costs. Keyed by the run's ``installed`` distributions and
    versions too, so an install between runs of one process is seen."""
    key = (modules, installed)
    if key not in _IMPORTED:
        _IMPORTED.clear()  # one run's worth: the last key only
        _IMPORTED[key] = requirements(modules, _PROVIDERS.get(installed))[0]
    return dict(_IMPORTED[key])


def changed_packages(
    recorded: Mapping[str, str], installed: Mapping[str, str]
) -> list[tuple[str, str, str | None]]:
    """(name, version then, version now or None if no longer installed) for each that differs."""
    now = {normal(name): version for name, version in installed.items()}
    return [
        (name, version, now.get(name))
        for name, version in sorted(recorded.items())
        if now.get(name) != version
    ]


def describe_changes(changes: list[tuple[str, str, str | None]]) -> str:
    """``scikit-learn 1.4.2 -> 1.5.0, lightgbm 4.3.0 -> not installed``."""
    return ", ".join(f"{name} {old} -> {new or 'not installed'}" for name, old, new in changes)
