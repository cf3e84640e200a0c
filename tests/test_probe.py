"""The kernel probe without a kernel: its pure parts, and whole runs on an in-memory namespace."""

from __future__ import annotations

import hashlib
import json
import math
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

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
from nb2prod.probe.protocol import (
    ArtifactPlan,
    ArtifactRef,
    EvaluationPlan,
    Holdout,
    InferPlan,
    ProbeFailure,
    ProbePlan,
    ProbeResult,
    RobustnessPlan,
)
from nb2prod.probe.reference import field_reference, reference_columns
from nb2prod.probe.robustness import (
    boundary_inputs,
    first_difference,
    random_inputs,
)
from nb2prod.probe.serialize import referenced_modules, store
from nb2prod.runtime.model import load_artifacts
from nb2prod.runtime.schema import load
from pydantic import BaseModel, Field
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
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


def test_reference_counts_dates_as_the_service_does() -> None:
    # a `date` Input field (tests/corpus/holt_winters): the probe crashed with "Object of type
    # date is not JSON serializable"; the service keys the values it sees the same way
    from datetime import date

    from nb2prod.runtime.model import category_key

    months = [date(2000, 1, 1), date(2000, 2, 1), date(2000, 1, 1)]
    reference = field_reference(months, bins=4)
    assert not isinstance(reference, str)
    assert reference.categories == ('"2000-01-01"', '"2000-02-01"')
    assert reference.expected == (2 / 3, 1 / 3)
    assert category_key(date(2000, 2, 1)) in reference.categories


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
    assert result.metrics == {"r2": 0.9}
    assert result.robustness is not None and result.robustness.batch_agrees
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


# ---------------------------------------------------------------- [evaluation] the service's way


def evaluation(**changes: Any) -> EvaluationPlan:
    return EvaluationPlan(**{"eval_x": "eval_X", "eval_y": "eval_y", **changes})


def holdout_of(result: ProbeResult | ProbeFailure) -> Holdout:
    assert isinstance(result, ProbeResult), result
    assert result.holdout is not None
    return result.holdout


def test_input_rows_are_answered_by_the_whole_pipeline(tmp_path: Path) -> None:
    eval_X = pd.DataFrame({"x": [0.0, 1.0, 2.0, 3.0], "group": ["a", "a", "b", "b"]})
    eval_y = pd.Series([0.5, 2.0, 4.5, 6.0])
    figures = holdout_of(
        probe(
            tmp_path,
            namespace(eval_X=eval_X, eval_y=eval_y),
            evaluation=evaluation(slices=("group",)),
        )
    )
    assert figures.path == "preprocess -> predict -> postprocess, Output.y"
    assert figures.task == "regression" and figures.rows == 4
    assert figures.model["mae"] == pytest.approx(0.25)  # y = 2x against 0.5, 2, 4.5, 6
    assert figures.slices["group"]["b"]["rows"] == 2


def test_features_go_through_the_notebooks_predict_and_probabilities_become_classes(
    tmp_path: Path,
) -> None:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array(["low", "low", "high", "high"])
    classifier = LogisticRegression().fit(X, y)
    pipeline = (
        PIPELINE.replace(
            "# ---- nb2prod default: the notebook has no `predict` cell ----\n"
            "def predict(model, features):\n    return model.predict(features)",
            "# ---- cell 5 (predict) ----\ndef predict(model, features):\n"
            "    return model.predict_proba(features)",
        )
        .replace("    y: float", "    y: str")
        .replace(
            'return [Output(y=v.tolist() if hasattr(v, "tolist") else v) for v in items]',
            "return [Output(y=model_labels[int(row.argmax())]) for row in items]",
        )
    )
    pipeline = pipeline.replace(
        "# ---- cell 2 (contract) ----",
        "model_labels = ['high', 'low']\n\n\n# ---- cell 2 (contract) ----",
    )
    figures = holdout_of(
        probe(
            tmp_path,
            namespace(model=classifier, eval_X=X, eval_y=y),
            pipeline=pipeline,
            default_output_field=None,
            predict_cell="cell 5 (predict) `def predict(model, features):`",
            evaluation=evaluation(),
        )
    )
    assert figures.task == "classification"
    assert figures.path == (
        "predict(model, eval_X) (cell 5 (predict) `def predict(model, features):`), most likely class"
    )
    assert figures.model["accuracy"] == classifier.score(X, y)
    assert figures.labels == ("high", "low")


def test_two_dimensional_targets_are_a_multi_output_regression(tmp_path: Path) -> None:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    Y = np.c_[2 * X[:, 0], -X[:, 0] + 1]
    listed = PIPELINE.replace("    y: float", "    y: list[float]")
    figures = holdout_of(
        probe(
            tmp_path,
            namespace(
                model=LinearRegression().fit(X, Y), eval_X=pd.DataFrame({"x": X[:, 0]}), eval_y=Y
            ),
            pipeline=listed,
            evaluation=evaluation(),
        )
    )
    assert figures.outputs == 2 and figures.task == "regression"
    assert figures.model["r2"] == pytest.approx(1.0) and figures.model["mae"] == pytest.approx(0.0)
    assert figures.baseline_name == "mean of each output" and len(figures.residuals or ()) == 8


