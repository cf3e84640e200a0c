"""The batch path's shortcuts give what the plain ways give: a Prediction set field by field is
the one model_construct makes, a batch of Outputs validated in one call is validated as each alone
(the same error when one is wrong), and the comma bound of the batch-size check never lets an
oversized batch through."""

from __future__ import annotations

import json
import types
from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nb2prod.runtime import limits, model
from nb2prod.runtime.app import constructor
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError


class Output(BaseModel):
    species: str
    confidence: Optional[float] = Field(default=None, ge=0, le=1)  # noqa: UP045


class Prediction(BaseModel):
    output: Output
    model_version: str
    degraded: bool
    reason: Optional[str]  # noqa: UP045


class Batch(BaseModel):
    results: list[Prediction]


def test_a_constructed_prediction_is_the_one_model_construct_makes() -> None:
    build = constructor(Prediction)
    values = {"output": Output(species="setosa", confidence=0.9), "model_version": "1.0.0",
              "degraded": True, "reason": "timeout"}  # fmt: skip
    made, plain = build(dict(values)), Prediction.model_construct(**values)
    assert made == plain
    assert made.model_fields_set == plain.model_fields_set
    assert made.model_dump_json() == plain.model_dump_json()
    both = Batch.model_construct(results=[made, plain])
    assert json.loads(both.model_dump_json())["results"][0] == json.loads(plain.model_dump_json())
    assert made.model_copy(update={"degraded": False}).degraded is False


def test_models_with_private_attributes_or_extras_are_built_by_model_construct() -> None:
    class Private(BaseModel):
        a: int
        _seen: int = PrivateAttr(default=0)

    class Extra(BaseModel):
        model_config = ConfigDict(extra="allow")
        a: int

    for cls in (Private, Extra):
        made = constructor(cls)({"a": 1})
        assert made == cls.model_construct(a=1)
    assert constructor(Private)({"a": 1})._seen == 0


def _pipeline() -> types.ModuleType:
    pipeline = types.ModuleType("pipeline")
    pipeline.Output = Output  # type: ignore[attr-defined]
    return pipeline


def test_a_batch_of_outputs_is_validated_as_each_alone() -> None:
    pipeline = _pipeline()
    outputs = [Output(species="a", confidence=0.5), {"species": "b"}, Output(species="c")]
    assert model.validate_outputs(pipeline, outputs) == [
        model.validate_output(pipeline, o) for o in outputs
    ]
    mutated = Output(species="a", confidence=0.5)
    mutated.confidence = 7.0  # no validate_assignment: only the re-validation catches it
    with pytest.raises(ValidationError) as alone:
        model.validate_output(pipeline, mutated)
    with pytest.raises(ValidationError) as batch:
        model.validate_outputs(pipeline, [Output(species="ok"), mutated])
    assert batch.value.title == alone.value.title == "Output"
    assert batch.value.errors() == alone.value.errors()


@given(st.lists(st.one_of(st.integers(), st.text(max_size=3), st.lists(st.integers(), max_size=3),
                          st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)),
                max_size=12),
       st.integers(min_value=1, max_value=8))  # fmt: skip
def test_the_batch_size_check_counts_every_batch_right(items: list[object], rows: int) -> None:
    body = json.dumps({"inputs": items}, separators=(",", ":")).encode()
    assert limits.batch_exceeds(body, rows) is (len(items) > rows)


class Inner(BaseModel):
    score: float = Field(ge=0, le=1)


class Nested(BaseModel):
    label: str
    detail: Inner


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    label: str


@pytest.mark.parametrize("batch", [False, True])
def test_every_kind_of_output_is_checked_again_as_it_leaves(batch: bool) -> None:
    """A flat Output is validated from its field values, a nested one from its dump, so a value
    broken after construction is caught at any depth and extra fields are kept."""
    assert model._is_flat(Output) and not model._is_flat(Nested) and not model._is_flat(Open)

    def check(cls: type[BaseModel], values: list[object]) -> list[object]:
        pipeline = types.ModuleType("pipeline")
        pipeline.Output = cls  # type: ignore[attr-defined]
        if batch:
            return model.validate_outputs(pipeline, [*values, values[-1]])[:-1]
        return [model.validate_output(pipeline, values[0])]

    with pytest.raises(ValidationError):  # built without validation, flat
        check(Output, [Output.model_construct(species=3, confidence=0.5)])
    broken = Nested(label="a", detail=Inner(score=0.5))
    broken.detail.score = 3.0  # nested and mutated
    with pytest.raises(ValidationError) as err:
        check(Nested, [broken])
    assert err.value.errors()[0]["loc"][-2:] == ("detail", "score")
    (kept,) = check(Open, [Open(label="a", colour="red")])
    assert kept.model_extra == {"colour": "red"}  # type: ignore[attr-defined]
    (fine,) = check(Output, [Output(species="a", confidence=0.5)])
    assert fine == Output(species="a", confidence=0.5)
