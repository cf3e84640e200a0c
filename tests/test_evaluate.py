"""Quality gates on the notebook's metrics."""

from __future__ import annotations

import pytest
from nb2prod.errors import GateError
from nb2prod.notebook.config import Config
from nb2prod.ops.monitoring import batching
from nb2prod.pipeline.evaluate import evaluate
from nb2prod.probe.protocol import BatchDifference, Robustness, RobustnessFailure


def gates(**specs: str):  # type: ignore[no-untyped-def]
    return Config(gates=specs).parsed_gates()


@pytest.mark.parametrize(
    ("spec", "value", "passes"),
    [
        (">= 0.9", 0.9, True), (">= 0.9", 0.89, False),
        ("> 0.9", 0.9, False), ("> 0.9", 0.91, True),
        ("<= 0.1", 0.1, True), ("<= 0.1", 0.11, False),
        ("< 0.1", 0.1, False), ("< 0.1", 0.09, True),
        ("== 1", 1.0, True), ("== 1", 0.99, False),
    ],
)  # fmt: skip
def test_each_operator(spec: str, value: float, passes: bool) -> None:
    if passes:
        result = evaluate({"m": value}, gates(m=spec), enforce=True)
        assert result.to_json()["passed"] is True
    else:
        with pytest.raises(GateError) as err:
            evaluate({"m": value}, gates(m=spec), enforce=True)
        table = err.value.message
        assert "metric" in table and "FAIL" in table and spec.split()[0] in table


def test_failure_table_names_metric_value_and_threshold() -> None:
    with pytest.raises(GateError) as err:
        evaluate({"accuracy": 0.9777}, gates(accuracy=">= 0.999"), enforce=True)
    line = next(li for li in err.value.message.splitlines() if li.startswith("accuracy"))
    assert line.split() == ["accuracy", "0.9777", ">=", "0.999", "FAIL"]


def test_no_gates_records_the_failure_instead() -> None:
    result = evaluate({"accuracy": 0.5}, gates(accuracy=">= 0.9"), enforce=False)
    report = result.to_json()
    assert report["passed"] is False and report["gates_enforced"] is False
    assert report["gates"] == [
        {"metric": "accuracy", "gate": ">= 0.9", "value": 0.5, "passed": False}
    ]


def test_a_gate_on_a_metric_the_notebook_did_not_produce() -> None:
    with pytest.raises(GateError) as err:
        evaluate({"accuracy": 1.0}, gates(f1=">= 0.5"), enforce=True)
    assert "gate on 'f1'" in err.value.message
    assert "accuracy" in (err.value.hint or "")
    with pytest.raises(GateError, match="no such metric"):
        evaluate(None, gates(f1=">= 0.5"), enforce=False)


def probed(
    answered: int, tested: int = 100, difference: BatchDifference | None = None
) -> Robustness:
    failure = RobustnessFailure(
        input={"x": 1.0}, error="KeyError: None (in cell 4 (preprocess) ..., line 3)", cell="cell 4"
    )
    return Robustness(
        generated=120, admitted=tested, tested=tested, answered=answered,
        share=answered / tested, fallback_answered=None,
        smallest_failure=failure if answered < tested else None,
        exceptions={"KeyError": tested - answered} if answered < tested else {},
        batch_size=16, tolerance=0.0, batch_agrees=difference is None,
        first_difference=difference, budget_s=60.0, exhausted=False,
    )  # fmt: skip


def test_the_contract_probe_is_a_gate_at_100_percent_unless_lowered() -> None:
    assert evaluate({}, (), enforce=True, robustness=probed(100)).to_json()["passed"] is True
    with pytest.raises(GateError) as err:
        evaluate({}, (), enforce=True, robustness=probed(97))
    message = err.value.message
    row = next(li for li in message.splitlines() if li.startswith("robustness"))
    assert row.split() == ["robustness", "0.97", ">=", "1", "FAIL"]
    assert (
        "robustness: 3 of 100 inputs the contract admits got no valid Output; the smallest: "
        '{"x": 1.0} -> KeyError: None (in cell 4 (preprocess) ..., line 3)' in message
    )
    assert "lower [gates] robustness" in (err.value.hint or "")
    lowered = evaluate({}, gates(robustness=">= 0.95"), enforce=True, robustness=probed(97))
    assert lowered.to_json()["passed"] is True
    recorded = evaluate({}, (), enforce=False, robustness=probed(97)).to_json()
    assert recorded["passed"] is False and recorded["robustness"]["answered"] == 97


def test_batching_is_on_only_when_every_batch_agrees_and_says_why_not() -> None:
    config = Config()
    assert batching(probed(100), config).enabled
    assert batching(probed(100), config).why == (
        "on: 100 inputs the contract admits answered the same in batches of 16 as alone"
    )
    differs = BatchDifference(
        index=3, input={"x": 2.0}, field="y", single=0.1, batch=0.1 + 4.4e-16, difference=4.4e-16
    )
    off = batching(probed(100, difference=differs), config)
    assert not off.enabled and off.items_alone  # explicit batches are answered item by item
    assert not batching(probed(100), config).items_alone
    switched_off = batching(probed(100, difference=differs), Config(service={"batching": False}))
    assert switched_off.items_alone and not switched_off.enabled
    assert not batching(probed(100), Config(service={"batching": False})).items_alone
    assert off.why == (
        'off: a single/batch difference: input {"x": 2.0} gets Output.y = 0.1 alone but '
        "0.10000000000000045 in a batch "
        "(difference 4.4e-16); [service] batching_tolerance = 0"
    )
    assert batching(probed(100), Config(service={"batching": False})).why.startswith(
        "off in the config"
    )


def test_the_evaluate_line_says_what_each_held_out_metric_was_computed_from() -> None:
    from nb2prod.probe.metrics import holdout
    from nb2prod.probe.threshold import Probabilities

    truth = [False, False, True, True, True]
    scores = [0.1, 0.85, 0.7, 0.9, 0.95]
    labels = [p >= 0.8 for p in scores]
    figures = holdout(
        "classification", truth, labels, eval_x="eval_X", eval_y="eval_y",
        label_source="Output.label", threshold=(0.7, 0.85),
        probabilities=Probabilities(scores, True, "Output.probability"),
    )  # fmt: skip
    line = evaluate({}, (), enforce=True, holdout=figures).headline()
    from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

    assert line == (
        f"no gates configured; held-out: accuracy {accuracy_score(truth, labels):.4g}, "
        f"f1_macro {f1_score(truth, labels, average='macro'):.4g} from Output.label "
        "(threshold about 0.8 on Output.probability); "
        f"roc_auc {roc_auc_score(truth, scores):.4g}, log_loss {log_loss(truth, scores):.4g} "
        "from Output.probability"
    )
    plain = holdout("regression", [1.0, 2.0], [1.0, 3.0], eval_x="X", eval_y="y")
    assert evaluate({}, (), enforce=True, holdout=plain).headline() == (
        "no gates configured; held-out: mae 0.5, rmse 0.7071, r2 -1"
    )
