"""The contract tested against the pipeline: inputs the contract admits, answered alone and in
batches, before anything is released.

The inputs are the examples, then one change at a time to the first example (each bound, every
``Literal``/enum value, each optional field null and omitted, strings of odd lengths, both
booleans), then random instances of Input's JSON Schema (hypothesis-jsonschema with a fixed seed,
so the same contract gives the same inputs). Each one the contract admits is answered alone, as
``/v1/predict`` would, and in batches, as adaptive batching would; the report gets the share
answered with a valid Output, the smallest failing input with its exception and cell, and the
first input whose batch answer differs from its answer alone.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import types
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from ..runtime import model as runtime
from ..runtime.limits import read_json
from . import pregen
from .explain import (
    OMITTED,
    changed_fields,
    failure_cause,
    feature_difference,
    shrink,
    single_batch_fix,
)
from .failure import PipelineSource
from .protocol import (
    BatchDifference,
    PregenPlan,
    Robustness,
    RobustnessFailure,
    RobustnessPlan,
)

ODD_LENGTHS = (1, 3, 7, 101)
UNBOUNDED_NUMBERS = (0, -1, 1_000_000)


# ---------------------------------------------------------------- inputs (pure)


def resolve(schema: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    """``node`` with a local ``$ref`` (``#/$defs/Name``) followed."""
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
    return node


def field_values(schema: Mapping[str, Any], prop: Mapping[str, Any], required: bool) -> list[Any]:
    """Values at the edges of what one property admits (``OMITTED`` when it may be left out)."""
    values: list[Any] = [] if required else [OMITTED]
    branches = [resolve(schema, b) for b in prop.get("anyOf", [prop])]
    for branch in branches:
        kind = branch.get("type")
        if "const" in branch:
            values.append(branch["const"])
        elif "enum" in branch:
            values += list(branch["enum"])
        elif kind == "null":
            values.append(None)
        elif kind == "boolean":
            values += [True, False]
        elif kind in ("integer", "number"):
            values += _numbers(branch, kind == "integer")
        elif kind == "string" and "pattern" not in branch and "format" not in branch:
            low = branch.get("minLength", 0)
            high = branch.get("maxLength", max(ODD_LENGTHS))
            lengths = sorted({n for n in (low, low + 1, *ODD_LENGTHS, high) if low <= n <= high})
            values += ["é" * n if n % 2 else "x" * n for n in lengths]
        elif kind == "array" and branch.get("minItems", 0) == 0:
            values.append([])
    return values


def _numbers(branch: Mapping[str, Any], integer: bool) -> list[float]:
    found: list[float] = []
    step = 1 if integer else None
    for key in ("minimum", "maximum"):
        if key in branch:
            found.append(branch[key])
    if "exclusiveMinimum" in branch:
        low = branch["exclusiveMinimum"]
        found.append(low + 1 if step else math.nextafter(low, math.inf))
    if "exclusiveMaximum" in branch:
        high = branch["exclusiveMaximum"]
        found.append(high - 1 if step else math.nextafter(high, -math.inf))
    if not found:
        found = [float(v) if not integer else v for v in UNBOUNDED_NUMBERS]
    return found


def boundary_inputs(schema: Mapping[str, Any], base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``base`` changed in one field at a time to each edge of what the contract admits."""
    required = set(schema.get("required", []))
    found = []
    for name, prop in schema.get("properties", {}).items():
        for value in field_values(schema, resolve(schema, prop), name in required):
            changed = {k: v for k, v in base.items() if k != name}
            if value is not OMITTED:
                changed[name] = value
            found.append(changed)
    return found


def random_inputs(schema: Mapping[str, Any], count: int, seed: int) -> list[dict[str, Any]] | str:
    """``count`` instances of ``schema`` from hypothesis-jsonschema, the same for the same seed
    and versions; or why none could be made."""
    try:
        from hypothesis import HealthCheck, Phase, given, settings
        from hypothesis import seed as fixed_seed
        from hypothesis.configuration import set_hypothesis_home_dir
        from hypothesis_jsonschema import from_schema
    except ImportError as exc:
        return f"random inputs need hypothesis-jsonschema ({exc})"
    found: list[dict[str, Any]] = []

    @fixed_seed(seed)
    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    # only the declared fields: extra keys are ignored or refused before the pipeline sees them
    @given(from_schema({**schema, "additionalProperties": False}))
    def collect(value: dict[str, Any]) -> None:
        found.append(value)

    with tempfile.TemporaryDirectory(prefix="nb2prod-hypothesis-") as home:
        set_hypothesis_home_dir(home)  # its caches stay out of the notebook's directory
        try:
            collect()
        except Exception as exc:  # an unsupported schema keyword: the boundary inputs remain
            return f"hypothesis-jsonschema could not generate from Input's schema ({exc})"
        finally:
            set_hypothesis_home_dir(None)
    return found


def candidates(
    schema: Mapping[str, Any],
    examples: Sequence[Mapping[str, Any]],
    count: int,
    seed: int,
    made: list[dict[str, Any]] | str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """The examples, the boundary inputs and the random ones (``made`` already, by
    :mod:`nb2prod.probe.pregen`, or made here), without repeats."""
    if made is None:
        made = random_inputs(schema, count, seed)
    note = made if isinstance(made, str) else None
    every = [*map(dict, examples), *boundary_inputs(schema, examples[0])]
    every += made if isinstance(made, list) else []
    seen, unique = set(), []
    for value in every:
        key = json.dumps(value, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            unique.append(value)
    return unique, note


def first_difference(
    single: Any, batch: Any, tolerance: float, path: str = "", relative: float = 0.0
) -> tuple[str, Any, Any, float | None] | None:
    """Where two answers differ beyond ``tolerance`` (numbers: absolute, or ``relative`` to the
    larger) or at all (anything else): ``(field path, single, batch, |difference| or None)``."""
    if isinstance(single, dict) and isinstance(batch, dict):
        for key in sorted(set(single) | set(batch)):
            found = first_difference(
                single.get(key), batch.get(key), tolerance, f"{path}.{key}" if path else key,
                relative,
            )  # fmt: skip
            if found:
                return found
        return None
    if isinstance(single, list) and isinstance(batch, list) and len(single) == len(batch):
        for i, (a, b) in enumerate(zip(single, batch, strict=True)):
            found = first_difference(a, b, tolerance, f"{path}[{i}]", relative)
            if found:
                return found
        return None
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (single, batch))
    if numbers:
        if single == batch or (single != single and batch != batch):  # equal, or both NaN
            return None
        difference = abs(single - batch)
        allowed = max(tolerance, relative * max(abs(single), abs(batch)))
        same = math.isfinite(difference) and difference <= allowed
        return None if same else (path, single, batch, difference)
    return None if single == batch else (path, single, batch, None)


def chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# ---------------------------------------------------------------- running them


def probe_contract(
    pipeline: types.ModuleType,
    model: Any,
    examples: Sequence[Mapping[str, Any]],
    plan: RobustnessPlan,
    source: PipelineSource,
    has_fallback: bool,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    reference: str | None = None,
    pregenerated: PregenPlan | None = None,
) -> Robustness:
    """``ranges`` are the reference data's (``reference``, a variable name) numeric ranges per
    Input field: the bound a failure's message suggests names them. ``pregenerated`` says where
    the random inputs made while the notebook ran are (:mod:`nb2prod.probe.pregen`)."""
    schema = pipeline.Input.model_json_schema()
    made = pregen.take(pregenerated, schema, plan.inputs, plan.seed)
    values, note = candidates(schema, examples, plan.inputs, plan.seed, made)
    with warnings.catch_warnings():  # overflow and the like at the edges: the answers say it
        warnings.simplefilter("ignore")
        report = _probe(pipeline, model, values, note, plan, source, has_fallback)
        if report.smallest_failure is not None:
            report = report.model_copy(
                update={"smallest_failure": _shrunk(
                    pipeline, model, report.smallest_failure, examples[0], plan, source,
                    schema, ranges or {}, reference,
                )}
            )  # fmt: skip
    return report


def _shrunk(
    pipeline: types.ModuleType,
    model: Any,
    failure: RobustnessFailure,
    base: Mapping[str, Any],
    plan: RobustnessPlan,
    source: PipelineSource,
    schema: Mapping[str, Any],
    ranges: Mapping[str, tuple[float, float]],
    reference: str | None,
) -> RobustnessFailure:
    """The failing input taken back towards the first example while it fails the same way (the
    same exception from the same cell), and the fields left named with the bound to add."""
    fields = list(schema.get("properties", {}))
    failing = failure.input
    error = _answer(pipeline, model, failing, plan)
    if not isinstance(error, Exception):  # answered this time: a pipeline that is not repeatable
        return failure

    def same_failure(found: Any) -> bool:
        return (
            isinstance(found, Exception)
            and type(found) is type(error)
            and source.cell_of(found) == source.cell_of(error)
        )

    smallest = shrink(
        failing, base, fields, lambda v: same_failure(_answer(pipeline, model, v, plan))
    )
    found = _answer(pipeline, model, smallest, plan)
    if not same_failure(found):  # pragma: no cover - shrink keeps only inputs that failed so
        smallest, found = failing, error
    assert isinstance(found, Exception)
    changed = changed_fields(smallest, base, fields)
    described = source.describe(found)
    return RobustnessFailure(
        input=smallest,
        error=described,
        cell=source.cell_of(found),
        fields=tuple(changed),
        cause=failure_cause(
            smallest, changed, found, described, schema, ranges, reference, "examples[0]"
        ),
    )


def _answer(
    pipeline: types.ModuleType, model: Any, value: Mapping[str, Any], plan: RobustnessPlan
) -> Any:
    """The Output's JSON for ``value`` alone, the exception, or None if the contract refuses it."""
    try:
        inp = read_json(pipeline.Input, json.dumps(value), plan.input_types)
    except (ValidationError, TypeError, ValueError):
        return None
    try:
        return runtime.run(pipeline, model, [inp])[0].model_dump(mode="json")
    except Exception as exc:
        return exc


def _probe(
    pipeline: types.ModuleType,
    model: Any,
    values: list[dict[str, Any]],
    note: str | None,
    plan: RobustnessPlan,
    source: PipelineSource,
    has_fallback: bool,
) -> Robustness:
    admitted: list[tuple[dict[str, Any], Any]] = []
    for value in values:
        try:  # as the service reads a body: JSON, validated against Input, strict types or not
            admitted.append((value, read_json(pipeline.Input, json.dumps(value), plan.input_types)))
        except (ValidationError, TypeError, ValueError):
            continue
    alone, fallback_answered = _answer_alone(pipeline, model, admitted, plan, has_fallback)
    tested = admitted[: len(alone)]
    failed = [
        (value, answer)
        for (value, _), answer in zip(tested, alone, strict=True)
        if isinstance(answer, Exception)
    ]
    smallest = min(failed, key=lambda f: _size(f[0]), default=None)
    answered = len(tested) - len(failed)
    difference = _batch_difference(pipeline, model, tested, alone, plan, source)
    return Robustness(
        generated=len(values),
        admitted=len(admitted),
        tested=len(tested),
        answered=answered,
        share=answered / len(tested) if tested else 1.0,
        fallback_answered=fallback_answered if has_fallback else None,
        smallest_failure=RobustnessFailure(
            input=smallest[0], error=source.describe(smallest[1]), cell=source.cell_of(smallest[1])
        )
        if smallest
        else None,
        exceptions=dict(Counter(type(error).__name__ for _, error in failed)),
        batch_size=plan.batch_size,
        tolerance=plan.tolerance,
        batch_agrees=difference is None,
        first_difference=difference,
        budget_s=plan.budget_s,
        exhausted=len(tested) < len(admitted),
        random_note=note,
    )


def _size(value: Mapping[str, Any]) -> tuple[int, str]:
    """Smaller inputs first: shorter JSON, then alphabetical."""
    text = json.dumps(value, sort_keys=True)
    return len(text), text


def _answer_alone(
    pipeline: types.ModuleType,
    model: Any,
    admitted: Sequence[tuple[dict[str, Any], Any]],
    plan: RobustnessPlan,
    has_fallback: bool,
) -> tuple[list[Any], int]:
    """Each input's answer alone (the Output's JSON, or the exception), until the time budget
    runs out; and how many failures the fallback answers."""
    deadline = time.monotonic() + plan.budget_s
    alone: list[Any] = []
    fallback_answered = 0
    for _, inp in admitted:
        if time.monotonic() > deadline:
            break
        try:
            alone.append(runtime.run(pipeline, model, [inp])[0].model_dump(mode="json"))
        except Exception as exc:
            alone.append(exc)
            if has_fallback:
                try:
                    runtime.fallback(pipeline, inp)
                    fallback_answered += 1
                except Exception:
                    pass
    return alone, fallback_answered


def _batch_difference(
    pipeline: types.ModuleType,
    model: Any,
    tested: Sequence[tuple[dict[str, Any], Any]],
    alone: Sequence[Any],
    plan: RobustnessPlan,
    source: PipelineSource,
) -> BatchDifference | None:
    """The first input whose answer in a batch differs from its answer alone. A batch that
    raises is no difference: the service then answers its items one by one."""
    for start, batch in zip(
        range(0, len(tested), plan.batch_size), chunks(tested, plan.batch_size), strict=True
    ):
        try:
            together = [
                o.model_dump(mode="json")
                for o in runtime.run(pipeline, model, [i for _, i in batch])
            ]
        except Exception:
            continue
        for offset, ((value, _), answer) in enumerate(zip(batch, together, strict=True)):
            index = start + offset
            single = alone[index]
            members = [i for _, i in batch]
            if isinstance(single, Exception):
                return BatchDifference(
                    index=index,
                    input=value,
                    field="",
                    single=None,
                    batch=answer,
                    difference=None,
                    note=f"answered in a batch, but fails alone: {source.describe(single)}",
                    cause=feature_difference(pipeline.preprocess, members, offset),
                    fix=single_batch_fix(members[offset].model_dump()),
                )
            found = first_difference(single, answer, plan.tolerance)
            if found is not None:
                field, a, b, diff = found
                cause = feature_difference(pipeline.preprocess, members, offset)
                return BatchDifference(
                    index=index, input=value, field=field, single=a, batch=b, difference=diff,
                    cause=cause, fix=single_batch_fix(members[offset].model_dump(), cause, diff),
                )  # fmt: skip
    return None
