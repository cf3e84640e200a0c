"""Why an input went wrong, in words a data scientist can act on.

Two findings of the probe are explained here: an input answered differently alone than in a batch
(:func:`feature_difference` compares what preprocess made of it each way, :func:`single_batch_fix`
says how to make preprocess treat a row the same whatever rows come with it), and an input the
contract admits that the pipeline cannot answer (:func:`shrink` takes it back towards an example
one field at a time while it still fails, :func:`failure_cause` names the fields left and the
bound to add).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from .values import as_list, is_number, plain

OMITTED = object()  # a field left out of an input
# floats the service answers may differ from the notebook's by this much, relative (BLAS
# reordering); verify compares with it, and the probe's single/batch check of the examples too
PARITY_REL_TOL = 1e-9

# ---------------------------------------------------------------- single vs batch


def feature_difference(preprocess: Callable[[list[Any]], Any], batch: list[Any], index: int) -> str:
    """What preprocess made of ``batch[index]`` alone that it did not in the whole ``batch``
    (columns, dtypes or a value), or ``""`` when its features are the same both ways."""
    try:
        alone, together = preprocess([batch[index]]), preprocess(batch)
    except Exception:
        return ""
    columns_alone, columns_together = _columns(alone), _columns(together)
    if (
        columns_alone is not None
        and columns_together is not None
        and columns_alone != columns_together
    ):
        only_alone = [c for c in columns_alone if c not in columns_together]
        only_batch = [c for c in columns_together if c not in columns_alone]
        parts = []
        if only_batch:
            parts.append(f"lacks column(s) {_names(only_batch)} alone")
        if only_alone:
            parts.append(f"has column(s) {_names(only_alone)} only alone")
        if not parts:
            parts.append("orders its columns differently alone")
        return "preprocess's frame " + " and ".join(parts)
    dtypes_alone, dtypes_together = _dtypes(alone), _dtypes(together)
    rows_alone, rows_together = _rows(alone), _rows(together)
    if rows_alone and rows_together and len(rows_together) > index:
        one, other = rows_alone[0], rows_together[index]
        if len(one) != len(other):
            return f"preprocess gives {len(one)} features alone but {len(other)} in a batch"
        names = columns_alone or [str(k) for k in range(len(one))]
        for name, a, b in zip(names, one, other, strict=False):
            if not _same(a, b):
                kind_a, kind_b = dtypes_alone.get(name), dtypes_together.get(name)
                if kind_a and kind_b and kind_a != kind_b:
                    a_text, b_text = f"{_show(a)} ({kind_a})", f"{_show(b)} ({kind_b})"
                else:
                    a_text, b_text = _show(a), _show(b)
                return f"preprocess gives `{name}` = {a_text} alone but {b_text} in a batch"
    for name, kind in dtypes_alone.items():
        if dtypes_together.get(name, kind) != kind:
            return f"preprocess's column `{name}` is {kind} alone but {dtypes_together[name]} in a batch"
    return ""


def single_batch_fix(
    input_value: Mapping[str, Any], cause: str = "", difference: float | None = None
) -> str:
    """How to make preprocess answer a row the same alone and in a batch; or, when its features
    are the same both ways (``cause`` empty) and only a number differs by ``difference``, how to
    accept the model's own batched arithmetic."""
    if not cause and difference is not None:
        return (
            "preprocess gives the same features alone and in a batch: the model's arithmetic "
            f"differs by {difference:.3g} with the batch size (vectorised floating point); "
            "allow it with [service] batching_tolerance (e.g. 1e-9)"
        )
    missing = [k for k, v in input_value.items() if v is None]
    if missing:
        cause = (
            f"a frame built from one row takes its dtypes from that row alone: a None in "
            f"{_names(missing)} makes an object column, which get_dummies drops and arithmetic "
            "treats differently"
        )
    else:
        cause = (
            "a frame built from the rows it is given takes its columns and dtypes from them "
            "(get_dummies makes a column only for the values present)"
        )
    return (
        f"preprocess must treat each row the same whatever rows come with it; {cause}. Build the "
        "frame with explicit dtypes (`pd.DataFrame(rows).astype({...})`) or reindex its columns "
        "to the training columns (`.reindex(columns=train_columns, fill_value=0)`)"
    )


