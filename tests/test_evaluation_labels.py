"""[evaluation] the way the service answers: eval_y read in the service's vocabulary, and each
metric scored on the Output field the service answers it with (labels after the notebook's own
threshold, ROC AUC and log loss on the probability). Pure parts and the hold-out step on an
in-memory pipeline; tests/e2e/test_evaluation.py packages a notebook doing this in a kernel."""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pandas as pd
import pytest
from nb2prod.probe import holdout
from nb2prod.probe.failure import Fail, PipelineSource
from nb2prod.probe.labels import align
from nb2prod.probe.metrics import holdout as figures_of
from nb2prod.probe.protocol import EvaluationPlan, Holdout
from nb2prod.probe.threshold import Probabilities, Threshold, pick_field
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

# ---------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("truth", "pred", "expected"),
    [
        ([0, 1, 1], [False, True, False], [False, True, True]),
        (np.array([0, 1]).tolist(), [True, True], [False, True]),
        ([0.0, 1.0], [False, True], [False, True]),
        (["yes", "no", "Yes"], [True, False, True], [True, False, True]),
        ([True, False], ["yes", "no"], ["yes", "no"]),
        ([True, True], ["Yes", "Yes"], ["Yes", "Yes"]),
        ([False], ["Yes"], ["No"]),  # a class the service never answered, spelled as its pair
        ([1, 0], ["1", "0"], ["1", "0"]),
        ([True, False], [1, 0], [1, 0]),
        (["1", "0", "2"], [1, 0, 2], [1, 0, 2]),
        (["no", "yes"], [0, 1], [0, 1]),
        (["no", "yes", "no"], ["No", "Yes", "Yes"], ["No", "Yes", "No"]),
        (["Cat", "dog"], ["cat", "Dog"], ["cat", "Dog"]),
    ],
)
def test_eval_y_is_read_as_the_predictions_spell_it(
    truth: list[Any], pred: list[Any], expected: list[Any]
) -> None:
    aligned = align(truth, pred, eval_y="eval_y", predicted="Output.label")
    assert aligned.y_true == expected and aligned.y_pred == pred
    assert [type(v) for v in aligned.y_true] == [type(v) for v in expected]
    assert aligned.note is not None and aligned.note.startswith("eval_y's ")
    assert "read as Output.label's" in aligned.note


def test_labels_of_one_kind_are_left_as_they_are_and_whole_floats_become_ints() -> None:
    assert align(["a", "b"], ["b", "b"], eval_y="y", predicted="p").note is None
    never = align(["a", "b", "c"], ["a", "b", "b"], eval_y="y", predicted="p")
    assert never.y_true == ["a", "b", "c"] and never.note is None  # "c" never answered: a miss
    same = align([0, 1], [1, 1], eval_y="y", predicted="p")
    assert same.y_true == [0, 1] and same.note is None
    floats = align([0.0, 1.0, 2.0], [2, 1, 0], eval_y="eval_y", predicted="p")
    assert floats.y_true == [0, 1, 2] and all(type(v) is int for v in floats.y_true)
    assert floats.note == "eval_y's whole-number labels and the predictions compared as int"
    multi = align([[0, "a"], [1, "b"]], [[True, "a"], [False, "b"]], eval_y="Y", predicted="p")
    assert multi.y_true == [[False, "a"], [True, "b"]]
    assert multi.note is not None and multi.note.startswith("Y[:, 0]'s int labels")


@pytest.mark.parametrize(
    ("truth", "pred", "message"),
    [
        (
            [0, 1, 2],
            [True, False, True],
            "[evaluation] eval_y = 'eval_y' holds int labels (e.g. 0, 1, 2) but the predictions "
            "(Output.label) are bool (e.g. False, True): 2 cannot be read as True or False",
        ),
        (
            ["cat", "dog"],
            [True, False],
            "holds str labels (e.g. 'cat', 'dog') but the predictions (Output.label) are bool "
            "(e.g. False, True): 'cat', 'dog' cannot be read as True or False",
        ),
        (
            ["cat", "dog"],
            [0, 1],
            "are int (e.g. 0, 1): 'cat', 'dog' cannot be read as a number",
        ),
        (
            [0, 1],
            ["setosa", "virginica"],
            "holds int labels (e.g. 0, 1) but the predictions (Output.label) are str (e.g. "
            "'setosa', 'virginica'): no value of one can be read as exactly one value",
        ),
        (
            [True, False],
            ["Yes", "yes", "no"],
            "are str (e.g. 'Yes', 'no', 'yes'): no value of one",
        ),
        ([0.5, 1.0], [True, False], "0.5 cannot be read as True or False"),
    ],
)
def test_ambiguous_labels_are_refused_with_the_key_both_kinds_examples_and_the_fix(
    truth: list[Any], pred: list[Any], message: str
) -> None:
    with pytest.raises(Fail) as caught:
        align(truth, pred, eval_y="eval_y", predicted="Output.label")
    assert message in caught.value.message
    assert caught.value.message.startswith("[evaluation] eval_y = 'eval_y' holds ")
    hint = caught.value.hint or ""
    assert "eval_y = eval_y.map({" in hint and "[evaluation] output_field" in hint


