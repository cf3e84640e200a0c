"""Trained-state reuse: a fix to a cell that cannot change the model never waits for training.

After a full run, the values that later cells and the probe read from the training cells (train,
model, untagged and parameters cells) are pickled in the kernel (:mod:`nb2prod.probe.snapshot`)
and kept in the run cache directory, keyed by what the training cells see: their sources (and
those of setup cells, and of any other cell a training cell reads from), the ``-p`` parameters,
the training keys of the config, nb2prod's and Python's versions. When that key is unchanged, the
data the last run read is unchanged and no package it depends on changed, the next run restores
the state in a fresh kernel and runs only setup cells and the cells that cannot change the model
(contract, preprocess, predict, postprocess, fallback, evaluate, examples), then the probe.

Entries live in ``$NB2PROD_CACHE_DIR/trained/<notebook>/<key>/`` (written to a temporary directory
and renamed into place); the newest :data:`KEEP` of each notebook are kept.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from ..notebook.annotations import Cell, Role
from ..notebook.config import Config, training_config
from ..notebook.dataflow import NotebookAnalysis, role_name
from ..probe import snapshot
from ..release.manifest import Lineage
from ..release.writer import canonical_json, sha256_bytes
from ..resources import cache_root
from ..version import __version__
from .lineage import data_changed
from .packages import changed_packages, describe_changes

#: Cells run again when the trained state is reused: they cannot change the trained model
#: (unless a training cell reads what they define; then they count as training inputs).
REPLAYED_ROLES = frozenset(
    {Role.CONTRACT, Role.PREPROCESS, Role.PREDICT, Role.POSTPROCESS, Role.FALLBACK,
     Role.EVALUATE, Role.EXAMPLES}
)  # fmt: skip
KEEP = 3  # trained states kept per notebook


def is_training(cell: Cell) -> bool:
    """Train, model, untagged and parameters cells: what they leave is the trained state."""
    if cell.is_parameters:
        return True
    return cell.role is None or cell.role in (Role.TRAIN, Role.MODEL)


@dataclass(frozen=True)
class ReusePlan:
    """How this notebook splits into what is restored and what runs again."""

    training: tuple[Cell, ...]  # their state is restored
    replayed: tuple[Cell, ...]  # setup and replayed cells, in notebook order
    names: tuple[str, ...]  # what the snapshot keeps: read later from training cells
    inputs: Mapping[str, Any]  # what the training cells see (the key)
    snapshot_after: int | None  # the index of the last training cell (None: no training cell)
    problem: str | None = None  # why this notebook's trained state can never be reused

    @property
    def key(self) -> str:
        return sha256_bytes(canonical_json(dict(self.inputs)))


def probe_names(analysis: NotebookAnalysis, config: Config) -> set[str]:
    """The variables the probe reads from the namespace besides what service code reads."""
    names = {analysis.notebook.model_variable, "examples", "metrics"}
    names |= {config.evaluation.eval_x, config.evaluation.eval_y}
    names |= {n for n in (config.contract.training_data, config.monitoring.reference) if n}
    return names


def plan_reuse(
    analysis: NotebookAnalysis, config: Config, parameters: Mapping[str, Any]
) -> ReusePlan:
    notebook = analysis.notebook
    running = [c for c in notebook.cells if c.role is not Role.SKIP]
    training = tuple(c for c in running if is_training(c))
    replayed = tuple(c for c in running if not is_training(c))
    problem = next(
        (
            f"{c.label} cannot be analysed as Python, so what it reads or defines is unknown"
            for c in running
            if analysis.cells[c.index].scope is None
        ),
        None,
    )

    def scope(cell: Cell) -> tuple[frozenset[str], frozenset[str]]:
        found = analysis.cells[cell.index].scope
        return (found.defined, found.used) if found is not None else (frozenset(), frozenset())

    # replayed cells a training cell reads from (transitively) are training inputs too
    wanted = set().union(*(scope(c)[1] for c in training)) if training else set()
    pinned: set[int] = set()
    changed = True
    while changed:
        changed = False
        for cell in replayed:
            defined, used = scope(cell)
            if cell.index not in pinned and (defined & wanted or cell.role is Role.SETUP):
                pinned.add(cell.index)
                wanted |= used
                changed = True
    defined_by_training = set().union(*(scope(c)[0] for c in training)) if training else set()
    read_later = set().union(*(scope(c)[1] for c in replayed)) if replayed else set()
    names = (read_later | probe_names(analysis, config)) & defined_by_training
    inputs = {
        "cells": [
            [role_name(c), sha256_bytes(c.source.encode())]
            for c in running
            if is_training(c) or c.index in pinned
        ],
        "parameters": dict(parameters),
        "config": training_config(config),
        "nb2prod": __version__,
        "python": sys.version,
        "names": sorted(names),
    }
    return ReusePlan(
        training=training,
        replayed=replayed,
        names=tuple(sorted(names)),
        inputs=inputs,
        snapshot_after=training[-1].index if training else None,
        problem=problem,
    )


@dataclass(frozen=True)
class TrainedState:
    """A stored trained state that this run may restore."""

    directory: Path
    lineage: Lineage
    packages: Mapping[str, str]
    labels: tuple[str, ...]  # the training cells it stands for
    modules: tuple[str, ...] = ()  # the top-level modules the training run imported

    @property
    def state_file(self) -> Path:
        return self.directory / snapshot.STATE_FILE

    def executed_cells(self) -> list[nbformat.NotebookNode]:
        """The training cells as the last full run executed them, in order."""
        node = nbformat.read(self.directory / "executed.ipynb", as_version=4)
        return list(node.cells)


class TrainedStates:
    """The trained states in the run cache directory, per notebook."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "trained"

    def _notebook_dir(self, notebook: Path) -> Path:
        return self.root / hashlib.sha256(str(notebook.resolve()).encode()).hexdigest()[:16]

    def find(
        self,
        plan: ReusePlan,
        notebook: Path,
        installed: Mapping[str, str],
        reuse_unhashed: bool,
    ) -> tuple[TrainedState | None, str]:
        """The trained state this run can restore, or None and why not."""
        if plan.problem:
            return None, plan.problem
        if not plan.training:
            return None, "the notebook has no training cells"
        entries = self._entries(notebook)
        if not entries:
            return None, "no earlier run of this notebook kept its trained state"
        entry = self._notebook_dir(notebook) / plan.key
        meta = _read_meta(entry)
        if meta is None:
            return None, _why_different(plan, _read_meta(entries[0]))
        if meta.get("problem"):
            return None, f"the last run's trained state was not kept: {meta['problem']}"
        lineage = Lineage.model_validate(meta["lineage"])
        reason = data_changed(lineage, notebook.parent, reuse_unhashed)
        if reason:
            return None, reason
        changes = changed_packages(meta["packages"], installed)
        if changes:
            return None, f"packages changed since the last run: {describe_changes(changes)}"
        if not (entry / snapshot.STATE_FILE).is_file():
            return None, "the last run's trained state is incomplete"
        state = TrainedState(entry, lineage, dict(meta["packages"]), tuple(meta["labels"]),
                             tuple(meta.get("modules", ())))  # fmt: skip
        return state, ""

    def store(
        self,
        plan: ReusePlan,
        notebook: Path,
        kernel_dir: Path,
        executed: nbformat.NotebookNode,
        lineage: Lineage,
        packages: Mapping[str, str],
        modules: Iterable[str] = (),
    ) -> str | None:
        """Keep what the kernel saved in ``kernel_dir`` for the next run; the problem, if the
        state could not be pickled (then the next run says so and runs everything)."""
        if plan.problem or not plan.training:
            return plan.problem
        parent = self._notebook_dir(notebook)
        parent.mkdir(parents=True, exist_ok=True)
        problem = snapshot_problem(kernel_dir)
        scratch = Path(tempfile.mkdtemp(prefix=".trained-", dir=parent))
        try:
            if problem is None:
                shutil.move(str(kernel_dir / snapshot.STATE_FILE), scratch / snapshot.STATE_FILE)
                training = {c.index for c in plan.training}
                kept = copy.deepcopy(executed)
                kept.cells = [
                    c for c in executed.cells
                    if c.metadata.get("nb2prod", {}).get("index") in training
                ]  # fmt: skip
                nbformat.write(kept, scratch / "executed.ipynb")
            meta = {
                "inputs": dict(plan.inputs),
                "labels": [c.label for c in plan.training],
                "cells": [[c.index, role_name(c), c.source] for c in plan.training],
                "lineage": lineage.model_dump(mode="json"),
                "packages": dict(packages),
                "modules": sorted(modules),
                "problem": problem,
            }
            (scratch / "meta.json").write_bytes(canonical_json(meta))
            target = parent / plan.key
            if target.exists():
                shutil.rmtree(target)
            scratch.rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        for old in self._entries(notebook)[KEEP:]:
            shutil.rmtree(old, ignore_errors=True)
        return problem

    def _entries(self, notebook: Path) -> list[Path]:
        """This notebook's entries, newest first."""
        parent = self._notebook_dir(notebook)
        if not parent.is_dir():
            return []
        found = [p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return sorted(found, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def snapshot_problem(kernel_dir: Path) -> str | None:
    """Why the kernel could not save the trained state in ``kernel_dir`` (None: it did)."""
    failure = kernel_dir / snapshot.FAILURE_FILE
    if failure.is_file():
        problem: str = json.loads(failure.read_text(encoding="utf-8"))["problem"]
        return problem
    if not (kernel_dir / snapshot.STATE_FILE).is_file():
        return "the kernel saved no trained state"
    return None


def _read_meta(entry: Path) -> dict[str, Any] | None:
    try:
        meta: dict[str, Any] = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        return meta
    except (OSError, ValueError):
        return None


def _why_different(plan: ReusePlan, last: Mapping[str, Any] | None) -> str:
    """What differs between this run's training inputs and the newest stored ones."""
    if last is None:
        return "no earlier run of this notebook kept its trained state"
    before: Mapping[str, Any] = last.get("inputs", {})
    now = plan.inputs
    if before.get("cells") != now["cells"]:
        old_cells = last.get("cells", [])
        old_sources = {source for _, _, source in old_cells}
        for cell in plan.training:
            if cell.source not in old_sources:
                return f"{cell.label} changed"
        return "the training cells (or a cell they read from) changed"
    if before.get("parameters") != now["parameters"]:
        return "the parameters changed"
    if before.get("config") != now["config"]:
        keys = [k for k in now["config"] if before.get("config", {}).get(k) != now["config"][k]]
        return f"[{', '.join(keys) or 'execution'}] of the config changed"
    if before.get("nb2prod") != now["nb2prod"] or before.get("python") != now["python"]:
        return "nb2prod or Python changed since the last run"
    missing = sorted(set(now["names"]) - set(before.get("names", ())))
    if missing:
        return (
            f"the cells run again now read {', '.join(f'`{n}`' for n in missing)} from the "
            "training cells, which the last run's trained state does not have"
        )
    return "the training inputs changed"


def merge_executed(
    runnable: Iterable[Cell],
    training: tuple[Cell, ...],
    stored: list[nbformat.NotebookNode],
    replayed: nbformat.NotebookNode,
) -> nbformat.NotebookNode:
    """The executed notebook of a reuse run: the training cells as the last full run left them
    (same sources, by the key), the others as this run executed them, in notebook order."""
    merged = copy.deepcopy(replayed)
    by_index = {
        c.metadata.get("nb2prod", {}).get("index"): c for c in replayed.cells
    }  # fmt: skip
    training_indices = {c.index for c in training}
    queue = list(stored)
    cells = []
    for cell in runnable:
        if cell.index in training_indices:
            if queue:
                old = copy.deepcopy(queue.pop(0))
                old.metadata.setdefault("nb2prod", {})["index"] = cell.index
                old.metadata.setdefault("nb2prod", {})["reused"] = True
                cells.append(old)
        elif cell.index in by_index:
            cells.append(by_index[cell.index])
    merged.cells = [c for c in replayed.cells if "nb2prod" not in c.metadata] + cells
    return merged


def ranges(indices: Iterable[int]) -> str:
    """``2-5, 7, 9``."""
    values = sorted(set(indices))
    parts: list[str] = []
    start = prev = None
    for value in values:
        if start is None:
            start = prev = value
        elif prev is not None and value == prev + 1:
            prev = value
        else:
            parts.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = value
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else str(start))
    return ", ".join(parts)
