"""One answer path whatever the transport: the served release and batch scoring answer through
the release's own ``runtime.answer.Answerer``.

The served side is the release's ``runtime.app.Handlers`` (its copy of the runtime, imported from
the release as batch scoring imports it), driven without BentoML: fakes stand in for the metrics
and the bento tag. The releases are tests/test_batch.py's: y = 2x, the model path raises for
x == 13, the confidence falls to 0.1 from y = 150, the fallback answers y = -1.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
from collections import Counter
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from nb2prod.runtime.answer import Answerer, Failure
from nb2prod.runtime.guard import OverBudget
from nb2prod.scoring.local import score
from nb2prod.scoring.scorer import load_scorer

from tests.factories import monitoring_plan, service_metadata
from tests.test_batch import PIPELINE, make_release


class FakeMetrics:
    """What Handlers reads and writes of telemetry.Metrics, recorded."""

    def __init__(self) -> None:
        self.switched_off: Any = None
        self.fallbacks_by_reason: Counter[str] = Counter()
        self.calls: list[int] = []
        self.answered: list[Any] = []
        self.release = SimpleNamespace(labels=lambda **_: SimpleNamespace(set=lambda _: None))
        self.fallbacks = SimpleNamespace(
            labels=lambda reason: SimpleNamespace(
                inc=lambda: self.fallbacks_by_reason.update([reason])
            )
        )

    def refresh(self) -> None:
        pass

    def observe_call(self, size: int, timings: dict[str, float]) -> None:
        self.calls.append(size)

    def observe_outputs(self, outputs: list[Any]) -> None:
        self.answered += outputs


def runtime_of(release: Path, name: str) -> ModuleType:
    """``service/runtime/<name>.py`` of the release, as batch scoring imported it."""
    return importlib.import_module(f"{load_scorer(release).module}.runtime.{name}")


def served(release: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The release's served handlers, built as BentoML builds the generated class."""
    app = runtime_of(release, "app")
    metrics = FakeMetrics()
    monkeypatch.setattr(app.telemetry, "metrics", lambda monitoring: metrics)
    monkeypatch.setattr(app.telemetry, "configure_logging", lambda: None)  # stdout stays as is
    monkeypatch.setattr(app, "bento_tag", lambda: "doubler:test")

    loaded = app.Release.load(release / "service", load_scorer(release).pipeline)

    class Service(app.Handlers):
        release = loaded

    service = Service()
    service.fake_metrics = metrics
    return service


def http_body(result: Any) -> dict[str, Any]:
    """What the route sends: a Prediction's JSON, or the 503 body."""
    if hasattr(result, "model_dump"):
        return dict(result.model_dump(mode="json"))
    assert result.status_code == 503
    return {"status": 503, **json.loads(result.body)}


