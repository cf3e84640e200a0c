"""Quality gates on the notebook's metrics."""

from __future__ import annotations

import pytest
from nb2prod.config import Config
from nb2prod.errors import GateError
from nb2prod.evaluate import evaluate


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