def _columns(value: Any) -> list[str] | None:
    columns = getattr(value, "columns", None)
    if columns is None or isinstance(value, Mapping):
        return None
    try:
        return [str(c) for c in columns]
    except TypeError:
        return None


def _dtypes(value: Any) -> dict[str, str]:
    dtypes = getattr(value, "dtypes", None)
    try:
        return {str(k): str(v) for k, v in dtypes.items()} if dtypes is not None else {}
    except AttributeError:
        return {}


def _rows(value: Any) -> list[list[Any]] | None:
    try:
        rows = as_list(value)
    except Exception:
        return None
    return [r if isinstance(r, list) else [r] for r in rows]


def _same(a: Any, b: Any) -> bool:
    a, b = plain(a), plain(b)
    if is_number(a) and is_number(b):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b) if not (a is None or b is None) else a is b


def _show(value: Any) -> str:
    value = plain(value)
    return f"{value:g}" if isinstance(value, float) else repr(value)


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


# ---------------------------------------------------------------- failures the contract admits


def shrink(
    failing: Mapping[str, Any],
    base: Mapping[str, Any],
    fields: Sequence[str],
    still_fails: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    """``failing`` with as many fields as possible set back to ``base``'s values (left out where
    ``base`` leaves them out) while ``still_fails`` says it fails the same way: one field at a
    time, in ``fields`` order, so the fields left are each needed for the failure."""
    current = dict(failing)
    for name in fields:
        if current.get(name, OMITTED) == base.get(name, OMITTED):
            continue
        trial = {k: v for k, v in current.items() if k != name}
        if name in base:
            trial[name] = base[name]
        if still_fails(trial):
            current = trial
    return current


def changed_fields(
    value: Mapping[str, Any], base: Mapping[str, Any], fields: Sequence[str]
) -> list[str]:
    return [f for f in fields if value.get(f, OMITTED) != base.get(f, OMITTED)]


def failure_cause(
    value: Mapping[str, Any],
    changed: Sequence[str],
    error: BaseException,
    described: str,
    schema: Mapping[str, Any],
    ranges: Mapping[str, tuple[float, float]],
    reference: str | None,
    base_name: str,
) -> str:
    """One sentence: the fields that make the input fail, what they make go wrong, and the
    bound (or handling) to add to each."""
    shown = " and ".join(
        f"Input.{f} = {_value(value[f])}" if f in value else f"Input.{f} left out" for f in changed
    )
    others = f" (the other fields as in {base_name})" if changed else ""
    text = f"{shown or base_name}{others} makes {_effect(error, described)}"
    fixes = [
        fix for f in changed if (fix := _fix(f, value.get(f, OMITTED), schema, ranges, reference))
    ]
    return text + ("; " + "; ".join(fixes) if fixes else "")


def _effect(error: BaseException, described: str) -> str:
    """``Output.probability nan (Output requires: ...)`` for an Output the pipeline could not
    fill; else the exception and its cell."""
    if isinstance(error, ValidationError) and error.title == "Output" and error.errors():
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "?"
        got = first.get("input")
        return f"Output.{where} {_value(got)} (Output requires: {first.get('msg', '')})"
    return described


def _fix(
    name: str,
    value: Any,
    schema: Mapping[str, Any],
    ranges: Mapping[str, tuple[float, float]],
    reference: str | None,
) -> str:
    prop = schema.get("properties", {}).get(name, {})
    branches = prop.get("anyOf", [prop])
    numeric = next((b for b in branches if b.get("type") in ("number", "integer")), None)
    if value is OMITTED or value is None:
        return f"handle a missing `{name}` in preprocess, or make `{name}` required"
    if numeric is not None and is_number(value):
        seen = ranges.get(name)
        if value >= 0:
            key, bound = "le", "maximum" in numeric or "exclusiveMaximum" in numeric
            known = (
                f" (the max of `{reference}.{name}` is {seen[1]:g})" if seen and reference else ""
            )
        else:
            key, bound = "ge", "minimum" in numeric or "exclusiveMinimum" in numeric
            known = (
                f" (the min of `{reference}.{name}` is {seen[0]:g})" if seen and reference else ""
            )
        verb = "narrow" if bound else "add"
        return f"{verb} Field({key}=...) on `{name}`{known}"
    if isinstance(value, str):
        return f"make preprocess handle this `{name}`, or narrow it (a Literal, or max_length)"
    return f"make preprocess handle this `{name}`, or narrow its type in the contract"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
