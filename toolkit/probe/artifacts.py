"""Fitted state: values service code reads from train, model or untagged cells.

Each one (``nb2prod check`` lists them as NB202) is taken from the notebook's namespace, refused
if it is code (a function, class or module belongs in a setup cell) or looks like training data
(more rows than ``[artifacts] max_rows``, unless allowed by name), then stored like the model
and loaded back into the pipeline module through the runtime, exactly as the service does. One
with more rows than ``[artifacts] warn_rows`` ships with a warning that says what the service
reads from it and how to export only that (:func:`row_warnings`).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..runtime import model as runtime
from ..runtime.schema import ArtifactManifest
from . import serialize
from .failure import Fail
from .protocol import ArtifactPlan, ArtifactRef
from .values import a

DIRECTORY = "artifacts"  # below the probe's out_dir, and below the release's model/


@dataclass(frozen=True)
class DataShape:
    """What a value that may be a data set holds."""

    kind: str  # DataFrame, Series, ndarray, list, ...
    rows: int
    columns: int | None
    nbytes: int | None

    def __str__(self) -> str:
        size = f" ({human_size(self.nbytes)})" if self.nbytes is not None else ""
        columns = f" x {self.columns} columns" if self.columns is not None else ""
        return f"{a(self.kind)} of {self.rows:,} rows{columns}{size}"


def human_size(nbytes: int) -> str:
    """``812 B``, ``4.1 KB``, ``23 MB``: decimal units, as file managers show them."""
    size = float(nbytes)
    for unit in ("B", "KB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" or size >= 10 else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def code_kind(value: Any) -> str | None:
    """``function``, ``class`` or ``module`` when ``value`` is code rather than data."""
    if isinstance(value, types.ModuleType):
        return "module"
    if inspect.isclass(value):
        return "class"
    if inspect.isroutine(value):
        return "function"
    return None


def data_shape(value: Any) -> DataShape | None:
    """The shape of a data set: a DataFrame, Series, array, sparse matrix or list of rows."""
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple) and shape and all(isinstance(n, int) for n in shape):
        nbytes = getattr(value, "nbytes", None)
        memory = getattr(value, "memory_usage", None)
        if callable(memory):  # pandas: the real footprint, strings included
            try:
                used = memory(deep=True)
                nbytes = int(used.sum() if hasattr(used, "sum") else used)
            except Exception:
                nbytes = None
        return DataShape(
            type(value).__name__,
            shape[0],
            shape[1] if len(shape) > 1 else None,
            int(nbytes) if isinstance(nbytes, int | float) else None,
        )
    if isinstance(value, list | tuple) and value and isinstance(value[0], dict | list | tuple):
        return DataShape(type(value).__name__, len(value), None, None)
    return None


def collect(namespace: Mapping[str, Any], plan: ArtifactPlan) -> dict[str, Any]:
    """Every planned value from the namespace, or :class:`Fail` saying why it cannot ship."""
    values = {}
    for ref in plan.refs:
        readers = " and ".join(ref.read_by)
        if ref.name not in namespace:
            raise Fail(
                f"{ref.label} ran but left no `{ref.name}`, which {readers} reads",
                "Assign it in a cell that runs before the end of the notebook, or define it "
                "in a `setup` cell.",
            )
        value = namespace[ref.name]
        kind = code_kind(value)
        if kind is not None:
            raise Fail(
                f"`{ref.name}` (from {ref.label}, read by {readers}) is a {kind}: code does "
                "not travel as fitted state",
                f"Move the definition or import of `{ref.name}` into a `setup` cell.",
            )
        shape = data_shape(value)
        if shape is not None and shape.rows > plan.max_rows and ref.name not in plan.allow:
            raise Fail(
                f"`{ref.name}` (from {ref.label}, read by {readers}) is {shape}, which looks "
                f"like training data (over [artifacts] max_rows = {plan.max_rows}); a release "
                "must not carry it by accident",
                f"Compute what the service needs from it in a train cell (medians, a lookup "
                f"table, a fitted encoder) and read that instead; or, if the service really "
                f'needs all of it, allow it in the config: [artifacts] allow = ["{ref.name}"].',
            )
        values[ref.name] = value
    return values


def row_warnings(values: Mapping[str, Any], plan: ArtifactPlan) -> tuple[str, ...]:
    """A warning for each value that may be training rows: more than ``warn_rows`` rows (under
    ``max_rows``, or it would have been refused), not allowed by name."""
    found = []
    for ref in plan.refs:
        shape = data_shape(values.get(ref.name)) if ref.name in values else None
        if shape is None or shape.rows <= plan.warn_rows or ref.name in plan.allow:
            continue
        readers = " and ".join(ref.read_by)
        text = (
            f"`{ref.name}` (from {ref.label}, read by {readers}) is {shape}, which may be "
            f"training rows; it ships as fitted state because it is under [artifacts] max_rows = "
            f"{plan.max_rows}"
        )
        if ref.reads:
            exports = [_export(ref.name, read) for read in ref.reads]
            text += (
                f", but the service reads only {', '.join(f'`{r}`' for r in ref.reads)} from it. "
                f"Export only that: {'; '.join(f'`{new} = {code}`' for new, code in exports)} in "
                f"a train cell, and read {', '.join(f'`{new}`' for new, _ in exports)} in {readers}"
            )
        else:
            text += (
                f", and {readers} reads the whole value. If the service needs less, compute that "
                f"in a train cell and read it instead; if it needs all of it, name it in "
                f'[artifacts] allow = ["{ref.name}"]'
            )
        found.append(text + ".")
    return tuple(found)


def _export(name: str, read: str) -> tuple[str, str]:
    """``(new variable, its code)`` for exporting one attribute read: ``train_X.columns`` ->
    ``("train_X_columns", "list(train_X.columns)")``."""
    attribute = read.removeprefix(f"{name}.").split("(")[0].split(".")[0]
    code = (
        f"list({read})" if attribute in ("columns", "index") and read.endswith(attribute) else read
    )
    return f"{name}_{attribute}", code


def store_all(
    values: Mapping[str, Any],
    plan: ArtifactPlan,
    out: Path,
    answers_the_same: Callable[[str, Any], str | None],
) -> tuple[ArtifactManifest, ...]:
    """Each value stored in its safest format; ``answers_the_same(name, loaded)`` says why a
    loaded copy does not give the examples' outputs (or None)."""
    manifests = []
    refs = {ref.name: ref for ref in plan.refs}
    for name, value in values.items():
        stored = serialize.store(value, out / DIRECTORY, name, partial(answers_the_same, name))
        path = out / DIRECTORY / stored.file
        ref: ArtifactRef = refs[name]
        manifests.append(
            ArtifactManifest(
                name=name,
                file=f"{DIRECTORY}/{stored.file}",
                format=stored.format,
                trusted=stored.trusted,
                estimators=stored.estimators,
                why=stored.why,
                sha256=runtime.sha256_file(path),
                size=path.stat().st_size,
                cell=ref.cell,
                role=ref.role,
                read_by=ref.read_by,
            )
        )
    return tuple(manifests)
