"""What nb2prod collects inside the notebook's kernel after the notebook has run.

:func:`capture_cell_source` is the code of one cell appended to the notebook before execution. It
imports the *rendered* ``service/pipeline.py`` and ``service/runtime.py`` (the very files that go
into the service), runs every example through them with the notebook's own model object, and
writes ``capture.json`` and the serialized model into a directory. :func:`read_capture` turns that
back into a typed :class:`Capture`, or raises :class:`CaptureError` saying what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from toolkit.errors import CaptureError

CAPTURE_TAG = "nb2prod-capture"
MODEL_FILE = "model.joblib"


@dataclass(frozen=True)
class CapturePlan:
    """What the capture cell is told: where things are and which names to look for."""

    out_dir: Path
    pipeline_file: Path
    runtime_file: Path
    model_variable: str
    model_cell: str  # label of the model cell, for messages
    has_fallback: bool
    modules: tuple[str, ...]  # top-level modules whose distributions must be pinned


@dataclass(frozen=True)
class Example:
    index: int
    input: Mapping[str, Any]
    output: Mapping[str, Any]
    fallback_output: Mapping[str, Any] | None


@dataclass(frozen=True)
class Capture:
    """Everything the release needs from the kernel."""

    model_file: Path
    model_class: str
    examples: tuple[Example, ...]
    metrics: Mapping[str, float] | None
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any]
    output_fields: tuple[str, ...]
    requirements: Mapping[str, str]  # distribution -> version the notebook ran with
    unresolved_modules: tuple[str, ...]  # imported, but provided by no installed distribution
    installed: Mapping[str, str]  # every distribution in the kernel -> version
    python_version: str


def capture_cell_source(plan: CapturePlan) -> str:
    spec = {
        "out_dir": str(plan.out_dir),
        "pipeline": str(plan.pipeline_file),
        "runtime": str(plan.runtime_file),
        "model_variable": plan.model_variable,
        "model_cell": plan.model_cell,
        "has_fallback": plan.has_fallback,
        "modules": list(plan.modules),
        "model_file": MODEL_FILE,
    }
    return _CAPTURE_CODE.replace("__SPEC__", repr(json.dumps(spec)))


def read_capture(out_dir: Path) -> Capture:
    path = out_dir / "capture.json"
    if not path.is_file():
        raise CaptureError("the notebook ran, but nb2prod's capture step wrote nothing")
    data = json.loads(path.read_text(encoding="utf-8"))
    if "error" in data:
        raise CaptureError(data["error"]["message"], hint=data["error"].get("hint"))
    return Capture(
        model_file=out_dir / MODEL_FILE,
        model_class=data["model_class"],
        examples=tuple(
            Example(e["index"], e["input"], e["output"], e.get("fallback_output"))
            for e in data["examples"]
        ),
        metrics=MappingProxyType(data["metrics"]) if data["metrics"] is not None else None,
        input_schema=data["input_schema"],
        output_schema=data["output_schema"],
        output_fields=tuple(data["output_fields"]),
        requirements=MappingProxyType(data["requirements"]),
        unresolved_modules=tuple(data["unresolved_modules"]),
        installed=MappingProxyType(data["installed"]),
        python_version=data["python_version"],
    )


# Runs in the user's kernel: standard library and pydantic only; every name is local to the
# function so nothing leaks into the notebook's namespace.
_CAPTURE_CODE = r"""
def _nb2prod_capture(spec):
    import importlib.util, io, json, math, numbers, pickle, platform, sys, traceback
    from importlib import metadata
    from pathlib import Path

    spec = json.loads(spec)
    out = Path(spec["out_dir"])
    user = globals()

    class Fail(Exception):
        def __init__(self, message, hint=None):
            self.message, self.hint = message, hint

    def last_error():
        etype, value, tb = sys.exc_info()
        frames = [f for f in traceback.extract_tb(tb) if f.filename.endswith(("pipeline.py",))]
        where = f" (pipeline.py line {frames[-1].lineno}: {frames[-1].line})" if frames else ""
        return f"{etype.__name__}: {value}{where}"

    def load(name, path):
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module

    def referenced_modules(obj):
        # every module whose classes or functions the pickled model refers to
        seen = set()

        class Probe(pickle.Pickler):
            def persistent_id(self, value):
                owner = value if isinstance(value, type) or callable(value) else type(value)
                module = getattr(owner, "__module__", None)
                if isinstance(module, str):
                    seen.add(module.split(".")[0])
                return None

        Probe(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
        return seen

    def capture():
        name = spec["model_variable"]
        if name not in user:
            raise Fail(f"{spec['model_cell']} ran but left no variable '{name}'",
                       "Assign the fitted model to that name, or name yours: "
                       "`#| nb2prod: model name=clf`.")
        model = user[name]
        examples = user.get("examples")
        if not isinstance(examples, list) or not examples or not all(isinstance(e, dict) for e in examples):
            raise Fail("the examples cell must leave `examples`, a non-empty list of dicts; "
                       f"found {type(examples).__name__}")
        metrics = user.get("metrics")
        if metrics is not None:
            if not isinstance(metrics, dict) or not all(
                isinstance(k, str) and isinstance(v, numbers.Real) and not isinstance(v, bool)
                for k, v in metrics.items()
            ):
                raise Fail("`metrics` must be a dict of metric name to number")
            metrics = {k: float(v) for k, v in metrics.items()}
            bad = [k for k, v in metrics.items() if not math.isfinite(v)]
            if bad:
                raise Fail(f"metric {bad[0]!r} is not a finite number")
        runtime = load("_nb2prod_runtime", spec["runtime"])
        try:
            pipeline = load("_nb2prod_pipeline", spec["pipeline"])
        except Exception:
            raise Fail(f"the extracted service code does not run on its own: {last_error()}",
                       "Code that goes into the service may use only names from setup, contract, "
                       "preprocess, predict, postprocess and fallback cells, imports and builtins.")
        from pydantic import BaseModel
        for cls in ("Input", "Output"):
            if not (isinstance(getattr(pipeline, cls, None), type) and issubclass(getattr(pipeline, cls), BaseModel)):
                raise Fail(f"the contract cell must define a pydantic model `{cls}(BaseModel)`")
        for fn in ("preprocess",) + (("fallback",) if spec["has_fallback"] else ()):
            if not callable(getattr(pipeline, fn, None)):
                raise Fail(f"the {fn} cell must define a function `{fn}`")
        inputs = []
        for i, example in enumerate(examples):
            try:
                inputs.append(pipeline.Input.model_validate(example))
            except Exception as exc:
                raise Fail(f"examples[{i}] is not a valid Input: {exc}")
        try:
            outputs = runtime.run(pipeline, model, inputs)
        except Exception:
            raise Fail(f"the service pipeline failed on the examples: {last_error()}")
        fallback_outputs = [None] * len(inputs)
        if spec["has_fallback"]:
            for i, inp in enumerate(inputs):
                try:
                    fallback_outputs[i] = runtime.fallback(pipeline, inp).model_dump(mode="json")
                except Exception:
                    raise Fail(f"the fallback failed on examples[{i}]: {last_error()}")
        import joblib
        joblib.dump(model, out / spec["model_file"])
        installed = {}
        for dist in metadata.distributions():
            installed.setdefault(dist.metadata["Name"], dist.version)
        providers = metadata.packages_distributions()
        modules = set(spec["modules"]) | referenced_modules(model) | {"bentoml", "pydantic", "joblib"}
        modules -= set(sys.stdlib_module_names) | {"builtins", "__main__", "__mp_main__"}
        requirements, unresolved = {}, []
        for module in sorted(modules):
            dists = providers.get(module)
            if not dists:
                unresolved.append(module)
                continue
            for dist in dists:
                requirements[metadata.metadata(dist)["Name"]] = metadata.version(dist)
        return {
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "examples": [
                {"index": i, "input": inp.model_dump(mode="json"), "output": o.model_dump(mode="json"),
                 "fallback_output": f}
                for i, (inp, o, f) in enumerate(zip(inputs, outputs, fallback_outputs))
            ],
            "metrics": metrics,
            "input_schema": pipeline.Input.model_json_schema(),
            "output_schema": pipeline.Output.model_json_schema(),
            "output_fields": list(pipeline.Output.model_fields),
            "requirements": requirements,
            "unresolved_modules": unresolved,
            "installed": installed,
            "python_version": platform.python_version(),
        }

    try:
        result = capture()
    except Fail as failure:
        result = {"error": {"message": failure.message, "hint": failure.hint}}
    (out / "capture.json").write_text(json.dumps(result, sort_keys=True), encoding="utf-8")


_nb2prod_capture(__SPEC__)
del _nb2prod_capture
"""
