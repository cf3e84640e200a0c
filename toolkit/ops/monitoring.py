"""What the served model is watched with: ``service/monitoring.json``, read by the service at start.

Built from facts the kernel captured: which contract fields are sensitive (always redacted in
logs), how each Output field is counted (class counts or a histogram), the reference statistics
of each Input field that drift scores compare with, and whether a batch answers exactly as its
items do alone (adaptive batching is only switched on then).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..notebook.config import Config
from ..probe.protocol import BatchDifference, ProbeResult, ReferenceStats, Robustness
from ..release.review import fields
from ..runtime.schema import Batching, DriftReference, MonitoringPlan, OutputMetric


def sensitive_fields(schema: Mapping[str, Any]) -> list[str]:
    """Top-level fields marked ``sensitive`` in a pydantic JSON Schema."""
    return sorted(name for name, spec in fields(schema).items() if spec.sensitive)


def output_metrics(
    schema: Mapping[str, Any],
    observed: Mapping[str, Sequence[Any]] | None = None,
    class_labels: Sequence[str] = (),
) -> dict[str, Any]:
    """How /metrics shows the prediction distribution, per Output field.

    Class labels are counted by label: enums, Literals and booleans; integers with at most
    ``MAX_CLASSES`` allowed values; strings and unbounded integers whose values in the
    notebook (``observed``: the examples' outputs) are among the held-out ``class_labels``, or
    any string (labels known from the examples; a new one is counted as ``other``). Other numbers
    go into a histogram whose buckets fit them: ten equal steps between the contract's bounds, or
    around the values the notebook produced, never latency buckets.
    """
    observed = observed or {}
    plan: dict[str, Any] = {}
    for name, spec in fields(schema).items():
        if spec.sensitive:
            continue  # a sensitive value never becomes a label
        kinds = spec.types - {"null"}
        seen = [v for v in observed.get(name, ()) if v is not None]
        low, high = (spec.lower or (None,))[0], (spec.upper or (None,))[0]
        values: list[Any] | None = None
        if spec.enum is not None:
            values = [json.loads(v) for v in sorted(spec.enum)]
        elif kinds == {"boolean"}:
            values = [True, False]
        elif kinds == {"integer"} and low is not None and high is not None:
            if high - low < MAX_CLASSES:
                values = list(range(math.ceil(low), math.floor(high) + 1))
        elif kinds and kinds <= {"string", "integer"} and seen:
            labels = {_label(v) for v in seen}
            if class_labels and labels <= set(class_labels):
                values = list(class_labels)
            elif kinds == {"string"}:
                values = sorted(labels)
        if values is not None:
            plan[name] = {
                "kind": "categorical",
                "values": [_label(v) for v in values if v is not None],
            }
        elif kinds and kinds <= {"number", "integer"}:
            plan[name] = {"kind": "numeric", "buckets": numeric_buckets(low, high, seen)}
    return plan


MAX_CLASSES = 20  # a bounded integer with at most this many values is a class label


def numeric_buckets(low: float | None, high: float | None, seen: Sequence[float]) -> list[float]:
    """Histogram buckets for a number: ten equal steps between the contract's bounds when it has
    both (0.1 ... 1.0 for a probability), else around the values the notebook produced."""
    if low is not None and high is not None and high > low:
        return [_round(low + (high - low) * k / 10) for k in range(1, 11)]
    numbers = [float(v) for v in seen if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if low is not None:
        numbers.append(float(low))
    if high is not None:
        numbers.append(float(high))
    if not numbers:
        return [_round(v) for v in (-100, -10, -1, -0.1, 0, 0.1, 1, 10, 100)]
    first, last = min(numbers), max(numbers)
    if first >= 0 and last <= 1 and (low is None or low >= 0):
        return [_round(k / 10) for k in range(1, 11)]  # looks like a probability or a share
    # ten steps over the seen range widened by half of it on each side (or by one order of
    # magnitude around a single value), at a round step size
    span = last - first or max(abs(first), 1.0)
    step = 10 ** math.floor(math.log10(span * 2 / 10))
    for nice in (1, 2, 5, 10):
        if span * 2 / (nice * step) <= 10:
            step *= nice
            break
    start = math.floor((first - span / 2) / step) * step
    if low is not None:
        start = max(start, float(low))
    return [_round(start + step * k) for k in range(1, 11)]


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def monitoring_plan(result: ProbeResult, config: Config) -> MonitoringPlan:
    """service/monitoring.json from what the kernel probe captured and the config."""
    reference = result.reference or ReferenceStats(unavailable="no reference data was captured")
    sensitive = set(sensitive_fields(result.input_schema)) | set(
        sensitive_fields(result.output_schema)
    )
    return MonitoringPlan(
        sensitive=tuple(sorted(sensitive)),
        outputs={
            k: OutputMetric.model_validate(v)
            for k, v in output_metrics(
                result.output_schema,
                {f: [e.output.get(f) for e in result.examples] for f in result.output_fields},
                (result.holdout.labels or ()) if result.holdout else (),
            ).items()
        },
        drift=DriftReference(window=config.monitoring.window, **dict(reference)),
        batching=batching(result.robustness, config),
        slo=config.slo,
    )


def batching(robustness: Robustness | None, config: Config) -> Batching:
    """Adaptive batching is on only if the config wants it and the contract probe found every
    batch answering as its items alone; otherwise say why, naming the first difference. When a
    batch answered differently, explicit batches are answered item by item too."""
    differs = robustness is not None and not robustness.batch_agrees
    if not config.service.batching:
        why = "off in the config ([service] batching = false)"
        return Batching(enabled=False, why=why, items_alone=differs)
    if robustness is None:
        return Batching(enabled=False, why="off: the contract probe did not run")
    within = (
        f" (numbers within [service] batching_tolerance = {robustness.tolerance:g})"
        if robustness.tolerance
        else ""
    )
    if robustness.batch_agrees:
        return Batching(
            enabled=True,
            why=f"on: {robustness.tested} inputs the contract admits answered the same in batches "
            f"of {robustness.batch_size} as alone{within}",
        )
    first = robustness.first_difference
    assert first is not None
    return Batching(
        enabled=False,
        why=f"off: {single_batch_difference(first)}; [service] batching_tolerance = "
        f"{robustness.tolerance:g}" + (f". Fix: {first.fix}" if first.fix else ""),
        items_alone=True,
    )


def single_batch_difference(first: BatchDifference) -> str:
    """``a single/batch difference: input {...} gets Output.y = 1 alone but 2 in a batch; <what
    preprocess made of it>``: the contract probe's first difference, named as what it is."""
    shown = json.dumps(first.input, sort_keys=True)
    if first.note:
        detail = f"input {shown} is {first.note}"
    else:
        by = f" (difference {first.difference:.3g})" if first.difference is not None else ""
        detail = (
            f"input {shown} gets Output.{first.field} = {first.single!r} alone but "
            f"{first.batch!r} in a batch{by}"
        )
    return f"a single/batch difference: {detail}" + (f"; {first.cause}" if first.cause else "")
