"""What the served model is watched with: ``service/monitoring.json``, read by the service at start.

Built from facts the kernel captured: which contract fields are sensitive (always redacted in
logs), how each Output field is counted (class counts or a histogram), the reference statistics
of each Input field that drift scores compare with, and whether a batch answers exactly as its
items do alone (adaptive batching is only switched on then).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .capture import Capture
from .config import Config
from .contract_review import fields
from .runtime.schema import Batching, DriftReference, MonitoringPlan, OutputMetric


def sensitive_fields(schema: Mapping[str, Any]) -> list[str]:
    """Top-level fields marked ``sensitive`` in a pydantic JSON Schema."""
    return sorted(name for name, spec in fields(schema).items() if spec.sensitive)


def output_metrics(schema: Mapping[str, Any]) -> dict[str, Any]:
    """How /metrics shows the prediction distribution, per Output field."""
    plan: dict[str, Any] = {}
    for name, spec in fields(schema).items():
        if spec.sensitive:
            continue  # a sensitive value never becomes a label
        kinds = spec.types - {"null"}
        if spec.enum is not None or kinds == {"boolean"}:
            values = (
                [json.loads(v) for v in sorted(spec.enum)]
                if spec.enum is not None
                else [True, False]
            )
            plan[name] = {
                "kind": "categorical",
                "values": [_label(v) for v in values if v is not None],
            }
        elif kinds and kinds <= {"number", "integer"}:
            low, high = (spec.lower or (None,))[0], (spec.upper or (None,))[0]
            buckets = (
                [low + (high - low) * k / 10 for k in range(1, 11)]
                if low is not None and high is not None and high > low
                else None  # unbounded: the service's default buckets
            )
            plan[name] = {"kind": "numeric", "buckets": buckets}
    return plan


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def monitoring_plan(capture: Capture, config: Config) -> MonitoringPlan:
    reference = dict(capture.reference or {"unavailable": "no reference data was captured"})
    sensitive = set(sensitive_fields(capture.input_schema)) | set(
        sensitive_fields(capture.output_schema)
    )
    return MonitoringPlan(
        sensitive=tuple(sorted(sensitive)),
        outputs={
            k: OutputMetric.model_validate(v)
            for k, v in output_metrics(capture.output_schema).items()
        },
        drift=DriftReference.model_validate({**reference, "window": config.monitoring.window}),
        batching=Batching(
            enabled=config.service.batching and capture.batch_consistent,
            why=(
                "off in the config ([service] batching = false)"
                if not config.service.batching
                else "on: a batch answers exactly as its items do alone"
                if capture.batch_consistent
                else "off: the pipeline answers a batch differently from its items alone"
            ),
        ),
    )
