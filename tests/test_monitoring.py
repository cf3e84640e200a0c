"""monitoring.json: sensitive fields and the prediction-distribution plan, from contract schemas."""

from __future__ import annotations

from typing import Literal

from nb2prod.ops.monitoring import output_metrics, sensitive_fields
from pydantic import BaseModel, Field


class Input(BaseModel):
    email: str | None = Field(default=None, json_schema_extra={"sensitive": True})
    ssn: str = Field(json_schema_extra={"sensitive": True})
    amount: float


class Output(BaseModel):
    label: Literal["cat", "dog"]
    fixed: Literal["v1"]
    flag: bool
    confidence: float | None = Field(default=None, ge=0, le=1)
    score: float
    note: str
    secret: str = Field(json_schema_extra={"sensitive": True})


def test_sensitive_fields_are_found_through_optional() -> None:
    assert sensitive_fields(Input.model_json_schema()) == ["email", "ssn"]
    assert sensitive_fields(Output.model_json_schema()) == ["secret"]


def test_outputs_become_class_counts_or_histograms_and_never_sensitive_labels() -> None:
    plan = output_metrics(Output.model_json_schema())
    assert plan["label"] == {"kind": "categorical", "values": ["cat", "dog"]}
    assert plan["fixed"] == {"kind": "categorical", "values": ["v1"]}
    assert plan["flag"] == {"kind": "categorical", "values": ["true", "false"]}
    assert plan["confidence"]["kind"] == "numeric"
    assert plan["confidence"]["buckets"][0] == 0.1 and plan["confidence"]["buckets"][-1] == 1.0
    # no bounds and no value seen: buckets around zero, never the latency buckets
    assert plan["score"] == {
        "kind": "numeric",
        "buckets": [-100.0, -10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0, 100.0],
    }
    assert "note" not in plan and "secret" not in plan


class Scored(BaseModel):
    class_id: int  # a class index with no declared labels
    probability: float  # a probability the contract does not bound
    stars: int = Field(ge=1, le=5)
    price: float
    label: str


def test_class_ids_and_labels_are_counted_by_label_and_numbers_get_buckets_that_fit() -> None:
    observed = {
        "class_id": [2, 0],
        "probability": [0.93, 0.41],
        "price": [120.0, 180.0, 250.0],
        "label": ["spam", "ham"],
    }
    plan = output_metrics(Scored.model_json_schema(), observed, class_labels=("0", "1", "2"))
    # the held-out labels name the classes: all three start at 0, not only the ones seen
    assert plan["class_id"] == {"kind": "categorical", "values": ["0", "1", "2"]}
    assert plan["stars"] == {"kind": "categorical", "values": ["1", "2", "3", "4", "5"]}
    assert plan["label"] == {"kind": "categorical", "values": ["ham", "spam"]}
    assert plan["probability"]["buckets"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    price = plan["price"]["buckets"]
    assert price[0] <= 120 and price[-1] >= 250 and len(price) == 10
    assert (
        max(b - a for a, b in zip(price, price[1:], strict=False)) <= 100
    )  # steps that separate the values
    # without held-out labels, an unbounded integer is a number
    assert output_metrics(Scored.model_json_schema(), observed)["class_id"]["kind"] == "numeric"