class ResultsLike:
    """A statsmodels-style results object: predict gives probabilities of class 1, no classes_."""

    def predict(self, exog: Any) -> pd.Series:
        return pd.Series(1 / (1 + np.exp(-(np.asarray(exog)[:, 0] - 1.5))))


class Vectorizer:
    def transform(self, texts: list[str]) -> np.ndarray:
        return np.array([[len(t)] for t in texts], dtype=float)


def test_statsmodels_style_probabilities_and_dict_of_parts(tmp_path: Path) -> None:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    figures = holdout_of(
        probe(
            tmp_path / "sm",
            namespace(model=ResultsLike(), eval_X=X, eval_y=np.array([0, 0, 1, 0])),
            pipeline=PIPELINE.replace("    y: float", "    y: float"),
            evaluation=evaluation(),
        )
    )
    assert figures.task == "classification" and figures.path.endswith("class 1 above 0.5")
    assert figures.model["accuracy"] == 0.75

    parts = {
        "vectorizer": Vectorizer(),
        "clf": LogisticRegression().fit([[1.0], [5.0]], ["ham", "spam"]),
    }
    text_pipeline = (
        PIPELINE.replace(
            "def predict(model, features):\n    return model.predict(features)",
            "def predict(model, features):\n"
            "    return model['clf'].predict(model['vectorizer'].transform(features))",
        )
        .replace("    y: float", "    y: str")
        .replace(
            "    return np.array([[i.x] for i in inputs])",
            "    return ['x' * int(i.x) for i in inputs]",
        )
    )
    figures = holdout_of(
        probe(
            tmp_path / "parts",
            namespace(model=parts, eval_X=["hi", "a very long text"], eval_y=["ham", "spam"]),
            pipeline=text_pipeline,
            evaluation=evaluation(),
        )
    )
    assert figures.task == "classification" and figures.model["accuracy"] == 1.0


@pytest.mark.parametrize(
    ("names", "changes", "message", "hint"),
    [
        (
            {"eval_X": {"not": "rows"}, "eval_y": [1.0]},
            {},
            "[evaluation] eval_x = 'eval_X' is neither rows of Input nor what nb2prod's default "
            "predict (`model.predict(features)`) takes: ",
            "[evaluation] eval_x must name either held-out rows of Input",
        ),
        (
            {"eval_X": pd.DataFrame({"x": [1.0, 2.0]}), "eval_y": ["a", "b"]},
            {"task": "regression"},
            "[evaluation] a regression needs numbers, but eval_y holds 'a'",
            'task = "classification"',
        ),
        (
            {"eval_X": pd.DataFrame({"x": [1.0, "wide"]}), "eval_y": [1.0, 2.0]},
            {},
            "[evaluation] eval_x = 'eval_X': row 1 is not a valid Input",
            "widen the contract",
        ),
        (
            {"eval_X": pd.DataFrame({"x": [1.0]}), "eval_y": [1.0]},
            {"output_field": "z"},
            "[evaluation] output_field = 'z', but Output has no such field",
            "Output's fields: y",
        ),
        (
            {"eval_X": pd.DataFrame({"x": [1.0, 2.0]}), "eval_y": [1.0]},
            {},
            "[evaluation] eval_X gives 2 predictions but eval_y has 1 rows",
            "row for row",
        ),
    ],
)
def test_evaluation_failures_name_the_config_key_and_the_fix(
    tmp_path: Path, names: dict[str, Any], changes: dict[str, Any], message: str, hint: str
) -> None:
    result = probe(tmp_path, namespace(**names), evaluation=evaluation(**changes))
    assert isinstance(result, ProbeFailure)
    assert result.message.startswith(message), result.message
    assert hint in (result.hint or "")
    assert "capture step" not in result.message


# ---------------------------------------------------------------- the contract probe


class Kind(StrEnum):
    A = "a"
    B = "b"


class Rich(BaseModel):
    x: float = Field(gt=0, le=10)
    n: int = Field(ge=1)
    tag: Literal["red", "blue"]
    kind: Kind
    note: str | None = Field(default=None, max_length=5)
    flag: bool = False


def test_boundary_inputs_cover_every_edge_the_contract_admits() -> None:
    schema = Rich.model_json_schema()
    base = {"x": 1.0, "n": 2, "tag": "red", "kind": "a"}
    found = boundary_inputs(schema, base)
    values = {(k, json.dumps(v)) for d in found for k, v in d.items() if d.get(k) != base.get(k)}
    assert ("x", "10") in values and ("x", json.dumps(math.nextafter(0, 1))) in values
    assert ("n", "1") in values and ("tag", '"blue"') in values and ("kind", '"b"') in values
    assert ("flag", "true") in values and any("note" in d and d["note"] is None for d in found)
    assert {len(d["note"]) for d in found if isinstance(d.get("note"), str)} == {0, 1, 3, 5}
    assert any("flag" not in d for d in found) and all("x" in d for d in found)
    for value in found:  # every one is a valid Input
        Rich.model_validate_json(json.dumps(value))


