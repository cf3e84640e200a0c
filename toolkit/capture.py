"""What nb2prod collects inside the notebook's kernel after the notebook has run.

:func:`capture_cell_source` is the code of one cell appended to the notebook before execution. It
imports the *rendered* ``service/pipeline.py`` and ``service/runtime.py`` (the very files that go
into the service), runs every example through them with the notebook's own model object, and
writes ``capture.json`` and the serialized model into a directory. :func:`read_capture` turns that
back into a typed :class:`Capture`, or raises :class:`CaptureError` saying what was wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import CaptureError

CAPTURE_TAG = "nb2prod-capture"


@dataclass(frozen=True)
class CapturePlan:
    """What the capture cell is told: where things are and which names to look for."""

    out_dir: Path
    pipeline_file: Path
    model_variable: str
    model_cell: str  # label of the model cell, for messages
    has_fallback: bool
    modules: tuple[str, ...]  # top-level modules whose distributions must be pinned
    # no contract cell: training_data, margin, max_categories
    infer: Mapping[str, Any] | None = None
    evaluation: Mapping[str, Any] | None = None  # eval_x, eval_y, slices
    monitoring: Mapping[str, Any] | None = None  # reference, explicit, bins


@dataclass(frozen=True)
class Example:
    index: int
    input: Mapping[str, Any]
    output: Mapping[str, Any]
    fallback_output: Mapping[str, Any] | None


@dataclass(frozen=True)
class SerializedModel:
    """How the model was written: the safest format that round-tripped (skops, cloudpickle, joblib)."""

    file: Path
    format: str
    trusted: tuple[str, ...]  # skops: the non-default types loading may construct
    why: str  # why this format, for model.json and the runbook


@dataclass(frozen=True)
class Capture:
    """Everything the release needs from the kernel."""

    model: SerializedModel
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
    inferred_contract: str | None = None  # pydantic source of Input and Output, when inferred
    inferred_from: Mapping[str, Any] | None = None
    holdout: Mapping[str, Any] | None = None  # model and baseline on the held-out data, slices
    latency: Mapping[str, Any] | None = None  # raw timings of the serving path, in ms
    # per Input field: reference bins or categories for drift, or {"unavailable": why}
    reference: Mapping[str, Any] | None = None
    batch_consistent: bool = False  # a batch answers as each item alone: batching is safe


def capture_cell_source(plan: CapturePlan) -> str:
    spec = {
        "out_dir": str(plan.out_dir),
        "pipeline": str(plan.pipeline_file),
        "model_variable": plan.model_variable,
        "model_cell": plan.model_cell,
        "has_fallback": plan.has_fallback,
        "modules": list(plan.modules),
        "infer": dict(plan.infer) if plan.infer is not None else None,
        "evaluation": dict(plan.evaluation) if plan.evaluation is not None else None,
        "monitoring": dict(plan.monitoring) if plan.monitoring is not None else None,
    }
    return _CAPTURE_CODE.replace("__SPEC__", repr(json.dumps(spec)))


def read_capture(out_dir: Path) -> Capture:
    path = out_dir / "capture.json"
    if not path.is_file():
        raise CaptureError("the notebook ran, but nb2prod's capture step wrote nothing")
    data = json.loads(path.read_text(encoding="utf-8"))
    if "error" in data:
        raise CaptureError(data["error"]["message"], hint=data["error"].get("hint"))
    serialized = data["serialized"]
    return Capture(
        model=SerializedModel(
            file=out_dir / serialized["file"],
            format=serialized["format"],
            trusted=tuple(serialized["trusted"]),
            why=serialized["why"],
        ),
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
        inferred_contract=data.get("inferred_contract"),
        inferred_from=data.get("inferred_from"),
        holdout=data.get("holdout"),
        latency=data.get("latency"),
        reference=data.get("reference"),
        batch_consistent=bool(data.get("batch_consistent", False)),
    )


# Runs in the user's kernel: standard library and pydantic only; every name is local to the
# function so nothing leaks into the notebook's namespace.
_CAPTURE_CODE = r'''
def _nb2prod_capture(spec):
    import bisect, importlib.util, io, json, keyword, math, numbers, pickle, platform, sys, traceback, types
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

    HEADER = (
        '"""Contract inferred by nb2prod from {source}.\n\n'
        "Review it, then adopt it as the notebook's `#| nb2prod: contract` cell.\n"
        '"""\n\nfrom typing import Literal, Optional\n\n'
        "from pydantic import BaseModel, ConfigDict, Field\n"
    )

    def plain(value):
        return value.item() if hasattr(value, "item") else value

    def annotation(field, observed):
        kinds = {type(v) for v in observed}
        if not observed:
            raise Fail(f"field {field!r} never has a value; its type cannot be inferred")
        for name, allowed in (("bool", {bool}), ("int", {int}), ("float", {int, float}), ("str", {str})):
            if kinds <= allowed:
                return name
        raise Fail(f"field {field!r} mixes {', '.join(sorted(k.__name__ for k in kinds))}; "
                   "write a contract cell")

    def infer_input(examples, cfg):
        frame, source = None, f"{len(examples)} examples"
        if cfg["training_data"]:
            name = cfg["training_data"]
            if name not in user:
                raise Fail(f"[contract] training_data = {name!r}, but the notebook left no such variable")
            frame = user[name]
            if not hasattr(frame, "columns") or not hasattr(frame, "isna"):
                raise Fail(f"[contract] training_data = {name!r} is a {type(frame).__name__}, "
                           "not a pandas DataFrame")
            source += f" and {len(frame)} rows of `{name}`"
        margin, lines = cfg["margin"], []
        for field in dict.fromkeys(k for e in examples for k in e):
            if not field.isidentifier() or keyword.iskeyword(field):
                raise Fail(f"the examples use the key {field!r}, which cannot be a field name")
            values = [e.get(field) for e in examples]
            observed = [plain(v) for v in values if v is not None]
            missing = len(observed) < len(values)
            column = frame[field] if frame is not None and field in frame.columns else None
            if column is not None:
                missing = missing or bool(column.isna().any())
                observed += [plain(v) for v in column.dropna().tolist()]
            kind = annotation(field, observed)
            kwargs = []
            if kind in ("int", "float"):
                lo, hi = min(observed), max(observed)
                span = (hi - lo) or abs(hi) or 1.0
                low, high = lo - margin * span, hi + margin * span
                if lo >= 0:  # a quantity never seen negative is not invited to become one
                    low = max(low, 0)
                if kind == "int":
                    low, high = math.floor(low), math.ceil(high)
                else:  # six decimals, rounded outwards so no observed value falls outside
                    low, high = math.floor(low * 1e6) / 1e6, math.ceil(high * 1e6) / 1e6
                kwargs += [f"ge={low!r}", f"le={high!r}"]
                note = f"observed {lo:g} to {hi:g}, widened by {margin:g} of the range"
            elif kind == "str" and column is not None and len(set(observed)) <= cfg["max_categories"]:
                kind = "Literal[" + ", ".join(repr(v) for v in sorted(set(observed))) + "]"
                note = "the values seen in the training data"
            else:
                note = f"{len(observed)} values seen"
            if missing:
                kind, kwargs = f"Optional[{kind}]", ["default=None", *kwargs]
            kwargs.append(f"description={'inferred: ' + note!r}")
            lines.append(f"    {field}: {kind} = Field({', '.join(kwargs)})")
        source_text = (HEADER.format(source=source) + "\n\nclass Input(BaseModel):\n"
                       '    model_config = ConfigDict(extra="forbid")\n\n' + "\n".join(lines) + "\n")
        return source_text, {"examples": len(examples), "training_data": cfg["training_data"],
                             "rows": len(frame) if frame is not None else 0, "margin": margin}

    def infer_output(raw):
        values = [plain(v) for v in raw]
        values = [v.tolist() if hasattr(v, "tolist") else v for v in values]
        if values and all(isinstance(v, list) for v in values):
            inner = annotation("prediction", [x for v in values for x in v])
            kind = f"list[{inner}]"
        else:
            kind = annotation("prediction", values)
        return ("\n\nclass Output(BaseModel):\n"
                f"    prediction: {kind} = Field(description=\"inferred: the model's prediction\")\n")

    def macro_f1(y_true, y_pred, labels):
        scores = []
        for label in labels:
            tp = sum(1 for t, p in zip(y_true, y_pred) if t == label and p == label)
            fp = sum(1 for t, p in zip(y_true, y_pred) if t != label and p == label)
            fn = sum(1 for t, p in zip(y_true, y_pred) if t == label and p != label)
            scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
        return sum(scores) / len(scores) if scores else 0.0

    def scores(task, y_true, y_pred, labels=None):
        n = len(y_true)
        if task == "classification":
            return {"accuracy": sum(t == p for t, p in zip(y_true, y_pred)) / n,
                    "f1_macro": macro_f1(y_true, y_pred, labels)}
        mean = sum(y_true) / n
        ss_res = sum((t - p) ** 2 for t, p in zip(y_true, y_pred))
        ss_tot = sum((t - mean) ** 2 for t in y_true)
        return {"mae": sum(abs(t - p) for t, p in zip(y_true, y_pred)) / n,
                "rmse": math.sqrt(ss_res / n),
                "r2": 1 - ss_res / ss_tot if ss_tot else 0.0}

    def evaluate_holdout(model, cfg):
        if cfg is None or cfg["eval_x"] not in user or cfg["eval_y"] not in user:
            return None
        X, y = user[cfg["eval_x"]], user[cfg["eval_y"]]
        as_list = lambda values: [plain(v) for v in (values.tolist() if hasattr(values, "tolist") else list(values))]
        y_true = as_list(y)
        try:
            y_pred = as_list(model.predict(X))
        except Exception as exc:
            raise Fail(f"model.predict({cfg['eval_x']}) failed: {type(exc).__name__}: {exc}",
                       f"`{cfg['eval_x']}` must be what model.predict takes ([evaluation] eval_x)")
        if len(y_pred) != len(y_true) or not y_true:
            raise Fail(f"{cfg['eval_x']} and {cfg['eval_y']} do not have the same number of rows")
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in y_true)
        classification = hasattr(model, "classes_") or not numeric
        task = "classification" if classification else "regression"
        result = {"task": task, "rows": len(y_true), "eval_x": cfg["eval_x"], "eval_y": cfg["eval_y"]}
        if classification:
            labels = sorted(set(y_true) | set(y_pred), key=str)
            majority = max(sorted(set(y_true), key=str), key=y_true.count)
            index = {label: i for i, label in enumerate(labels)}
            matrix = [[0] * len(labels) for _ in labels]
            for t, p in zip(y_true, y_pred):
                matrix[index[t]][index[p]] += 1
            result.update(labels=[str(l) for l in labels], confusion=matrix,
                          baseline_name=f"majority class ({majority})",
                          model=scores(task, y_true, y_pred, labels),
                          baseline=scores(task, y_true, [majority] * len(y_true), sorted(set(y_true), key=str)))
        else:
            mean = sum(y_true) / len(y_true)
            step = max(1, len(y_true) // 2000)
            result.update(baseline_name=f"mean ({mean:.4g})",
                          model=scores(task, y_true, y_pred), baseline=scores(task, y_true, [mean] * len(y_true)),
                          residuals=[[p, t - p] for t, p in list(zip(y_true, y_pred))[::step]])
        result["slices"] = {}
        for column in cfg["slices"]:
            if not hasattr(X, "columns") or column not in X.columns:
                raise Fail(f"[evaluation] slices names {column!r}, which is not a column of "
                           f"{cfg['eval_x']} (slices need a DataFrame)")
            values = as_list(X[column])
            groups = {}
            for value in sorted(set(values), key=str):
                rows = [i for i, v in enumerate(values) if v == value]
                t = [y_true[i] for i in rows]
                p = [y_pred[i] for i in rows]
                metric = scores(task, t, p, sorted(set(t) | set(p), key=str))
                groups[str(value)] = {"rows": len(rows), **metric}
            result["slices"][column] = groups
        return result

    def reference_columns(pipeline, data, name, inputs):
        """{field: [values]} from a DataFrame, a list of dicts, or a 2-D array of Input's fields."""
        fields = list(pipeline.Input.model_fields)
        if hasattr(data, "columns") and hasattr(data, "__getitem__"):
            present = [f for f in fields if f in data.columns]
            if not present:
                raise Fail(f"[monitoring] reference = {name!r}: none of its columns is an Input field "
                           f"({', '.join(fields)})")
            return {f: [plain(v) for v in data[f].tolist()] for f in present}
        if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
            return {f: [plain(r[f]) for r in data if f in r] for f in fields if any(f in r for r in data)}
        shape = getattr(data, "shape", None)
        if shape is None or len(shape) != 2:
            raise Fail(f"[monitoring] reference = {name!r} is a {type(data).__name__}; use a DataFrame "
                       "with Input's field names as columns, a list of dicts, or a 2-D array")
        if shape[1] != len(fields):
            raise Fail(f"[monitoring] reference = {name!r} has {shape[1]} columns but Input has "
                       f"{len(fields)} fields; use a DataFrame with Input's field names as columns")
        # an array has no column names: accept it only if preprocess shows that its columns are
        # Input's fields in declaration order (features == field values for every example)
        try:
            features = [[plain(v) for v in row] for row in pipeline.preprocess(inputs)]
        except Exception:
            features = None
        expected = [[getattr(i, f) for f in fields] for i in inputs]
        if features != expected:
            raise Fail(f"[monitoring] reference = {name!r} is an array, and preprocess does not show its "
                       "columns to be Input's fields in order; use a DataFrame with Input's field names")
        return {f: [plain(v) for v in data[:, k].tolist()] for k, f in enumerate(fields)}

    def reference_stats(pipeline, inputs, cfg):
        """Per Input field: quantile bins (numbers) or category frequencies, for drift scores."""
        name = cfg["reference"]
        if name not in user:
            if cfg["explicit"]:
                raise Fail(f"[monitoring] reference = {name!r}, but the notebook left no such variable")
            return {"unavailable": f"no reference data: the notebook left no variable {name!r} "
                                   "(set [monitoring] reference)"}
        try:
            columns = reference_columns(pipeline, user[name], name, inputs)
        except Fail as failure:
            if cfg["explicit"]:
                raise
            return {"unavailable": failure.message}
        fields, skipped = {}, {}
        for field, values in columns.items():
            values = [v for v in values if v is not None]
            if not values:
                skipped[field] = "no values in the reference"
                continue
            if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
                values = sorted(float(v) for v in values if math.isfinite(float(v)))
                n = len(values)
                edges = sorted({values[min(n - 1, (n * k) // cfg["bins"])] for k in range(1, cfg["bins"])})
                counts = [0] * (len(edges) + 1)
                for v in values:
                    counts[bisect.bisect_left(edges, v)] += 1
                fields[field] = {"kind": "numeric", "edges": edges,
                                 "expected": [c / n for c in counts]}
            else:
                keys = [json.dumps(v) if not isinstance(v, str) else v for v in values]
                distinct = sorted(set(keys))
                if len(distinct) > 50:
                    skipped[field] = f"{len(distinct)} distinct values: free text is not binned"
                    continue
                fields[field] = {"kind": "categorical", "categories": distinct,
                                 "expected": [keys.count(c) / len(keys) for c in distinct]}
        return {"source": name, "rows": max(len(v) for v in columns.values()),
                "fields": fields, "skipped": skipped}

    def batch_consistent(pipeline, runtime, model, inputs, outputs):
        """True when the pipeline answers a batch as it answers each item alone (batching is safe)."""
        try:
            alone = [runtime.run(pipeline, model, [inp])[0] for inp in inputs]
        except Exception:
            return False
        return [o.model_dump() for o in alone] == [o.model_dump() for o in outputs]

    def measure_latency(pipeline, runtime, model, inputs):
        import time
        timings = {}
        for size, rounds in ((1, 50), (32, 20)):
            batch = [inputs[i % len(inputs)] for i in range(size)]
            features = pipeline.preprocess(batch)
            runtime.run(pipeline, model, batch)  # warm-up
            whole, model_only = [], []
            for _ in range(rounds):
                start = time.perf_counter()
                runtime.run(pipeline, model, batch)
                whole.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                pipeline.predict(model, features)
                model_only.append((time.perf_counter() - start) * 1000)
            timings[str(size)] = {"pipeline_ms": whole, "model_ms": model_only}
        return timings

    def load_pipeline(prelude):
        # the inferred contract runs first, exactly where the final pipeline.py puts it
        module = types.ModuleType("_nb2prod_pipeline")
        module.__file__ = spec["pipeline"]
        sys.modules[module.__name__] = module
        if prelude:
            exec(compile(prelude, spec["pipeline"], "exec"), module.__dict__)
        with open(spec["pipeline"], encoding="utf-8") as handle:
            exec(compile(handle.read(), spec["pipeline"], "exec"), module.__dict__)
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

    def serialize(model, pipeline, runtime, inputs, outputs):
        # The safest format that round-trips: reload it here and run the examples again.
        expected = [o.model_dump(mode="json") for o in outputs]
        attempts = []
        try:
            import skops.io as sio
            sio.dump(model, out / "model.skops")
            untrusted = sio.get_untrusted_types(file=out / "model.skops")
            if any(t.startswith("__main__.") for t in untrusted):
                attempts.append("skops: the model refers to code defined in the notebook")
            else:
                attempts.append(("skops", "model.skops", untrusted,
                                 "loading constructs only scikit-learn and numpy types"
                                 + (" and the trusted types listed" if untrusted else "")))
        except Exception as exc:
            attempts.append(f"skops: {type(exc).__name__}: {exc}")
        references_notebook = "__main__" in referenced_modules(model)
        if references_notebook:
            import cloudpickle
            with open(out / "model.pkl", "wb") as handle:
                cloudpickle.dump(model, handle)
            attempts.append(("cloudpickle", "model.pkl", [],
                             "the model refers to code defined in the notebook, "
                             "which only cloudpickle serializes by value; loading runs code"))
        else:
            import joblib
            joblib.dump(model, out / "model.joblib")
            attempts.append(("joblib", "model.joblib", [],
                             "a pickle; loading runs code, so only the packaged file "
                             "(sha256 checked) is ever loaded"))
        notes = [a for a in attempts if isinstance(a, str)]
        for attempt in attempts:
            if isinstance(attempt, str):
                continue
            fmt, file, trusted, why = attempt
            try:
                loaded = runtime.load_model(out / file, runtime.sha256_file(out / file), fmt, trusted)
                again = [o.model_dump(mode="json") for o in runtime.run(pipeline, loaded, inputs)]
            except Exception as exc:
                notes.append(f"{fmt}: reloading failed ({type(exc).__name__}: {exc})")
                continue
            if again != expected:
                notes.append(f"{fmt}: the reloaded model answers the examples differently")
                continue
            for other in ("model.skops", "model.pkl", "model.joblib"):
                if other != file and (out / other).exists():
                    (out / other).unlink()
            if notes:
                why += " (" + "; ".join(notes) + ")"
            return {"file": file, "format": fmt, "trusted": list(trusted), "why": why,
                    "module": {"skops": "skops", "cloudpickle": "cloudpickle"}.get(fmt, "joblib")}
        raise Fail("the model could not be serialized so that it answers the same after "
                   "loading: " + "; ".join(notes))

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
        from nb2prod.runtime import model as runtime  # the exact code each release carries
        inferred, inferred_from = None, None
        if spec["infer"] is not None:
            inferred, inferred_from = infer_input(examples, spec["infer"])
        try:
            pipeline = load_pipeline(inferred)
        except Fail:
            raise
        except Exception:
            raise Fail(f"the extracted service code does not run on its own: {last_error()}",
                       "Code that goes into the service may use only names from setup, contract, "
                       "preprocess, predict, postprocess and fallback cells, imports and builtins.")
        if inferred is not None:
            try:
                probe = [pipeline.Input.model_validate(e) for e in examples]
                raw = pipeline.predict(model, pipeline.preprocess(probe))
            except Exception:
                raise Fail(f"the service pipeline failed on the examples: {last_error()}")
            output_source = infer_output(raw)
            exec(compile(output_source, spec["pipeline"], "exec"), pipeline.__dict__)
            inferred += output_source
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
        serialized = serialize(model, pipeline, runtime, inputs, outputs)
        holdout = evaluate_holdout(model, spec["evaluation"])
        latency = measure_latency(pipeline, runtime, model, inputs)
        reference = reference_stats(pipeline, inputs, spec["monitoring"]) if spec["monitoring"] else None
        consistent = batch_consistent(pipeline, runtime, model, inputs, outputs)
        installed = {}
        for dist in metadata.distributions():
            installed.setdefault(dist.metadata["Name"], dist.version)
        providers = metadata.packages_distributions()
        modules = set(spec["modules"]) | referenced_modules(model)
        modules |= {"bentoml", "pydantic", "joblib", serialized["module"]}
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
            "serialized": {k: v for k, v in serialized.items() if k != "module"},
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
            "inferred_contract": inferred,
            "inferred_from": inferred_from,
            "holdout": holdout,
            "latency": latency,
            "reference": reference,
            "batch_consistent": consistent,
        }

    try:
        result = capture()
    except Fail as failure:
        result = {"error": {"message": failure.message, "hint": failure.hint}}
    (out / "capture.json").write_text(json.dumps(result, sort_keys=True), encoding="utf-8")


_nb2prod_capture(__SPEC__)
del _nb2prod_capture
'''
CAPTURE_CODE_SHA256 = hashlib.sha256(_CAPTURE_CODE.encode()).hexdigest()