def scored_rows(release: Path, xs: list[float]) -> list[dict[str, Any]]:
    frame = score(pd.DataFrame({"x": xs}), release)
    return [
        {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")
    ]


def spy_on_answerer(release: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of inputs of each call of the release's Answerer.answer."""
    answerer = runtime_of(release, "answer").Answerer
    calls: list[int] = []
    original = answerer.answer

    async def answer(self: Any, inputs: list[Any], call: Any = None) -> Any:
        calls.append(len(inputs))
        return await original(self, inputs, call)

    monkeypatch.setattr(answerer, "answer", answer)
    return calls


def test_a_failing_model_gets_the_same_fallback_served_and_scored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = make_release(tmp_path / "release")
    calls = spy_on_answerer(release, monkeypatch)
    service = served(release, monkeypatch)
    Input = service.release.pipeline.Input
    one = http_body(asyncio.run(service.predict_one({"x": 13.0})))
    many = asyncio.run(service.predict_many([Input(x=1.5), Input(x=13.0)]))
    served_calls, calls[:] = list(calls), []
    rows = scored_rows(release, [1.5, 13.0])
    assert one == {
        "output": {"y": -1.0, "confidence": None, "tags": []},
        "model_version": "1.2.3", "degraded": True, "reason": "error",
    }  # fmt: skip
    assert [http_body(r) for r in many.results] == [
        {"output": {"y": 3.0, "confidence": 0.9, "tags": ["none"]},
         "model_version": "1.2.3", "degraded": False, "reason": None},
        one,
    ]  # fmt: skip
    assert [(r["y"], r["model_version"], r["degraded"], r["reason"], r["error"]) for r in rows] == [
        (3.0, "1.2.3", False, None, None),
        (-1.0, "1.2.3", True, "error", None),
    ]
    # both went through Answerer.answer: the batch of two failed, so each item was answered alone
    assert served_calls == [1, 2, 1, 1] and calls == [2, 1, 1]
    assert service.fake_metrics.fallbacks_by_reason == {"error": 2}


def test_without_a_fallback_both_transports_give_no_answer_for_the_same_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = make_release(tmp_path / "release", PIPELINE)
    service = served(release, monkeypatch)
    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append  # type: ignore[method-assign]
    logging.getLogger("nb2prod.service").addHandler(handler)
    try:
        body = http_body(asyncio.run(service.predict_one({"x": 13.0})))
    finally:
        logging.getLogger("nb2prod.service").removeHandler(handler)
    (row,) = scored_rows(release, [13.0])
    assert body == {
        "status": 503,
        "error": "the model could not answer and the notebook defines no fallback",
        "reason": "error",
    }
    assert (row["y"], row["degraded"], row["reason"]) == (None, None, "error")
    assert json.loads(row["error"]) == [
        {
            "field": None,
            "message": "the model could not answer (ValueError: unlucky 13) and the notebook "
            "defines no fallback",
        }
    ]
    assert [r.getMessage() for r in lines] == ["model path failed; the fallback answers"]


@pytest.mark.parametrize(
    ("disabled", "x", "reason"), [(False, 99.0, "low_confidence"), (True, 1.0, "disabled")]
)
def test_low_confidence_and_the_kill_switch_answer_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, disabled: bool, x: float, reason: str
) -> None:
    release = make_release(tmp_path / "release", min_confidence=0.5)
    if disabled:
        monkeypatch.setenv("NB2PROD_MODEL_DISABLED", "1")
    body = http_body(asyncio.run(served(release, monkeypatch).predict_one({"x": x})))
    (row,) = scored_rows(release, [x])
    assert (body["output"]["y"], body["degraded"], body["reason"]) == (-1.0, True, reason)
    assert (row["y"], row["degraded"], row["reason"]) == (-1.0, True, reason)


# ---------------------------------------------------------------- the Answerer itself


def answerer(release: Path, *, scoring: bool) -> Answerer:
    """nb2prod's Answerer around the release's pipeline (circuit breaker: 5 failures)."""
    pipeline = load_scorer(release).pipeline
    return Answerer(
        pipeline, {"factor": 2.0}, service_metadata(), monitoring_plan(), scoring=scoring
    )


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return make_release(tmp_path / "release")


def test_the_circuit_breaker_opens_when_serving_and_never_in_a_batch_job(release: Path) -> None:
    serving, scoring = answerer(release, scoring=False), answerer(release, scoring=True)
    bad, good = serving.pipeline.Input(x=13.0), serving.pipeline.Input(x=1.0)
    for _ in range(5):  # circuit_breaker.failures = 5 in the factory's metadata
        assert serving.answer_now([bad])[0][1] == "error"
        assert scoring.answer_now([bad])[0][1] == "error"
    assert serving.answer_now([good])[0][1] == "circuit_open"
    assert scoring.answer_now([good])[0][1] is None


def test_in_a_batch_only_the_rows_below_min_confidence_get_the_fallback(release: Path) -> None:
    pipeline = load_scorer(release).pipeline
    floor = Answerer(
        pipeline, {"factor": 2.0}, service_metadata(min_confidence=0.5), monitoring_plan(),
        scoring=True,
    )  # fmt: skip
    xs = [1.0, 99.0, 2.0, 99.0]  # y = 198 from 99: its confidence is below 0.5
    answers = floor.answer_now([pipeline.Input(x=x) for x in xs])
    assert [(out.y, reason) for out, reason, _ in answers] == [
        (2.0, None), (-1.0, "low_confidence"), (4.0, None), (-1.0, "low_confidence"),
    ]  # fmt: skip


def test_a_call_over_the_time_budget_gets_the_fallback_and_counts_as_a_failure(
    release: Path,
) -> None:
    serving = answerer(release, scoring=False)
    inputs = [serving.pipeline.Input(x=1.0), serving.pipeline.Input(x=2.0)]

    async def stuck(inputs: list[Any]) -> list[Any]:
        raise OverBudget

    answers = asyncio.run(serving.answer(inputs, stuck))
    assert [(out.y, reason, failure) for out, reason, failure in answers] == [
        (-1.0, "timeout", None),
        (-1.0, "timeout", None),
    ]
    assert serving.guard._consecutive == 1  # one failed call, not one per input


def test_answer_now_needs_no_event_loop_and_works_inside_one(release: Path) -> None:
    scoring = answerer(release, scoring=True)
    inputs = [scoring.pipeline.Input(x=1.0)]

    async def in_a_notebook() -> Any:  # Jupyter's kernel runs an event loop
        return scoring.answer_now(inputs)

    assert asyncio.run(in_a_notebook()) == scoring.answer_now(inputs)
    assert scoring.answer_now(inputs)[0][0].y == 2.0


def test_a_failing_fallback_says_why_briefly_for_http_and_fully_for_batch() -> None:
    failure = Failure(ValueError("bad x=13"), RuntimeError("no rule"))
    assert failure.message("error", detail=False) == (
        "the model could not answer and the fallback failed"
    )
    assert failure.message("error", detail=True) == (
        "the model could not answer (ValueError: bad x=13) and the fallback failed "
        "(RuntimeError: no rule)"
    )
    assert Failure(None, None).message("disabled", detail=True) == (
        "the model is switched off (NB2PROD_MODEL_DISABLED) and the notebook defines no fallback"
    )