def test_random_inputs_are_the_same_for_the_same_seed() -> None:
    schema = Rich.model_json_schema()
    first = random_inputs(schema, 30, seed=0)
    assert isinstance(first, list) and len(first) == 30
    assert random_inputs(schema, 30, seed=0) == first
    assert random_inputs(schema, 30, seed=1) != first


def test_first_difference_names_the_field_and_the_amount() -> None:
    assert first_difference({"y": 1.0}, {"y": 1.0 + 4.4e-16}, 0.0) == (
        "y",
        1.0,
        1.0 + 4.4e-16,
        4.440892098500626e-16,
    )
    assert first_difference({"y": 1.0}, {"y": 1.0 + 4.4e-16}, 1e-9) is None
    assert first_difference({"s": [1, 2]}, {"s": [1, 3]}, 0.0) == ("s[1]", 2, 3, 1)
    assert first_difference({"c": "a"}, {"c": "b"}, 0.5) == ("c", "a", "b", None)
    assert first_difference({"c": "a", "d": True}, {"c": "a", "d": True}, 0.0) is None


FRAGILE = (
    PIPELINE.replace(
        "class Input(BaseModel):\n    x: float\n",
        "class Input(BaseModel):\n    x: float = Field(ge=0, le=100)\n    region: Optional[Literal['north', 'south']] = None\n",
    )
    .replace(
        "from pydantic import BaseModel\n",
        "from typing import Literal, Optional\nfrom pydantic import BaseModel, Field\n",
    )
    .replace(
        "    return np.array([[i.x] for i in inputs])",
        "    offsets = {'north': 0.0, 'south': 1.0}\n"
        "    return np.array([[i.x + offsets[i.region]] for i in inputs])",
    )
)


def test_inputs_the_contract_admits_but_the_pipeline_cannot_answer_are_reported(
    tmp_path: Path,
) -> None:
    names = namespace(examples=[{"x": 1.0, "region": "north"}])
    result = probe(tmp_path, names, pipeline=FRAGILE, robustness=RobustnessPlan(inputs=50))
    assert isinstance(result, ProbeResult), result
    report = result.robustness
    assert report is not None and 0 < report.share < 1
    assert report.answered < report.tested <= report.admitted <= report.generated
    failure = report.smallest_failure
    assert failure is not None and set(failure.input) == {"x"}  # region omitted: the smallest
    assert failure.error.startswith("KeyError: None (in cell 4 (preprocess)")
    assert failure.cell == "cell 4 (preprocess) `def preprocess(inputs):`"
    assert report.exceptions == {"KeyError": report.tested - report.answered}
    assert report.batch_agrees  # a batch with a failing item raises: answered one by one


BATCH_DEPENDENT = PIPELINE.replace(
    "    return np.array([[i.x] for i in inputs])",
    "    xs = np.array([[i.x] for i in inputs])\n    return xs + 1e-12 * (len(inputs) > 1)",
)


def test_a_batch_answering_differently_from_its_items_switches_batching_off(
    tmp_path: Path,
) -> None:
    result = probe(
        tmp_path, namespace(), pipeline=BATCH_DEPENDENT, robustness=RobustnessPlan(inputs=20)
    )
    assert isinstance(result, ProbeResult) and result.robustness is not None
    assert not result.robustness.batch_agrees
    first = result.robustness.first_difference
    assert first is not None and first.index == 0 and first.input == {"x": 1.0}
    assert first.field == "y" and first.difference == pytest.approx(2e-12, rel=0.1)
    tolerant = probe(
        tmp_path / "t",
        namespace(),
        pipeline=BATCH_DEPENDENT,
        robustness=RobustnessPlan(inputs=20, tolerance=1e-9),
    )
    assert isinstance(tolerant, ProbeResult) and tolerant.robustness is not None
    assert tolerant.robustness.batch_agrees


def test_a_default_reference_is_named_by_the_key_it_came_from() -> None:
    """Drift's reference taken by default from [evaluation] eval_x: a message names that key,
    not [monitoring] reference, which the user never wrote."""
    array = np.zeros((3, 5))
    with pytest.raises(Fail, match=r"^\[evaluation\] eval_x = 'X_test' has 5 columns"):
        reference_columns(array, "X_test", ["x", "z"], lambda: True, key="[evaluation] eval_x")


def test_the_reference_plan_names_the_key_its_variable_comes_from() -> None:
    from nb2prod.notebook.config import Config
    from nb2prod.pipeline.capture import _reference_plan

    plan = _reference_plan(Config())
    assert (plan.variable, plan.key, plan.explicit) == ("eval_X", "[evaluation] eval_x", False)
    plan = _reference_plan(Config(contract={"training_data": "train_df"}))
    assert (plan.variable, plan.key) == ("train_df", "[contract] training_data")
    plan = _reference_plan(Config(monitoring={"reference": "ref"}))
    assert (plan.variable, plan.key, plan.explicit) == ("ref", "[monitoring] reference", True)
