"""The probe's steps, in the order they run inside the kernel after the notebook's last cell.

Each step reads what the notebook left in its namespace and goes through the *rendered*
``service/pipeline.py`` (the very file the service imports) and nb2prod's runtime (the very code
the service runs), so what the probe sees is what the service will do.
"""

from __future__ import annotations

import importlib.util
import json
import math
import platform
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from ..runtime import model as runtime
from . import (
    artifacts,
    environment,
    explain,
    fill,
    holdout,
    infer,
    latency,
    reference,
    robustness,
    serialize,
)
from .failure import Fail, PipelineSource
from .protocol import InferPlan, ProbeExample, ProbePlan, ProbeResult, ReferenceStats
from .values import as_list, is_number, plain

PIPELINE_MODULE = "_nb2prod_pipeline"
SERVER_MODULES = ("uvloop", "httptools")  # uvicorn's "auto" picks them when importable
SERVICE_NAMES_HINT = (
    "Code that goes into the service may use only names from setup, contract, preprocess, "
    "predict, postprocess and fallback cells, imports and builtins."
)


def probe(namespace: Mapping[str, Any], plan: ProbePlan) -> ProbeResult:
    out = Path(plan.out_dir)
    model = model_object(namespace, plan)
    examples = example_list(namespace)
    metrics = notebook_metrics(namespace)
    inferred, inferred_from = None, None
    if plan.infer is not None:
        fields = {k for e in examples for k in e}
        inferred, inferred_from = infer.infer_input(
            examples, training_data(namespace, plan.infer, fields), plan.infer
        )
    fitted = artifacts.collect(namespace, plan.artifacts)
    pipeline, source = load_pipeline(plan, inferred)
    for name, value in fitted.items():  # where the service's runtime puts the stored copies
        setattr(pipeline, name, value)
    if inferred is not None:
        output_source = infer_output(pipeline, source, model, examples)
        exec(compile(output_source, "<inferred contract>", "exec"), pipeline.__dict__)
        inferred += output_source
    check_pipeline(pipeline, plan)
    inputs = []
    for i, example in enumerate(examples):
        try:
            inputs.append(pipeline.Input.model_validate(example))
        except Exception as exc:
            raise Fail(f"examples[{i}] is not a valid Input: {exc}") from None
    try:
        outputs = runtime.run(pipeline, model, inputs)
    except Exception as exc:
        raise run_failure(exc, plan, pipeline, source, model, inputs) from None
    fallback_outputs: list[dict[str, Any] | None] = [None] * len(inputs)
    if plan.has_fallback:
        for i, inp in enumerate(inputs):
            try:
                fallback_outputs[i] = runtime.fallback(pipeline, inp).model_dump(mode="json")
            except Exception as exc:
                raise Fail(
                    f"the fallback failed on examples[{i}]: {source.describe(exc)}"
                ) from None
    expected = [o.model_dump(mode="json") for o in outputs]
    check_alone(pipeline, model, inputs, expected, plan.robustness.tolerance, source)

    def answers_the_same(with_model: Any) -> str | None:
        again = [o.model_dump(mode="json") for o in runtime.run(pipeline, with_model, inputs)]
        return None if again == expected else "the reloaded copy answers the examples differently"

    def artifact_answers_the_same(name: str, loaded: Any) -> str | None:
        live = getattr(pipeline, name)
        setattr(pipeline, name, loaded)
        try:
            return answers_the_same(model)
        finally:
            setattr(pipeline, name, live)

    stored = serialize.store(model, out, "model", answers_the_same)
    exported = artifacts.store_all(fitted, plan.artifacts, out, artifact_answers_the_same)
    runtime.load_artifacts(out, exported, pipeline)  # from here on, as the service has them
    figures = (
        holdout.evaluate(model, namespace, plan.evaluation, pipeline, source, plan.predict_cell)
        if plan.evaluation
        else None
    )
    timings = latency.measure(pipeline, model, inputs)
    reference_stats, reference_columns = drift_reference(namespace, plan, pipeline, inputs)
    contract = robustness.probe_contract(
        pipeline, model, [i.model_dump(mode="json") for i in inputs], plan.robustness, source,
        plan.has_fallback, reference.numeric_ranges(reference_columns),
        plan.reference.variable if plan.reference else None, plan.pregenerated,
    )  # fmt: skip
    modules = set(plan.modules) | serialize.referenced_modules(model)
    modules |= {"bentoml", "pydantic", "joblib", serialize.FORMAT_MODULES[stored.format]}
    # the start check of a signed release verifies release.sig with it (runtime/signature.py):
    # every release can be signed after it is packaged, so every image carries it
    modules.add("cryptography")
    # uvicorn's C HTTP parser and event loop, which `bentoml serve` uses when they are installed
    # (nb2prod depends on them): the release serves at their speed, in its image too
    modules |= {name for name in SERVER_MODULES if importlib.util.find_spec(name) is not None}
    for value in fitted.values():
        modules |= serialize.referenced_modules(value)
    modules |= {serialize.FORMAT_MODULES[a.format] for a in exported}
    known = environment.recorded(plan.environment_file)  # the packager's, when it applies
    installed, providers = known if known else (environment.installed_distributions(), None)
    requirements, unresolved = environment.requirements(modules, providers)
    return ProbeResult(
        model=stored,
        artifacts=exported,
        model_class=f"{type(model).__module__}.{type(model).__qualname__}",
        examples=tuple(
            ProbeExample(index=i, input=inp.model_dump(mode="json"), output=o, fallback_output=f)
            for i, (inp, o, f) in enumerate(zip(inputs, expected, fallback_outputs, strict=True))
        ),
        metrics=metrics,
        input_schema=pipeline.Input.model_json_schema(),
        output_schema=pipeline.Output.model_json_schema(),
        output_fields=tuple(pipeline.Output.model_fields),
        input_fields=tuple(pipeline.Input.model_fields),
        requirements=requirements,
        unresolved_modules=unresolved,
        installed=installed,
        python_version=platform.python_version(),
        inferred_contract=inferred,
        inferred_from=inferred_from,
        holdout=figures,
        latency=timings,
        reference=reference_stats,
        robustness=contract,
        warnings=artifacts.row_warnings(fitted, plan.artifacts),
    )


