"""Contract inference for notebooks without a contract cell: pydantic source from observed values.

Pure: takes the examples and, optionally, the training data's columns as plain lists; the kernel
side (:mod:`nb2prod.probe.kernel`) fetches them. The source is reviewed by a person and adopted as
a contract cell, so it is written the way a person would write it.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .failure import Fail
from .protocol import InferPlan, InferredFrom
from .values import plain

HEADER = (
    '"""Contract inferred by nb2prod from {source}.\n\n'
    "Review it, then adopt it as the notebook's `#| nb2prod: contract` cell.\n"
    '"""\n\nfrom typing import Literal, Optional\n\n'
    "from pydantic import BaseModel, ConfigDict, Field\n"
)


@dataclass(frozen=True)
class Column:
    """One column of the training data: its non-missing values and whether any were missing."""

    values: Sequence[Any]
    missing: bool


@dataclass(frozen=True)
class TrainingData:
    name: str
    rows: int
    columns: Mapping[str, Column]


def annotation(field: str, observed: Sequence[Any]) -> str:
    """The narrowest of bool, int, float, str that holds every observed value."""
    if not observed:
        raise Fail(f"field {field!r} never has a value; its type cannot be inferred")
    kinds = {type(v) for v in observed}
    for name, allowed in (
        ("bool", {bool}),
        ("int", {int}),
        ("float", {int, float}),
        ("str", {str}),
    ):
        if kinds <= allowed:
            return name
    mixed = ", ".join(sorted(k.__name__ for k in kinds))
    raise Fail(
        f"field {field!r} mixes {mixed}; its type cannot be inferred",
        "Write a contract cell (`#| nb2prod: contract`) declaring Input and Output.",
    )


def bounds(kind: str, observed: Sequence[float], margin: float) -> tuple[str, str]:
    """``ge``/``le`` keyword arguments: the observed range widened by ``margin`` of its span."""
    lo, hi = min(observed), max(observed)
    span = (hi - lo) or abs(hi) or 1.0
    low, high = lo - margin * span, hi + margin * span
    if lo >= 0:  # a quantity never seen negative is not invited to become one
        low = max(low, 0)
    if kind == "int":
        low, high = math.floor(low), math.ceil(high)
    else:  # six decimals, rounded outwards so no observed value falls outside
        low, high = math.floor(low * 1e6) / 1e6, math.ceil(high * 1e6) / 1e6
    return f"ge={low!r}", f"le={high!r}"


def infer_input(
    examples: Sequence[Mapping[str, Any]], training: TrainingData | None, plan: InferPlan
) -> tuple[str, InferredFrom]:
    """The source of ``class Input`` (with the module header) and what it was inferred from."""
    source = f"{len(examples)} examples"
    if training is not None:
        source += f" and {training.rows} rows of `{training.name}`"
    lines = []
    for field in dict.fromkeys(k for e in examples for k in e):
        if not field.isidentifier() or keyword.iskeyword(field):
            raise Fail(f"the examples use the key {field!r}, which cannot be a field name")
        values = [e.get(field) for e in examples]
        observed = [plain(v) for v in values if v is not None]
        missing = len(observed) < len(values)
        column = training.columns.get(field) if training is not None else None
        if column is not None:
            missing = missing or column.missing
            observed += [plain(v) for v in column.values]
        kind = annotation(field, observed)
        kwargs: list[str] = []
        if kind in ("int", "float"):
            kwargs += bounds(kind, observed, plan.margin)
            note = (
                f"observed {min(observed):g} to {max(observed):g}, "
                f"widened by {plan.margin:g} of the range"
            )
        elif kind == "str" and column is not None and len(set(observed)) <= plan.max_categories:
            kind = "Literal[" + ", ".join(repr(v) for v in sorted(set(observed))) + "]"
            note = "the values seen in the training data"
        else:
            note = f"{len(observed)} values seen"
        if missing:
            kind, kwargs = f"Optional[{kind}]", ["default=None", *kwargs]
        kwargs.append(f"description={'inferred: ' + note!r}")
        lines.append(f"    {field}: {kind} = Field({', '.join(kwargs)})")
    text = (
        HEADER.format(source=source)
        + '\n\nclass Input(BaseModel):\n    model_config = ConfigDict(extra="forbid")\n\n'
        + "\n".join(lines)
        + "\n"
    )
    inferred_from = InferredFrom(
        examples=len(examples),
        training_data=training.name if training is not None else None,
        rows=training.rows if training is not None else 0,
        margin=plan.margin,
    )
    return text, inferred_from


def infer_output(raw: Sequence[Any]) -> str:
    """The source of ``class Output``: one field, ``prediction``, typed from the raw predictions."""
    values = [v.tolist() if hasattr(v, "tolist") else plain(v) for v in raw]
    if values and all(isinstance(v, list) for v in values):
        kind = f"list[{annotation('prediction', [x for v in values for x in v])}]"
    else:
        kind = annotation("prediction", values)
    return (
        "\n\nclass Output(BaseModel):\n"
        f'    prediction: {kind} = Field(description="inferred: the model\'s prediction")\n'
    )
