"""The kernel probe without a kernel: its pure parts, and whole runs on an in-memory namespace."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from nb2prod.probe import FAILURE_FILE, RESULT_FILE, run
from nb2prod.probe.artifacts import DataShape, code_kind, collect, data_shape, human_size
from nb2prod.probe.environment import installed_distributions, requirements
from nb2prod.probe.failure import Fail, PipelineSource
from nb2prod.probe.fill import fill_problem
from nb2prod.probe.infer import Column, TrainingData, infer_input, infer_output
from nb2prod.probe.metrics import holdout, scores
from nb2prod.probe.reference import field_reference, reference_columns
from nb2prod.probe.serialize import referenced_modules, store
from nb2prod.runtime.model import load_artifacts
from nb2prod.runtime.schema import (
    ArtifactPlan,
    ArtifactRef,
    InferPlan,
    ProbeFailure,
    ProbePlan,
    ProbeResult,
    load,
)
from pydantic import BaseModel
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LinearRegression
from sklearn.metrics import f1_score, mean_absolute_error, mean_squared_error, r2_score

PIPELINE = '''"""A generated pipeline.py, as render writes it."""


# ---- cell 1 (setup) ----
import numpy as np
from pydantic import BaseModel


# ---- cell 2 (contract) ----
class Input(BaseModel):
    x: float


class Output(BaseModel):
    y: float


# ---- cell 4 (preprocess) ----
def preprocess(inputs):
    return np.array([[i.x] for i in inputs])


# ---- nb2prod default: the notebook has no `predict` cell ----
def predict(model, features):
    return model.predict(features)


# ---- nb2prod default: no `postprocess` cell, so each item of `raw` fills Output.y ----
def postprocess(raw, inputs):
    items = raw.to_numpy() if hasattr(raw, "to_numpy") else raw
    return [Output(y=v.tolist() if hasattr(v, "tolist") else v) for v in items]
'''


# ---------------------------------------------------------------- pure parts


def test_a_pipeline_line_is_named_by_its_notebook_cell() -> None:
    source = PipelineSource("p.py", PIPELINE, {4: "cell 4 (preprocess) `def preprocess(inputs):`"})
    line = PIPELINE.splitlines().index("    return np.array([[i.x] for i in inputs])") + 1
    assert source.where(line) == "cell 4 (preprocess) `def preprocess(inputs):`, line 2"
    assert source.where(1) == "pipeline.py line 1"
    predict_line = PIPELINE.splitlines().index("    return model.predict(features)") + 1
    assert source.where(predict_line).startswith("nb2prod's default (the notebook has no")


def test_inferred_input_widens_observed_ranges_and_lists_categories() -> None:
    training = TrainingData(
        "train_df",
        4,
        {
            "length": Column([30.0, 60.0, 45.5], missing=False),
            "island": Column(["Dream", "Biscoe", "Dream"], missing=True),
        },
    )
    examples = [{"length": 40.0, "island": "Dream", "age": 3}, {"length": 55.5, "age": 7}]
    text, source = infer_input(
        examples, training, InferPlan(training_data="train_df", margin=0.1, max_categories=10)
    )
    assert "length: float = Field(ge=27.0, le=63.0" in text
    assert "island: Optional[Literal['Biscoe', 'Dream']] = Field(default=None" in text
    assert "age: int = Field(ge=2, le=8" in text  # 3..7 widened by 0.4 and rounded outwards
    assert source.rows == 4 and source.training_data == "train_df" and source.examples == 2
    namespace: dict[str, Any] = {}
    exec(text + infer_output(np.array([[1.0, 2.0], [3.0, 4.0]])), namespace)
    assert namespace["Output"](prediction=[1.5]).prediction == [1.5]


def test_inference_refuses_mixed_types_and_bad_names() -> None:
    plan = InferPlan(training_data=None, margin=0.1, max_categories=10)
    with pytest.raises(Fail, match="mixes int, str"):
        infer_input([{"a": 1}, {"a": "x"}], None, plan)
    with pytest.raises(Fail, match="cannot be a field name"):
        infer_input([{"class": 1}], None, plan)


def test_holdout_scores_equal_scikit_learns() -> None:
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 200).tolist()
    y_pred = [t if rng.random() < 0.7 else int(rng.integers(0, 3)) for t in y_true]
    figures = holdout("classification", y_true, y_pred, eval_x="X", eval_y="y")
    assert figures.model["f1_macro"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    dummy = DummyClassifier(strategy="most_frequent").fit([[0]] * 200, y_true)
    assert figures.baseline["accuracy"] == pytest.approx(dummy.score([[0]] * 200, y_true))
    assert sum(map(sum, figures.confusion or ())) == 200

    t = rng.normal(size=300).tolist()
    p = (np.array(t) + rng.normal(0, 0.3, 300)).tolist()
    figures = holdout(
        "regression", t, p, eval_x="X", eval_y="y", slices={"g": [i % 2 for i in range(300)]}
    )
    assert figures.model["mae"] == pytest.approx(mean_absolute_error(t, p))
    assert figures.model["rmse"] == pytest.approx(mean_squared_error(t, p) ** 0.5)
    assert figures.model["r2"] == pytest.approx(r2_score(t, p))
    mean = DummyRegressor().fit([[0]] * 300, t).predict([[0]] * 300)
    assert figures.baseline["r2"] == pytest.approx(r2_score(t, mean), abs=1e-12)
    assert figures.slices["g"]["0"]["rows"] == 150 and isinstance(
        figures.slices["g"]["0"]["rows"], int
    )
    assert scores("regression", [1.0, 1.0], [1.0, 1.0])["r2"] == 0.0  # no variance: not NaN


def test_reference_bins_numbers_by_quantile_and_counts_categories() -> None:
    numeric = field_reference(list(range(100)), bins=4)
    assert not isinstance(numeric, str)
    assert numeric.edges == (25.0, 50.0, 75.0) and numeric.expected == (0.26, 0.25, 0.25, 0.24)
    categories = field_reference(["a", "b", "a", None, 3], bins=4)
    assert not isinstance(categories, str)
    assert categories.categories == ("3", "a", "b") and categories.expected == (0.25, 0.5, 0.25)
    assert field_reference([f"text {i}" for i in range(60)], bins=4) == (
        "60 distinct values: free text is not binned"
    )
    assert field_reference([None], bins=4) == "no values in the reference"


def test_reference_columns_from_frames_dicts_and_checked_arrays() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "other": [0, 0]})
    assert reference_columns(frame, "df", ["x", "z"], lambda: False) == {"x": [1.0, 2.0]}
    rows = [{"x": 1}, {"x": 2, "z": "a"}]
    assert reference_columns(rows, "rows", ["x", "z"], lambda: False) == {"x": [1, 2], "z": ["a"]}
    array = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert reference_columns(array, "a", ["x", "z"], lambda: True) == {
        "x": [1.0, 3.0],
        "z": [2.0, 4.0],
    }
    with pytest.raises(Fail, match="preprocess does not show"):
        reference_columns(array, "a", ["x", "z"], lambda: False)
    with pytest.raises(Fail, match="has 2 columns but Input has 1"):
        reference_columns(array, "a", ["x"], lambda: True)


class NotebookThing:
    """Defined here, so pickling it refers to this test module (like __main__ in a notebook)."""


def test_store_prefers_skops_and_falls_back_when_the_check_fails(tmp_path: Path) -> None:
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])
    stored = store(model, tmp_path, "model", lambda loaded: None)
    assert stored.format == "skops" and sorted(p.name for p in tmp_path.iterdir()) == [
        "model.skops"
    ]
    verdicts = iter(["answers differently", None])  # the skops copy fails, the next one passes
    stored = store(model, tmp_path / "b", "model", lambda loaded: next(verdicts))
    assert stored.format == "joblib" and "(skops: answers differently)" in stored.why
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["model.joblib"]
    with pytest.raises(Fail, match="could not be stored"):
        store(model, tmp_path / "c", "model", lambda loaded: "answers differently")
    assert not list((tmp_path / "c").iterdir())  # nothing half-written is left


def test_referenced_modules_name_every_class_a_pickle_would_need() -> None:
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])
    assert {"sklearn", "numpy"} <= referenced_modules(model)
    assert "tests" in referenced_modules({"thing": NotebookThing()})


def test_requirements_name_distributions_and_what_none_provides() -> None:
    found, unresolved = requirements({"numpy", "json", "no_such_module_here", "__main__"})
    assert found == {"numpy": np.__version__} and unresolved == ("no_such_module_here",)
    assert installed_distributions()["numpy"] == np.__version__


# ---------------------------------------------------------------- whole runs, no kernel


def plan(tmp_path: Path, **changes: Any) -> ProbePlan:
    pipeline = tmp_path / "service" / "pipeline.py"
    pipeline.parent.mkdir(parents=True, exist_ok=True)
    pipeline.write_text(changes.pop("pipeline", PIPELINE))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    fields: dict[str, Any] = {
        "out_dir": str(out),
        "pipeline_file": str(pipeline),
        "model_variable": "model",
        "model_cell": "cell 3 (model)",
        "cell_labels": {4: "cell 4 (preprocess) `def preprocess(inputs):`"},
        "has_fallback": False,
        "modules": ("numpy", "pydantic", "sklearn"),
        "predict_cell": "nb2prod's default predict (`model.predict(features)`)",
        "default_output_field": "y",
    }
    return ProbePlan(**{**fields, **changes})


def namespace(**extra: Any) -> dict[str, Any]:
    return {
        "model": LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0]),
        "examples": [{"x": 1.0}, {"x": 3.0}],
        "metrics": {"r2": np.float64(0.9)},
        **extra,
    }


def probe(tmp_path: Path, names: dict[str, Any], **changes: Any) -> ProbeResult | ProbeFailure:
    the_plan = plan(tmp_path, **changes)
    run(names, the_plan.model_dump_json())
    out = Path(the_plan.out_dir)
    if (out / FAILURE_FILE).is_file():
        return load(ProbeFailure, out / FAILURE_FILE)
    return load(ProbeResult, out / RESULT_FILE)


def test_a_whole_probe_runs_the_examples_through_the_rendered_pipeline(tmp_path: Path) -> None:
    result = probe(tmp_path, namespace())
    assert isinstance(result, ProbeResult), result
    assert [e.output["y"] for e in result.examples] == pytest.approx([2.0, 6.0])
    assert result.model.format == "skops" and (tmp_path / "out" / "model.skops").is_file()
    assert result.metrics == {"r2": 0.9} and result.batch_consistent
    assert {"scikit-learn", "numpy", "pydantic", "bentoml", "skops"} <= set(result.requirements)
    assert set(result.latency) == {"1", "32"} and result.input_schema["required"] == ["x"]


def test_a_failing_service_cell_is_named_by_its_notebook_cell(tmp_path: Path) -> None:
    broken = PIPELINE.replace(
        "return np.array([[i.x] for i in inputs])", "return np.array([[i.z] for i in inputs])"
    )
    result = probe(tmp_path, namespace(), pipeline=broken)
    assert isinstance(result, ProbeFailure)
    assert result.message.startswith("the service pipeline failed on the examples: AttributeError")
    assert (
        "(in cell 4 (preprocess) `def preprocess(inputs):`, line 2: `return np.array("
        in result.message
    )


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ({"model": None, "examples": [{"x": 1.0}]} | {"model": 1}, "is not a valid"),
        ({"examples": [{"x": "wide"}]}, "examples[0] is not a valid Input"),
        ({"examples": []}, "a non-empty list of dicts; found list"),
        ({"metrics": {"r2": float("nan")}}, "metric 'r2' is not a finite number"),
        ({"metrics": {"r2": "high"}}, "`metrics` must be a dict of metric name to number"),
    ],
)
def test_what_the_notebook_left_is_checked(
    tmp_path: Path, names: dict[str, Any], message: str
) -> None:
    names = namespace(**names)
    if names["model"] == 1:
        del names["model"]
        message = "cell 3 (model) ran but left no variable 'model'"
    result = probe(tmp_path, names)
    assert isinstance(result, ProbeFailure) and message in result.message


def test_an_unexpected_error_is_reported_as_nb2prods_bug_with_a_traceback(tmp_path: Path) -> None:
    class Exploding(dict):  # type: ignore[type-arg]
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("boom")

    result = probe(tmp_path, Exploding(namespace()))
    assert isinstance(result, ProbeFailure)
    assert result.message == "nb2prod's probe failed unexpectedly: RuntimeError: boom"
    assert "probe-traceback.txt" in (result.hint or "")
    assert "RuntimeError: boom" in (tmp_path / "out" / "probe-traceback.txt").read_text()


def test_the_plan_and_result_are_json_the_other_side_reads_strictly(tmp_path: Path) -> None:
    result = probe(tmp_path, namespace())
    data = json.loads((tmp_path / "out" / RESULT_FILE).read_text())
    data["model"]["unexpected"] = 1
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"bad.json: field `model.unexpected`"):
        load(ProbeResult, tmp_path / "bad.json")
    assert isinstance(result, ProbeResult)


# ---------------------------------------------------------------- fitted state


def test_code_and_data_sets_are_told_apart_from_fitted_values() -> None:
    assert code_kind(np) == "module" and code_kind(LinearRegression) == "class"
    assert code_kind(len) == "function" and code_kind(lambda: 1) == "function"
    assert code_kind(LinearRegression()) is None and code_kind({"a": 1}) is None
    frame = pd.DataFrame({"a": range(5000), "b": ["x"] * 5000})
    shape = data_shape(frame)
    assert shape is not None and (shape.kind, shape.rows, shape.columns) == ("DataFrame", 5000, 2)
    assert str(shape).startswith("a DataFrame of 5,000 rows x 2 columns (") and "KB)" in str(shape)
    assert str(data_shape(np.zeros((2000, 3)))) == "an array of 2,000 rows x 3 columns (48 KB)"
    assert data_shape([[1, 2]] * 3) == DataShape("list", 3, None, None)
    assert data_shape({"north": 1.0}) is None and data_shape(LinearRegression()) is None
    assert [human_size(n) for n in (812, 4100, 23_000_000, 2_500_000_000)] == [
        "812 B", "4.1 KB", "23 MB", "2.5 GB"
    ]  # fmt: skip


def ref(name: str) -> ArtifactRef:
    return ArtifactRef(
        name=name, cell=2, label="cell 2 (train) `x = 1`", role="train",
        read_by=("preprocess (cell 4)",),
    )  # fmt: skip


def test_collect_refuses_code_missing_names_and_training_data() -> None:
    plan = ArtifactPlan(refs=(ref("scale"),), max_rows=1000)
    assert collect({"scale": 2.0}, plan) == {"scale": 2.0}
    with pytest.raises(Fail, match="cell 2 .* ran but left no `scale`, which preprocess"):
        collect({}, plan)
    with pytest.raises(Fail, match=r"`scale` .* is a function: code does not travel") as code:
        collect({"scale": lambda v: v}, plan)
    assert "setup" in (code.value.hint or "")
    frame = pd.DataFrame({"x": np.arange(1500.0)})
    with pytest.raises(Fail) as data:
        collect({"scale": frame}, plan)
    assert "is a DataFrame of 1,500 rows x 1 columns (12 KB), which looks like training data" in (
        data.value.message
    )
    assert '[artifacts] allow = ["scale"]' in (data.value.hint or "")
    allowed = ArtifactPlan(refs=(ref("scale"),), max_rows=1000, allow=("scale",))
    assert collect({"scale": frame}, allowed)["scale"] is frame
    assert collect({"scale": frame}, ArtifactPlan(refs=(ref("scale"),), max_rows=2000))


FITTED = PIPELINE.replace(
    "    return np.array([[i.x] for i in inputs])",
    "    return np.array([[i.x * scale] for i in inputs])",
)


def test_fitted_state_is_stored_hashed_and_loaded_back_as_the_service_does(tmp_path: Path) -> None:
    result = probe(
        tmp_path,
        namespace(scale=np.float64(2.0)),
        pipeline=FITTED,
        artifacts=ArtifactPlan(refs=(ref("scale"),)),
    )
    assert isinstance(result, ProbeResult), result
    assert [e.output["y"] for e in result.examples] == pytest.approx([4.0, 12.0])
    (artifact,) = result.artifacts
    assert artifact.file == "artifacts/scale.skops" and artifact.format == "skops"
    assert artifact.read_by == ("preprocess (cell 4)",) and artifact.size > 0
    path = tmp_path / "out" / artifact.file
    assert hashlib.sha256(path.read_bytes()).hexdigest() == artifact.sha256
    pipeline = ModuleType("p")
    load_artifacts(tmp_path / "out", result.artifacts, pipeline)
    assert pipeline.scale == 2.0
    path.write_bytes(path.read_bytes() + b" ")
    with pytest.raises(RuntimeError, match="sha256"):
        load_artifacts(tmp_path / "out", result.artifacts, ModuleType("q"))


def test_training_data_read_by_the_service_stops_the_probe(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(5000.0)})
    result = probe(
        tmp_path,
        namespace(scale=frame),
        pipeline=FITTED,
        artifacts=ArtifactPlan(refs=(ref("scale"),)),
    )
    assert isinstance(result, ProbeFailure)
    assert "`scale` (from cell 2 (train) `x = 1`, read by preprocess (cell 4)) is a DataFrame" in (
        result.message
    )


# ---------------------------------------------------------------- Output without postprocess


class Scores(BaseModel):
    y: list[float]


class Label(BaseModel):
    y: float


def test_fill_problems_name_the_shape_and_the_field() -> None:
    assert fill_problem(np.array([[1.0, 2.0], [3.0, 4.0]]), 2, Scores, "y") is None
    assert fill_problem(pd.Series([1.0, 2.0]), 2, Label, "y") is None
    assert fill_problem(np.array([[1.0, 2.0]]), 2, Scores, "y") == (
        "it returns an array of shape (1, 2) for 2 inputs: its first axis must have one item "
        "per input"
    )
    assert fill_problem(np.array([[1.0, 2.0], [3.0, 4.0]]), 2, Label, "y") == (
        "each item is an array of shape (2,), which cannot fill Output.y (float): Input should "
        "be a valid number"
    )
    assert fill_problem(3.0, 1, Label, "y") == "it returns a float (3.0), not one item per input"


def test_a_prediction_that_cannot_fill_output_names_the_predict_cell_and_field(
    tmp_path: Path,
) -> None:
    two_columns = LinearRegression().fit([[0.0], [1.0]], [[0.0, 1.0], [2.0, 3.0]])
    result = probe(tmp_path, namespace(model=two_columns))
    assert isinstance(result, ProbeFailure)
    assert result.message == (
        "nb2prod's default predict (`model.predict(features)`) gives predictions that do not fit "
        "Output.y: each item is an array of shape (2,), which cannot fill Output.y (float): "
        "Input should be a valid number"
    )
    assert "list[float]" in (result.hint or "")
    listed = PIPELINE.replace("    y: float", "    y: list[float]")
    result = probe(tmp_path / "list", namespace(model=two_columns), pipeline=listed)
    assert isinstance(result, ProbeResult), result
    assert result.examples[0].output["y"] == pytest.approx([2.0, 3.0])