def model_object(namespace: Mapping[str, Any], plan: ProbePlan) -> Any:
    if plan.model_variable not in namespace:
        raise Fail(
            f"{plan.model_cell} ran but left no variable '{plan.model_variable}'",
            "Assign the fitted model to that name, or name yours: `#| nb2prod: model name=clf`.",
        )
    return namespace[plan.model_variable]


def example_list(namespace: Mapping[str, Any]) -> list[dict[str, Any]]:
    examples = namespace.get("examples")
    if (
        not isinstance(examples, list)
        or not examples
        or not all(isinstance(e, dict) for e in examples)
    ):
        raise Fail(
            "the examples cell must leave `examples`, a non-empty list of dicts; "
            f"found {type(examples).__name__}"
        )
    return examples


def notebook_metrics(namespace: Mapping[str, Any]) -> dict[str, float] | None:
    metrics = namespace.get("metrics")
    if metrics is None:
        return None
    if not isinstance(metrics, dict) or not all(
        isinstance(k, str) and is_number(plain(v)) for k, v in metrics.items()
    ):
        raise Fail("`metrics` must be a dict of metric name to number")
    values = {k: float(plain(v)) for k, v in metrics.items()}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise Fail(f"metric {bad[0]!r} is not a finite number")
    return values


def training_data(
    namespace: Mapping[str, Any], plan: InferPlan, fields: set[str]
) -> infer.TrainingData | None:
    name = plan.training_data
    if name is None:
        return None
    if name not in namespace:
        raise Fail(f"[contract] training_data = {name!r}, but the notebook left no such variable")
    frame = namespace[name]
    if not hasattr(frame, "columns") or not hasattr(frame, "isna"):
        raise Fail(
            f"[contract] training_data = {name!r} is a {type(frame).__name__}, "
            "not a pandas DataFrame"
        )
    columns = {
        str(c): infer.Column(as_list(frame[c].dropna()), bool(frame[c].isna().any()))
        for c in frame.columns
        if str(c) in fields
    }
    return infer.TrainingData(name, len(frame), columns)


def load_pipeline(plan: ProbePlan, prelude: str | None) -> tuple[types.ModuleType, PipelineSource]:
    """pipeline.py as a fresh module (the inferred contract, if any, runs first, where the final
    pipeline.py puts it), and the map from its lines back to the notebook's cells."""
    text = Path(plan.pipeline_file).read_text(encoding="utf-8")
    source = PipelineSource(plan.pipeline_file, text, plan.cell_labels)
    module = types.ModuleType(PIPELINE_MODULE)
    module.__file__ = plan.pipeline_file
    sys.modules[PIPELINE_MODULE] = module
    try:
        if prelude:
            exec(compile(prelude, "<inferred contract>", "exec"), module.__dict__)
        exec(compile(text, plan.pipeline_file, "exec"), module.__dict__)
    except Fail:
        raise
    except Exception as exc:
        raise Fail(
            f"the extracted service code does not run on its own: {source.describe(exc)}",
            SERVICE_NAMES_HINT,
        ) from None
    return module, source


def infer_output(
    pipeline: types.ModuleType, source: PipelineSource, model: Any, examples: list[dict[str, Any]]
) -> str:
    try:
        inputs = [pipeline.Input.model_validate(e) for e in examples]
        raw = pipeline.predict(model, pipeline.preprocess(inputs))
    except Exception as exc:
        raise Fail(f"the service pipeline failed on the examples: {source.describe(exc)}") from None
    return infer.infer_output(as_list(raw) if hasattr(raw, "to_numpy") else list(raw))


