"""What a load test sends: a release's examples and inputs generated from its contract.

``deploy/loadtest.json`` (read by ``deploy/locustfile.py``) holds them with the release's
``[slo]``; ``nb2prod loadtest`` writes the same file for the load it runs.
"""

from __future__ import annotations

import json
import math
import random
import string
from collections.abc import Mapping
from typing import Any

from ..release.review import FieldSpec, fields
from ..version import __version__
from .slo import Observed

GENERATED_INPUTS = 50  # contract-generated inputs beside the examples
SEED = 0  # the same release gets the same inputs


def loadtest_settings(observed: Observed) -> dict[str, Any]:
    """``deploy/loadtest.json``: what the locustfile sends and the [slo] it checks."""
    examples = [dict(e) for e in observed.examples]
    return {
        "generated_by": f"nb2prod {__version__}",
        "name": observed.name,
        "version": observed.version,
        "slo": observed.slo.model_dump(),
        "examples": examples,
        "generated": contract_inputs(observed.input_schema, examples, GENERATED_INPUTS, SEED),
    }


# ---------------------------------------------------------------- inputs from the contract


def contract_inputs(
    schema: Mapping[str, Any], examples: list[dict[str, Any]], count: int, seed: int
) -> list[dict[str, Any]]:
    """``count`` inputs drawn from the contract's JSON Schema (enums, bounds, lengths), seeded.

    Each field is drawn on its own: enums and booleans from their values, numbers uniformly
    within the contract's bounds (or around the examples' values when it has none), free
    strings within their lengths. A field the schema does not describe well enough (a pattern,
    a format, a nested object or list) takes one of the examples' values, valid by construction.
    Optional fields are left out now and then; inputs equal to an example or to an earlier one
    are dropped.
    """
    rng = random.Random(seed)
    specs = fields(schema)
    found: list[dict[str, Any]] = []
    for _ in range(count * 4):
        if len(found) == count:
            break
        value: dict[str, Any] = {}
        for name, spec in specs.items():
            if not spec.required and rng.random() < 0.3:
                continue
            drawn = _draw(spec, [e[name] for e in examples if name in e], rng)
            if drawn is not _NOTHING:
                value[name] = drawn
        complete = all(name in value for name, spec in specs.items() if spec.required)
        if complete and value not in found and value not in examples:
            found.append(value)
    return found


_NOTHING = object()


def _draw(spec: FieldSpec, seen: list[Any], rng: random.Random) -> Any:
    kinds = spec.types - {"null"}
    if spec.enum is not None:
        return json.loads(rng.choice(sorted(spec.enum)))
    if kinds == {"boolean"}:
        return rng.random() < 0.5
    if kinds and kinds <= {"number", "integer"}:
        return _number(spec, kinds == {"integer"}, seen, rng)
    if (
        kinds == {"string"}
        and spec.pattern is None
        and spec.structure is None
        and not seen_format(seen)
    ):
        low = spec.min_length or 1
        high = max(low, min(spec.max_length or low + 12, low + 12))
        return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(low, high)))
    return rng.choice(seen) if seen else _NOTHING


def seen_format(seen: list[Any]) -> bool:
    """Example strings that look structured (an address, a date): keep to the examples' values."""
    return any(isinstance(v, str) and not v.isalnum() for v in seen)


def _number(spec: FieldSpec, integer: bool, seen: list[Any], rng: random.Random) -> float | int:
    numbers = [float(v) for v in seen if isinstance(v, (int, float)) and not isinstance(v, bool)]
    spread = max((max(numbers) - min(numbers)) if numbers else 0.0, 1.0)
    low = spec.lower[0] if spec.lower else min(numbers, default=0.0) - spread
    high = spec.upper[0] if spec.upper else max(numbers, default=0.0) + spread
    if integer:
        first = math.floor(low) + 1 if spec.lower and spec.lower[1] else math.ceil(low)
        last = math.ceil(high) - 1 if spec.upper and spec.upper[1] else math.floor(high)
        return rng.randint(first, max(first, last))
    value = float(f"{rng.uniform(low, high):.4g}")
    if (
        not low <= value <= high
        or (spec.lower and spec.lower[1] and value == low)
        or (spec.upper and spec.upper[1] and value == high)
    ):
        value = (low + high) / 2  # rounding met an exclusive bound
    return value
