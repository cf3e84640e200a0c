"""monitoring.json: sensitive fields and the prediction-distribution plan, from contract schemas."""

from __future__ import annotations

from typing import Literal

from nb2prod.monitoring import output_metrics, sensitive_fields
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
    assert plan["score"] == {"kind": "numeric", "buckets": None}
    assert "note" not in plan and "secret" not in plan