# ---------------------------------------------------------------- probabilities and thresholds


def test_probability_figures_equal_scikit_learns_and_the_prior_baseline() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    p = np.clip(y * 0.4 + rng.uniform(0, 0.6, 300), 0, 1).round(2)  # ties on purpose
    truth, scores = [bool(v) for v in y], p.tolist()
    labels = [s >= 0.8 for s in scores]
    figures = figures_of(
        "classification", truth, labels, eval_x="X", eval_y="y",
        label_source="Output.label",
        probabilities=Probabilities(scores, True, "Output.probability"),
    )  # fmt: skip
    assert figures.model["accuracy"] == pytest.approx(accuracy_score(truth, labels))
    assert figures.model["f1_macro"] == pytest.approx(f1_score(truth, labels, average="macro"))
    assert figures.model["roc_auc"] == pytest.approx(roc_auc_score(truth, scores))
    assert figures.model["log_loss"] == pytest.approx(log_loss(truth, scores))
    prior = DummyClassifier(strategy="prior").fit([[0]] * 300, truth)
    constant = prior.predict_proba([[0]] * 300)[:, 1]
    assert figures.baseline["roc_auc"] == pytest.approx(roc_auc_score(truth, constant))
    assert figures.baseline["log_loss"] == pytest.approx(log_loss(truth, constant))
    assert figures.sources == {
        "accuracy": "Output.label",
        "f1_macro": "Output.label",
        "roc_auc": "Output.probability",
        "log_loss": "Output.probability",
    }
    assert figures.positive == "True"


def test_the_threshold_is_bounded_by_the_rows_and_named_when_one_number_fits() -> None:
    assert Threshold(0.7913, 0.8125).named() == 0.8
    assert Threshold(0.69, 0.84).named() is None  # 0.7 and 0.8 both fit
    assert Threshold(0.801, 0.809).named() is None  # 0.802 ... 0.809
    assert Threshold(0.8049, 0.8051).named() == 0.805
    text = Threshold(0.7913, 0.8125).describe("Output.label", "Output.probability", True)
    assert text == (
        "Output.label is True where Output.probability >= about 0.8 "
        "(between 0.7913 and 0.8125 on these rows)"
    )


def test_the_probability_field_is_the_one_that_orders_the_labels() -> None:
    outputs = [
        {"label": p >= 0.8, "probability": p, "confidence": max(p, 1 - p), "n": 3.0}
        for p in (0.1, 0.5, 0.79, 0.85, 0.95)
    ]
    predicted = [o["label"] for o in outputs]
    assert pick_field(outputs, "label", predicted) == "probability"
    # no field orders the labels: none is picked
    assert pick_field([{k: v for k, v in o.items() if k != "probability"} for o in outputs],
                      "label", predicted) is None  # fmt: skip


# ---------------------------------------------------------------- the hold-out step

SERVICE = """
from pydantic import BaseModel

class Input(BaseModel):
    x: float

class Output(BaseModel):
    label: bool
    probability: float

def preprocess(inputs):
    return [[i.x] for i in inputs]

def predict(model, features):
    return model.predict_proba(features)[:, 1]

def postprocess(raw, inputs):
    return [Output(label=bool(p >= 0.8), probability=float(p)) for p in raw]
"""


def pipeline_module(text: str = SERVICE) -> types.ModuleType:
    module = types.ModuleType("pipeline_under_test")
    exec(compile(text, "pipeline.py", "exec"), module.__dict__)
    return module


def run_holdout(namespace: dict[str, Any], text: str = SERVICE, **plan: Any) -> Holdout:
    model = namespace["model"]
    figures = holdout.evaluate(
        model, namespace, EvaluationPlan(eval_x="eval_X", eval_y="eval_y", **plan),
        pipeline_module(text), PipelineSource("pipeline.py", text, {}), "cell 5 (predict)",
    )  # fmt: skip
    assert figures is not None
    return figures


