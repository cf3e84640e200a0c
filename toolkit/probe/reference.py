"""Reference statistics for drift scores: quantile bins per numeric field, frequencies per category.

:func:`field_reference` and :func:`reference_stats` are pure; :func:`reference_columns` turns the
variable the notebook left (a DataFrame, a list of dicts, or a 2-D array) into columns per Input
field. The service counts its observations with the same category encoding
(:func:`nb2prod.runtime.model.category_key`).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..runtime.model import category_key
from ..runtime.schema import FieldReference
from .failure import Fail
from .protocol import ReferenceStats
from .values import as_list, is_number, plain

MAX_CATEGORIES = 50  # more distinct values is free text, not a category


def field_reference(values: Sequence[Any], bins: int) -> FieldReference | str:
    """Bins (numbers) or category shares of one field's reference values, or why it is skipped."""
    values = [v for v in values if v is not None]
    if not values:
        return "no values in the reference"
    if all(is_number(v) for v in values):
        ordered = sorted(float(v) for v in values if math.isfinite(float(v)))
        n = len(ordered)
        edges = sorted({ordered[min(n - 1, (n * k) // bins)] for k in range(1, bins)})
        counts = [0] * (len(edges) + 1)
        for v in ordered:
            counts[bisect.bisect_left(edges, v)] += 1
        return FieldReference(
            kind="numeric", edges=tuple(edges), expected=tuple(c / n for c in counts)
        )
    keys = [category_key(v) for v in values]
    distinct = sorted(set(keys))
    if len(distinct) > MAX_CATEGORIES:
        return f"{len(distinct)} distinct values: free text is not binned"
    return FieldReference(
        kind="categorical",
        categories=tuple(distinct),
        expected=tuple(keys.count(c) / len(keys) for c in distinct),
    )


def reference_stats(source: str, columns: Mapping[str, Sequence[Any]], bins: int) -> ReferenceStats:
    fields: dict[str, FieldReference] = {}
    skipped: dict[str, str] = {}
    for name, values in columns.items():
        reference = field_reference(values, bins)
        if isinstance(reference, str):
            skipped[name] = reference
        else:
            fields[name] = reference
    rows = max((len(v) for v in columns.values()), default=0)
    return ReferenceStats(source=source, rows=rows, fields=fields, skipped=skipped)


def reference_columns(
    data: Any,
    name: str,
    fields: Sequence[str],
    array_is_input: Callable[[], bool],
    key: str = "[monitoring] reference",
) -> dict[str, list[Any]]:
    """``{field: [values]}`` from a DataFrame, a list of dicts, or a 2-D array of Input's fields.

    An array has no column names: it is accepted only if ``array_is_input()`` says its columns
    are Input's fields in declaration order (the kernel checks that preprocess passes them
    through unchanged). ``key`` is the config key that named the variable, for messages."""
    if hasattr(data, "columns") and hasattr(data, "__getitem__"):
        present = [f for f in fields if f in data.columns]
        if not present:
            raise Fail(
                f"{key} = {name!r}: none of its columns is an Input field ({', '.join(fields)})"
            )
        return {f: as_list(data[f]) for f in present}
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return {
            f: [plain(r[f]) for r in data if f in r] for f in fields if any(f in r for r in data)
        }
    shape = getattr(data, "shape", None)
    if shape is None or len(shape) != 2:
        raise Fail(
            f"{key} = {name!r} is a {type(data).__name__}; use a DataFrame "
            "with Input's field names as columns, a list of dicts, or a 2-D array"
        )
    if shape[1] != len(fields):
        raise Fail(
            f"{key} = {name!r} has {shape[1]} columns but Input has "
            f"{len(fields)} field{'s' if len(fields) != 1 else ''}; use a DataFrame with Input's "
            "field names as columns"
        )
    if not array_is_input():
        raise Fail(
            f"{key} = {name!r} is an array, and preprocess does not show its "
            "columns to be Input's fields in order; use a DataFrame with Input's field names"
        )
    return {f: as_list(data[:, k]) for k, f in enumerate(fields)}


def numeric_ranges(columns: Mapping[str, Sequence[Any]]) -> dict[str, tuple[float, float]]:
    """The smallest and largest finite value of each numeric column (for suggested bounds)."""
    ranges = {}
    for name, values in columns.items():
        numbers = [float(v) for v in values if is_number(v) and math.isfinite(float(v))]
        if numbers and all(is_number(v) for v in values if v is not None):
            ranges[name] = (min(numbers), max(numbers))
    return ranges
