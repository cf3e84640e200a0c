"""Errors name the cause (issue 22, findings 2 and 3): a single/batch difference is named as one,
with the input, the field, both values and the fix; a robustness failure is shrunk to the fields
that make it fail and names the bound to add."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from nb2prod.pipeline.evaluate import robustness_failure
from nb2prod.probe import FAILURE_FILE, RESULT_FILE, run
from nb2prod.probe.explain import OMITTED, changed_fields, feature_difference, shrink
from nb2prod.probe.protocol import (
    ProbeFailure,
    ProbePlan,
    ProbeResult,
    ReferencePlan,
    RobustnessPlan,
)
from nb2prod.runtime.schema import load
from sklearn.linear_model import LinearRegression

# Finding 2's pattern (a Kaggle-style Titanic notebook): preprocess builds a DataFrame from
# model_dump(), one-hot encodes it with get_dummies and reindexes to the training columns. A lone
# row whose Age is None makes an object column, which get_dummies drops: Age becomes 0 alone
# but the median in a batch.
DUMMIES = '''"""A generated pipeline.py, as render writes it."""


# ---- cell 1 (setup) ----
from typing import Literal, Optional

import pandas as pd
from pydantic import BaseModel, Field


# ---- cell 2 (contract) ----
class Input(BaseModel):
    Age: Optional[float] = Field(default=None, ge=0, le=100)
    Sex: Literal["male", "female"]
    Fare: float = Field(ge=0, le=600)


class Output(BaseModel):
    y: float


# ---- cell 4 (preprocess) ----
COLUMNS = ["Age", "Fare", "Sex_female", "Sex_male"]


def preprocess(inputs):
    frame = pd.get_dummies(pd.DataFrame([i.model_dump() for i in inputs]))
    return frame.reindex(columns=COLUMNS, fill_value=0).fillna(30.0).astype(float)


# ---- nb2prod default: the notebook has no `predict` cell ----
def predict(model, features):
    return model.predict(features)


# ---- nb2prod default: no `postprocess` cell, so each item of `raw` fills Output.y ----
def postprocess(raw, inputs):
    return [Output(y=float(v)) for v in raw]
'''

TRAIN = pd.DataFrame(
    {
        "Age": [22.0, 38.0, 26.0, 35.0],
        "Fare": [7.25, 71.3, 7.9, 53.1],
        "Sex_female": [0.0, 1.0, 1.0, 1.0],
        "Sex_male": [1.0, 0.0, 0.0, 0.0],
    }
)


def plan(tmp_path: Path, pipeline: str, **changes: Any) -> ProbePlan:
    path = tmp_path / "service" / "pipeline.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(pipeline)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    fields: dict[str, Any] = {
        "out_dir": str(out),
        "pipeline_file": str(path),
        "model_variable": "model",
        "model_cell": "cell 3 (model)",
        "cell_labels": {4: "cell 4 (preprocess) `def preprocess(inputs):`"},
        "has_fallback": False,
        "modules": ("pandas", "pydantic", "sklearn"),
        "predict_cell": "nb2prod's default predict (`model.predict(features)`)",
        "default_output_field": "y",
        "robustness": RobustnessPlan(inputs=20),
    }
    return ProbePlan(**{**fields, **changes})


def probe(tmp_path: Path, pipeline: str, names: dict[str, Any], **changes: Any) -> Any:
    the_plan = plan(tmp_path, pipeline, **changes)
    run(names, the_plan.model_dump_json())
    out = Path(the_plan.out_dir)
    if (out / FAILURE_FILE).is_file():
        return load(ProbeFailure, out / FAILURE_FILE)
    return load(ProbeResult, out / RESULT_FILE)


def titanic(examples: list[dict[str, Any]]) -> dict[str, Any]:
    model = LinearRegression().fit(TRAIN, [1.0, 5.0, 3.0, 4.0])
    return {"model": model, "examples": examples}


def test_an_example_answered_differently_alone_is_a_single_batch_difference(
    tmp_path: Path,
) -> None:
    names = titanic(
        [{"Age": 22.0, "Sex": "female", "Fare": 70.0}, {"Age": None, "Sex": "male", "Fare": 7.0}]
    )
    failure = probe(tmp_path, DUMMIES, names)
    assert isinstance(failure, ProbeFailure), failure
    message = failure.message
    assert message.startswith("a single/batch difference: examples[1] gets Output.y = ")
    assert "alone but" in message and "in the batch of examples" in message
    # the cause, found by running preprocess both ways: Age is 0 alone, the fill value in a batch
    assert "preprocess gives `Age` = 0 alone but 30 in a batch" in message
    assert '"Age": null' in message  # the input
    hint = failure.hint or ""
    assert "a None in `Age` makes an object column, which get_dummies drops" in hint
    assert "reindex its columns to the training columns" in hint and "explicit dtypes" in hint


def test_examples_that_agree_alone_and_in_a_batch_pass(tmp_path: Path) -> None:
    fixed = DUMMIES.replace(
        "pd.DataFrame([i.model_dump() for i in inputs])",
        "pd.DataFrame([i.model_dump() for i in inputs]).astype({'Age': float})",
    )
    names = titanic(
        [{"Age": 22.0, "Sex": "female", "Fare": 70.0}, {"Age": None, "Sex": "male", "Fare": 7.0}]
    )
    result = probe(tmp_path, fixed, names, robustness=RobustnessPlan(inputs=20, tolerance=1e-9))
    assert isinstance(result, ProbeResult), result
    assert result.robustness is not None and result.robustness.batch_agrees
    # without a tolerance, a linear model's batched arithmetic differs in the last digits: the
    # features are the same, so the fix is the tolerance, not preprocess
    strict = probe(tmp_path / "strict", fixed, names)
    assert isinstance(strict, ProbeResult) and strict.robustness is not None
    first = strict.robustness.first_difference
    assert first is not None and first.cause == ""
    assert first.fix.startswith("preprocess gives the same features alone and in a batch")
    assert first.fix.endswith("allow it with [service] batching_tolerance (e.g. 1e-9)")


def test_a_generated_input_answered_differently_in_a_batch_names_the_cause(
    tmp_path: Path,
) -> None:
    """The examples agree (neither has a None), the contract probe's generated inputs do not:
    batching goes off, and the difference is recorded with what preprocess made of it."""
    names = titanic(
        [{"Age": 22.0, "Sex": "female", "Fare": 70.0}, {"Age": 30.0, "Sex": "male", "Fare": 7.0}]
    )
    result = probe(tmp_path, DUMMIES, names, robustness=RobustnessPlan(inputs=20, tolerance=1e-9))
    assert isinstance(result, ProbeResult), result
    robustness = result.robustness
    assert robustness is not None and not robustness.batch_agrees
    first = robustness.first_difference
    assert first is not None and first.input.get("Age", None) is None
    assert first.cause.startswith("preprocess gives `Age` = 0 alone but 30 in a batch")
    assert "a None in `Age`" in first.fix

    from nb2prod.notebook.config import Config
    from nb2prod.ops.monitoring import batching

    why = batching(robustness, Config()).why
    assert why.startswith("off: a single/batch difference: input {")
    assert "preprocess gives `Age` = 0" in why and "Fix: preprocess must treat each row" in why


def test_feature_difference_names_missing_columns_and_values() -> None:
    def dummies(rows: list[dict[str, Any]]) -> pd.DataFrame:
        return pd.get_dummies(pd.DataFrame(rows))

    batch = [{"Sex": "male", "Age": 3.0}, {"Sex": "female", "Age": 4.0}]
    assert feature_difference(dummies, batch, 0) == (
        "preprocess's frame lacks column(s) `Sex_female` alone"
    )
    assert feature_difference(lambda rows: [[r["Age"]] for r in rows], batch, 1) == ""
    scaled = feature_difference(lambda rows: [[r["Age"] / len(rows)] for r in rows], batch, 1)
    assert scaled == "preprocess gives `0` = 4 alone but 2 in a batch"


# ---------------------------------------------------------------- shrinking


def test_shrink_keeps_only_the_fields_the_failure_needs() -> None:
    """Finding 3: 30 values near 1e308, of which one makes the answer nan."""
    fields = [f"x{k}" for k in range(30)]
    example = {f: 1.0 for f in fields}
    failing = {f: 1.7e308 for f in fields}
    calls = []

    def still_fails(value: dict[str, Any]) -> bool:
        calls.append(value)
        return value["x7"] > 1e300 and value.get("x20", 0) > 1e300

    smallest = shrink(failing, example, fields, still_fails)
    assert changed_fields(smallest, example, fields) == ["x7", "x20"]
    assert smallest["x0"] == 1.0 and smallest["x7"] == 1.7e308
    assert len(calls) == 30  # one trial per field
    # a field the example leaves out is left out again
    assert shrink({"a": 1, "b": 2}, {"a": 1}, ["a", "b"], lambda v: True) == {"a": 1}
    assert OMITTED not in shrink({"a": 1, "b": 2}, {"a": 1}, ["a", "b"], lambda v: True).values()


SIGMOID = '''"""A generated pipeline.py, as render writes it."""


# ---- cell 1 (setup) ----
import numpy as np
from pydantic import BaseModel, Field


# ---- cell 2 (contract) ----
class Input(BaseModel):
    age: float = Field(ge=0, le=100)
    fare: float
    pclass: int = Field(ge=1, le=3)
    sibsp: int = Field(ge=0, le=8)


class Output(BaseModel):
    probability: float = Field(ge=0, le=1)


# ---- cell 4 (preprocess) ----
def preprocess(inputs):
    return np.array([[i.age, i.fare, i.pclass, i.sibsp] for i in inputs], dtype=float)


# ---- cell 5 (predict) ----
def predict(model, features):
    score = np.exp(features @ np.array([0.01, 0.01, -0.1, -0.1]))
    return score / (1 + score)


# ---- cell 6 (postprocess) ----
def postprocess(raw, inputs):
    return [Output(probability=float(v)) for v in raw]
'''


def test_a_robustness_failure_names_the_field_and_the_bound_to_add(tmp_path: Path) -> None:
    train_df = pd.DataFrame(
        {"age": [22.0, 38.0], "fare": [7.25, 512.33], "pclass": [3, 1], "sibsp": [1, 0]}
    )
    names = {
        "model": object(),
        "examples": [{"age": 22.0, "fare": 7.25, "pclass": 3, "sibsp": 1}],
        "train_df": train_df,
    }
    result = probe(
        tmp_path,
        SIGMOID,
        names,
        default_output_field=None,
        cell_labels={
            4: "cell 4 (preprocess) `def preprocess(inputs):`",
            5: "cell 5 (predict) `def predict(model, features):`",
            6: "cell 6 (postprocess) `def postprocess(raw, inputs):`",
        },
        reference=ReferencePlan(variable="train_df", explicit=True, bins=4),
        robustness=RobustnessPlan(inputs=30),
    )
    assert isinstance(result, ProbeResult), result
    robustness = result.robustness
    assert robustness is not None and robustness.answered < robustness.tested
    smallest = robustness.smallest_failure
    assert smallest is not None and smallest.fields == ("fare",)
    # every other field as in the first example: only fare is left to blame
    assert {k: v for k, v in smallest.input.items() if k != "fare"} == {
        "age": 22.0, "pclass": 3, "sibsp": 1
    }  # fmt: skip
    fare = smallest.input["fare"]
    assert fare > 100 and math.isfinite(fare)
    assert smallest.cause.startswith(f"Input.fare = {fare:g} (the other fields as in examples[0]) ")
    assert "makes Output.probability nan (Output requires: " in smallest.cause
    assert smallest.cause.endswith(
        "add Field(le=...) on `fare` (the max of `train_df.fare` is 512.33)"
    )
    # the robustness gate's message says it
    assert f"shrunk to the fields that make it fail: {smallest.cause}" in robustness_failure(
        robustness
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [(-5e300, "add Field(ge=...) on `fare`"), (None, "handle a missing `fare` in preprocess")],
)
def test_the_fix_follows_the_value(value: Any, expected: str) -> None:
    from nb2prod.probe.explain import failure_cause

    schema = {"properties": {"fare": {"anyOf": [{"type": "number"}, {"type": "null"}]}}}
    cause = failure_cause(
        {"fare": value}, ["fare"], KeyError("x"), "KeyError: 'x'", schema, {}, None, "examples[0]"
    )
    assert expected in cause and "makes KeyError: 'x'" in cause


def test_an_example_that_fails_alone_but_not_in_the_batch_is_named(tmp_path: Path) -> None:
    from tests.test_probe import PIPELINE, namespace

    lone = PIPELINE.replace(  # standardised by the batch's own spread: a lone row has none
        "    return np.array([[i.x] for i in inputs])",
        "    xs = np.array([[i.x] for i in inputs])\n    return (xs - xs.mean()) / xs.std(ddof=1)",
    )
    failure = probe(tmp_path, lone, namespace())
    assert isinstance(failure, ProbeFailure), failure
    assert failure.message.startswith(
        "a single/batch difference: examples[0] is answered in the batch of examples but fails "
        "alone: ValueError: Input X contains NaN"
    )
    assert "(in nb2prod's default (the notebook has no `predict` cell), line 2" in failure.message
    assert "preprocess must treat each row the same whatever rows come with it" in (
        failure.hint or ""
    )