def thresholded_classifier() -> tuple[LogisticRegression, pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(2)
    x = rng.normal(0, 2, 400)
    y = (x + rng.normal(0, 1.5, 400) > 0).astype(int)  # 0/1 ints, as a notebook's labels
    model = LogisticRegression().fit(x[:200, None], y[:200])
    return model, pd.DataFrame({"x": x[200:]}), y[200:]


def test_service_rows_are_scored_on_the_served_label_and_probability() -> None:
    model, eval_X, eval_y = thresholded_classifier()
    figures = run_holdout({"model": model, "eval_X": eval_X, "eval_y": eval_y})
    probability = model.predict_proba(eval_X[["x"]].to_numpy())[:, 1]
    served = probability >= 0.8  # what the service answers, computed here independently
    assert figures.task == "classification"
    assert figures.model["accuracy"] == pytest.approx(accuracy_score(eval_y, served))
    assert figures.model["f1_macro"] == pytest.approx(f1_score(eval_y, served, average="macro"))
    at_half = accuracy_score(eval_y, probability >= 0.5)
    assert abs(figures.model["accuracy"] - at_half) > 0.01  # not the 0.5-threshold figure
    assert figures.model["roc_auc"] == pytest.approx(roc_auc_score(eval_y, probability))
    assert figures.model["log_loss"] == pytest.approx(log_loss(eval_y, probability))
    assert figures.sources["accuracy"] == "Output.label"
    assert figures.sources["roc_auc"] == "Output.probability"
    assert figures.labels == ("False", "True") and figures.positive == "True"
    assert figures.threshold is not None
    above, upto = figures.threshold
    assert above == probability[~served].max() and upto == probability[served].min()
    assert "eval_y's int labels read as Output.label's bool: 0 as False, 1 as True" in figures.notes
    assert any(
        n.startswith("Output.label is True where Output.probability >= ") for n in figures.notes
    )


def test_probability_field_from_the_config_and_its_refusals() -> None:
    model, eval_X, eval_y = thresholded_classifier()
    names = {"model": model, "eval_X": eval_X, "eval_y": eval_y}
    two = SERVICE.replace("    probability: float", "    probability: float\n    other: float")
    two = two.replace("probability=float(p))", "probability=float(p), other=float(p))")
    # two fields order the labels and neither is named prob*... except one: it is picked
    assert run_holdout(names, two).sources["roc_auc"] == "Output.probability"
    chosen = run_holdout(names, two, probability_field="other")
    assert chosen.sources["log_loss"] == "Output.other"
    for field, message in [
        ("nope", "[evaluation] probability_field = 'nope', but Output has no such field"),
        ("label", "[evaluation] probability_field = 'label': Output.label holds False, not a "
                  "probability between 0 and 1"),
    ]:  # fmt: skip
        with pytest.raises(Fail) as caught:
            run_holdout(names, two, probability_field=field)
        assert caught.value.message == message


def test_features_through_predict_say_the_threshold_is_nb2prods() -> None:
    model, eval_X, eval_y = thresholded_classifier()
    features = eval_X[["x"]].to_numpy()
    figures = run_holdout({"model": model, "eval_X": features, "eval_y": eval_y})
    probability = model.predict_proba(features)[:, 1]
    assert figures.model["accuracy"] == pytest.approx(accuracy_score(eval_y, probability >= 0.5))
    assert figures.model["roc_auc"] == pytest.approx(roc_auc_score(eval_y, probability))
    assert figures.sources["accuracy"] == "predict's probability of 1, above 0.5"
    assert any("not necessarily the service's" in n for n in figures.notes)


def test_bool_answers_against_labels_a_bool_cannot_hold_are_refused() -> None:
    model, eval_X, eval_y = thresholded_classifier()
    with pytest.raises(Fail) as caught:
        run_holdout({"model": model, "eval_X": eval_X, "eval_y": eval_y + 1})  # 1/2 labels
    assert caught.value.message.startswith(
        "[evaluation] eval_y = 'eval_y' holds int labels (e.g. 1, 2) but the predictions "
        "(Output.label) are bool (e.g. False, True): 2 cannot be read as True or False"
    )


def test_a_probability_first_in_output_leaves_the_comparison_to_the_label_field() -> None:
    model, eval_X, eval_y = thresholded_classifier()
    first = SERVICE.replace(
        "    label: bool\n    probability: float", "    probability: float\n    label: bool"
    )
    figures = run_holdout({"model": model, "eval_X": eval_X, "eval_y": eval_y}, first)
    served = model.predict_proba(eval_X[["x"]].to_numpy())[:, 1] >= 0.8
    assert figures.path == "preprocess -> predict -> postprocess, Output.label"
    assert figures.model["accuracy"] == pytest.approx(accuracy_score(eval_y, served))
    assert figures.notes[0] == (
        "Output.label compared with eval_y: Output's first field, probability, holds "
        "probabilities (set [evaluation] output_field to choose another)"
    )
    chosen = run_holdout({"model": model, "eval_X": eval_X, "eval_y": eval_y}, first,
                         output_field="probability", task="regression")  # fmt: skip
    assert chosen.path.endswith("Output.probability") and chosen.task == "regression"


def test_two_columns_of_class_probabilities_give_the_second_class_its_roc_auc() -> None:
    model, eval_X, eval_y = thresholded_classifier()
    features = eval_X[["x"]].to_numpy()
    two = SERVICE.replace("return model.predict_proba(features)[:, 1]",
                          "return model.predict_proba(features)")  # fmt: skip
    figures = run_holdout({"model": model, "eval_X": features, "eval_y": eval_y}, two)
    probability = model.predict_proba(features)[:, 1]
    assert figures.model["accuracy"] == pytest.approx(model.score(features, eval_y))
    assert figures.model["roc_auc"] == pytest.approx(roc_auc_score(eval_y, probability))
    assert figures.sources["roc_auc"] == "predict's column 1" and figures.positive == "1"
