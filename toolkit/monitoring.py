"""What the served model is watched with: ``service/monitoring.json``, read by the service at start.

Built from facts the kernel captured: which contract fields are sensitive (always redacted in
logs), how each Output field is counted (class counts or a histogram), the reference statistics
of each Input field that drift scores compare with, and whether a batch answers exactly as its
items do alone (adaptive batching is only switched on then).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from toolkit.capture import Capture
from toolkit.config import Config

SENSITIVE_KEY = "sensitive"  # Field(json_schema_extra={"sensitive": True}) in the contract cell


def _resolve(schema: Mapping[str, Any], prop: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local $ref and drop `null` from Optional[...] (anyOf with a null branch)."""
    if "$ref" in prop:
        name = str(prop["$ref"]).rsplit("/", 1)[-1]
        return {
            **schema.get("$defs", {}).get(name, {}),
            **{k: v for k, v in prop.items() if k != "$ref"},
        }
    branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        return {**_resolve(schema, branches[0]), **{k: v for k, v in prop.items() if k != "anyOf"}}
    return prop


def sensitive_fields(schema: Mapping[str, Any]) -> list[str]:
    """Top-level fields marked ``sensitive`` in a pydantic JSON Schema."""
    return sorted(
        name
        for name, prop in schema.get("properties", {}).items()
        if _resolve(schema, prop).get(SENSITIVE_KEY) is True
    )


def output_metrics(schema: Mapping[str, Any]) -> dict[str, Any]:
    """How /metrics shows the prediction distribution, per Output field."""
    plan: dict[str, Any] = {}
    for name, raw in schema.get("properties", {}).items():
        prop = _resolve(schema, raw)
        if prop.get(SENSITIVE_KEY) is True:
            continue  # a sensitive value never becomes a label
        if "enum" in prop or "const" in prop or prop.get("type") == "boolean":
            values = prop.get("enum", [prop["const"]] if "const" in prop else [True, False])
            plan[name] = {"kind": "categorical", "values": [_label(v) for v in values]}
        elif prop.get("type") in ("number", "integer"):
            low = prop.get("minimum", prop.get("exclusiveMinimum"))
            high = prop.get("maximum", prop.get("exclusiveMaximum"))
            buckets = (
                [low + (high - low) * k / 10 for k in range(1, 11)]
                if isinstance(low, (int, float)) and isinstance(high, (int, float)) and high > low
                else None  # unbounded: the service's default buckets
            )
            plan[name] = {"kind": "numeric", "buckets": buckets}
    return plan


def _label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def monitoring_plan(capture: Capture, config: Config) -> dict[str, Any]:
    reference = dict(capture.reference or {"unavailable": "no reference data was captured"})
    sensitive = set(sensitive_fields(capture.input_schema)) | set(
        sensitive_fields(capture.output_schema)
    )
    return {
        "sensitive": sorted(sensitive),
        "outputs": output_metrics(capture.output_schema),
        "drift": {
            **reference,
            "window": config.monitoring.window,
            # a sensitive field's distribution is still watched; only its values stay out of logs
        },
        "batching": {
            "enabled": config.service.batching and capture.batch_consistent,
            "why": (
                "off in the config ([service] batching = false)"
                if not config.service.batching
                else "on: a batch answers exactly as its items do alone"
                if capture.batch_consistent
                else "off: the pipeline answers a batch differently from its items alone"
            ),
        },
    }