def run_failure(
    exc: Exception,
    plan: ProbePlan,
    pipeline: types.ModuleType,
    source: PipelineSource,
    model: Any,
    inputs: list[Any],
) -> Fail:
    """The examples failed: say where, and, when nb2prod's default postprocess could not fill
    Output from the predictions, which cell and which field to change."""
    field = plan.default_output_field
    if field is not None:
        try:
            raw = pipeline.predict(model, pipeline.preprocess(inputs))
        except Exception:
            raw = None  # preprocess or predict itself failed: the general message says where
        problem = (
            fill.fill_problem(raw, len(inputs), pipeline.Output, field) if raw is not None else None
        )
        if problem is not None:
            return Fail(
                f"{plan.predict_cell} gives predictions that do not fit Output.{field}: {problem}",
                f"Without a postprocess cell, each item of what predict returns fills "
                f"Output.{field}. Make predict return one value per input that fits it, change "
                f"the field's type in the contract (a row of numbers fits `list[float]`), or add "
                f"a `postprocess` cell.",
            )
    return Fail(f"the service pipeline failed on the examples: {source.describe(exc)}")


def check_pipeline(pipeline: types.ModuleType, plan: ProbePlan) -> None:
    for cls in ("Input", "Output"):
        value = getattr(pipeline, cls, None)
        if not (isinstance(value, type) and issubclass(value, BaseModel)):
            raise Fail(f"the contract cell must define a pydantic model `{cls}(BaseModel)`")
    for fn in ("preprocess", *(("fallback",) if plan.has_fallback else ())):
        if not callable(getattr(pipeline, fn, None)):
            raise Fail(f"the {fn} cell must define a function `{fn}`")


def drift_reference(
    namespace: Mapping[str, Any], plan: ProbePlan, pipeline: types.ModuleType, inputs: list[Any]
) -> tuple[ReferenceStats | None, dict[str, list[Any]]]:
    """The reference statistics of each Input field, or why there are none, and the reference
    values per field; a problem with a variable the config named explicitly is an error."""
    if plan.reference is None:
        return None, {}
    name = plan.reference.variable
    if name not in namespace:
        if plan.reference.explicit:
            raise Fail(f"[monitoring] reference = {name!r}, but the notebook left no such variable")
        return ReferenceStats(
            unavailable=f"no reference data: the notebook left no variable {name!r} "
            "(set [monitoring] reference)"
        ), {}
    fields = list(pipeline.Input.model_fields)

    def array_is_input() -> bool:
        # features == field values for every example: preprocess passes the fields through
        try:
            features = [[plain(v) for v in row] for row in pipeline.preprocess(inputs)]
        except Exception:
            return False
        return features == [[getattr(i, f) for f in fields] for i in inputs]

    try:
        columns = reference.reference_columns(
            namespace[name], name, fields, array_is_input, key=plan.reference.key
        )
    except Fail as failure:
        if plan.reference.explicit:
            raise
        return ReferenceStats(unavailable=failure.message), {}
    return reference.reference_stats(name, columns, plan.reference.bins), columns


def check_alone(
    pipeline: types.ModuleType,
    model: Any,
    inputs: list[Any],
    together: list[dict[str, Any]],
    tolerance: float,
    source: PipelineSource,
) -> None:
    """Each example answered alone (as ``/v1/predict`` answers it) as it was in the batch of
    all of them; else :class:`Fail` naming the single/batch difference, its cause and the fix.
    Numbers may differ by verify's relative tolerance or ``[service] batching_tolerance``."""
    for index, inp in enumerate(inputs):
        try:
            alone = runtime.run(pipeline, model, [inp])[0].model_dump(mode="json")
        except Exception as exc:
            raise Fail(
                f"a single/batch difference: examples[{index}] is answered in the batch of "
                f"examples but fails alone: {source.describe(exc)}",
                explain.single_batch_fix(inp.model_dump()) + ".",
            ) from None
        found = robustness.first_difference(
            alone, together[index], tolerance, relative=explain.PARITY_REL_TOL
        )
        if found is None:
            continue
        field, single, batch, difference = found
        cause = explain.feature_difference(pipeline.preprocess, inputs, index)
        raise Fail(
            f"a single/batch difference: examples[{index}] gets Output.{field} = {single!r} "
            f"alone but {batch!r} in the batch of examples"
            + (f"; {cause}" if cause else "")
            + f" (input {json.dumps(inp.model_dump(mode='json'), sort_keys=True)})",
            explain.single_batch_fix(inp.model_dump(), cause, difference)
            + ". The service answers /v1/predict one "
            "input at a time, so it would not answer as the notebook did.",
        )
