"""Unit tests of the serving runtime every release carries (nb2prod.runtime).

Imported as the package it is; fakes stand in for the ASGI app and the metrics. The served
behaviour is tested end to end in tests/e2e.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
from types import SimpleNamespace
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nb2prod.runtime import auth, guard, openapi, telemetry, v2
from nb2prod.runtime.schema import MonitoringPlan
from prometheus_client import CollectorRegistry, Histogram
from pydantic import BaseModel, Field

MONITORING = MonitoringPlan.model_validate(
    {
        "sensitive": ["email"],
        "outputs": {
            "label": {"kind": "categorical", "values": ["a", "b"]},
            "score": {"kind": "numeric", "buckets": [0.25, 0.5, 0.75, 1.0]},
        },
        "drift": {
            "window": 100,
            "fields": {
                "x": {
                    "kind": "numeric",
                    "edges": [1.0, 2.0, 3.0],
                    "expected": [0.25, 0.25, 0.25, 0.25],
                },
                "c": {"kind": "categorical", "categories": ["de", "fr"], "expected": [0.5, 0.5]},
            },
        },
        "batching": {"enabled": True, "why": ""},
    }
)


def test_redact_replaces_sensitive_values_at_any_depth() -> None:
    body = {"inputs": [{"email": "a@b", "x": 1}, {"email": "c@d", "x": 2}], "email": "e@f"}
    assert telemetry.redact(body, frozenset({"email"})) == {
        "inputs": [{"email": "[REDACTED]", "x": 1}, {"email": "[REDACTED]", "x": 2}],
        "email": "[REDACTED]",
    }


def test_log_failure_scrubs_sensitive_values_from_the_error_and_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.nb2prod.failure")
    inp = SimpleNamespace(email="bob.secret@example.org", x=1.0)
    try:
        raise ValueError(f"cannot parse {inp.email}")
    except ValueError as exc:
        with caplog.at_level(logging.ERROR, logger=logger.name):
            telemetry.log_failure(logger, "model path failed", exc, [inp], frozenset({"email"}))
    record = caplog.records[-1]
    assert record.fields["error"] == "ValueError: cannot parse [REDACTED]"  # type: ignore[attr-defined]
    assert "bob.secret" not in json.dumps(record.fields)  # type: ignore[attr-defined]


def test_psi_is_zero_for_the_reference_and_large_for_a_shifted_distribution() -> None:
    assert telemetry.psi([0.25] * 4, [25, 25, 25, 25], 100) == pytest.approx(0.0)
    assert telemetry.psi([0.25] * 4, [0, 0, 0, 100], 100) > 2.0


class FakeGauge:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def labels(self, field: str) -> Any:
        return SimpleNamespace(set=lambda value: self.values.__setitem__(field, value))


def fake_metrics(psi: FakeGauge, observations: FakeGauge) -> Any:
    """What Drift uses of Metrics: the two gauges, their children by label."""
    return SimpleNamespace(
        drift=psi,
        drift_observations=observations,
        child=lambda metric, *values: metric.labels(*values),
    )


def drift() -> tuple[Any, FakeGauge, FakeGauge]:
    psi, observations = FakeGauge(), FakeGauge()
    metrics = fake_metrics(psi, observations)
    return telemetry.Drift(MONITORING.drift, metrics, every=10), psi, observations


def test_drift_window_slides_and_scores_skew() -> None:
    monitor, psi, observations = drift()
    calm = [
        SimpleNamespace(x=v, c=c)
        for v, c in zip([0.5, 1.5, 2.5, 3.5] * 25, ["de", "fr"] * 50, strict=True)
    ]
    for start in range(0, 100, 4):
        monitor.observe(calm[start : start + 4])
    monitor.publish()
    assert observations.values == {"x": 100, "c": 100}
    assert psi.values["x"] == pytest.approx(0.0) and psi.values["c"] == pytest.approx(0.0)
    for _ in range(25):  # the window is 100: these push every calm value out
        monitor.observe([SimpleNamespace(x=9.0, c="it")] * 4)
    monitor.publish()
    spec = monitor.specs["x"]
    assert sum(spec["counts"]) == len(spec["window"]) == 100
    assert spec["counts"] == [0, 0, 0, 100]
    assert psi.values["x"] > 2.0
    assert monitor.specs["c"]["counts"] == [0, 0, 100]  # an unseen category counts as "other"
    assert psi.values["c"] > 2.0


@settings(max_examples=150, deadline=None)
@given(
    window=st.integers(min_value=1, max_value=12),
    batches=st.lists(
        st.lists(st.one_of(st.none(), st.floats(0, 4), st.sampled_from(["de", "fr", "it"]))),
        max_size=8,
    ),
)
def test_the_drift_window_holds_the_last_values_and_counts_them(
    window: int, batches: list[list[Any]]
) -> None:
    plan = MONITORING.drift.model_copy(update={"window": window})
    metrics = fake_metrics(FakeGauge(), FakeGauge())
    monitor = telemetry.Drift(plan, metrics, every=10**9)
    seen: dict[str, list[int]] = {"x": [], "c": []}
    for batch in batches:
        rows = [
            SimpleNamespace(
                x=v if isinstance(v, float) else None, c=v if isinstance(v, str) else None
            )
            for v in batch
        ]
        monitor.observe(rows)
        sampled = rows[:: -(-len(rows) // telemetry.DRIFT_ROWS_PER_CALL)] if rows else rows
        for row in sampled:  # what a one-value-at-a-time window would hold
            if row.x is not None:
                seen["x"].append(bisect.bisect_left([1.0, 2.0, 3.0], row.x))
            if row.c is not None:
                seen["c"].append({"de": 0, "fr": 1}.get(row.c, 2))
    for name, spec in monitor.specs.items():
        last = seen[name][-window:]
        assert list(spec["window"]) == last
        assert spec["counts"] == [last.count(i) for i in range(len(spec["counts"]))]


def test_drift_samples_large_batches_and_waits_for_enough_values() -> None:
    monitor, psi, observations = drift()
    monitor.observe([SimpleNamespace(x=1.0, c="de")] * 320)
    monitor.publish()
    assert observations.values["x"] == telemetry.DRIFT_ROWS_PER_CALL
    assert psi.values == {}  # fewer than MIN_DRIFT_OBSERVATIONS values: no score yet


def test_observe_many_matches_observe_one_by_one() -> None:
    values = [0.1, 0.25, 0.3, 0.5, 0.99, 1.0, 7.0]
    one, many = CollectorRegistry(), CollectorRegistry()
    single = Histogram("h", "h", buckets=[0.25, 0.5, 1.0], registry=one)
    for value in values:
        single.observe(value)
    telemetry.observe_many(Histogram("h", "h", buckets=[0.25, 0.5, 1.0], registry=many), values)

    def samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        ]

    assert samples(many) == samples(one)


def run_observe(
    scope_extra: dict[str, Any], status: int, response: bytes, request: bytes = b"{}", **kwargs: Any
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Drive Observe around a fake app; (messages sent, JSON log lines)."""
    sent: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        telemetry.note_outcome("degraded", "timeout") if status == 299 else None
        await send(
            {
                "type": "http.response.start",
                "status": 200 if status == 299 else status,
                "headers": [],
            }
        )
        await send({"type": "http.response.body", "body": response})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": request, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    observe = telemetry.Observe(
        app,
        monitoring=MONITORING,
        input_fields=["x", "c", "email"],
        model_version="1.2.3",
        log_bodies=kwargs.get("log_bodies", False),
    )
    lines: list[dict[str, Any]] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(json.loads(telemetry.JsonFormatter().format(record)))  # type: ignore[method-assign]
    access = logging.getLogger("nb2prod.access")
    access.addHandler(handler)
    try:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/predict",
            "headers": [],
            **scope_extra,
        }
        asyncio.run(observe(scope, receive, send))
    finally:
        access.removeHandler(handler)
    return sent, lines


def test_observe_returns_a_given_request_id_and_logs_one_line() -> None:
    sent, lines = run_observe({"headers": [(b"x-request-id", b"abc-1")]}, 200, b"{}")
    assert (b"x-request-id", b"abc-1") in sent[0]["headers"]
    (line,) = lines
    assert line["request_id"] == "abc-1"
    assert {k: line[k] for k in ("route", "status", "model_version", "outcome")} == {
        "route": "/v1/predict", "status": 200, "model_version": "1.2.3", "outcome": "ok",
    }  # fmt: skip
    assert "request_body" not in line  # bodies are off by default


def test_observe_replaces_an_unusable_request_id() -> None:
    sent, lines = run_observe({"headers": [(b"x-request-id", b"bad id\n" * 40)]}, 200, b"{}")
    given = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert len(given) == 32 and lines[0]["request_id"] == given


def test_observe_records_the_outcome_the_handler_notes() -> None:
    _, lines = run_observe({}, 299, b"{}")
    assert lines[0]["outcome"] == "degraded" and lines[0]["reason"] == "timeout"


def test_observe_names_invalid_fields_and_redacts_bodies() -> None:
    error = {
        "error": "1 validation error",
        "detail": [{"loc": ["email"], "msg": "bad", "type": "x"}],
    }
    _, lines = run_observe(
        {}, 400, json.dumps(error).encode(),
        request=json.dumps({"x": 1, "c": "de", "email": "s3cret@x"}).encode(), log_bodies=True,
    )  # fmt: skip
    (line,) = lines
    assert line["outcome"] == "invalid" and line["invalid_fields"] == ["email"]
    assert line["request_body"] == {"x": 1, "c": "de", "email": "[REDACTED]"}
    assert "s3cret" not in json.dumps(line)


def test_routes_outside_v1_pass_through_untouched() -> None:
    sent, lines = run_observe({"path": "/readyz"}, 200, b"ok")
    assert sent[0]["headers"] == [] and lines == []


def test_the_batcher_groups_only_what_waits_for_a_busy_model() -> None:
    calls: list[list[int]] = []

    async def run_batch(items: list[int]) -> list[int]:
        calls.append(items)
        await asyncio.sleep(0.05)
        return [i * 10 for i in items]

    async def scenario() -> list[int]:
        batcher = guard.Batcher(run_batch, max_size=3, max_in_flight=1)
        first = batcher.enqueue(1)
        await asyncio.sleep(0.01)  # the first call is in the model now
        rest = [batcher.enqueue(i) for i in (2, 3, 4, 5)]
        return [await first] + [await task for task in rest]

    assert asyncio.run(scenario()) == [10, 20, 30, 40, 50]
    assert calls == [[1], [2, 3, 4], [5]]


def test_a_stuck_call_does_not_hold_up_requests_while_slots_are_free() -> None:
    async def run_batch(items: list[float]) -> list[float]:
        await asyncio.sleep(max(items))
        return items

    async def scenario() -> float:
        batcher = guard.Batcher(run_batch, max_size=8, max_in_flight=2)
        stuck = batcher.enqueue(5.0)
        await asyncio.sleep(0.01)
        start = asyncio.get_running_loop().time()
        assert await batcher.enqueue(0.01) == 0.01
        elapsed = asyncio.get_running_loop().time() - start
        stuck.cancel()
        return elapsed

    assert asyncio.run(scenario()) < 1.0


def test_a_failing_batch_fails_only_its_own_waiters() -> None:
    async def run_batch(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        if 2 in items:
            raise RuntimeError("boom")
        return items

    async def scenario() -> tuple[Any, ...]:
        batcher = guard.Batcher(run_batch, max_size=1, max_in_flight=1)
        tasks = [batcher.enqueue(i) for i in (1, 2, 3)]
        return tuple(await asyncio.gather(*tasks, return_exceptions=True))

    one, two, three = asyncio.run(scenario())
    assert (one, three) == (1, 3) and isinstance(two, RuntimeError)


class _Answer(BaseModel):
    label: Literal["a", "b"]
    score: float = Field(ge=0, le=1)


class _Nested(BaseModel):
    y: int = Field(lt=5)


class _Input(BaseModel):
    x: float = Field(gt=0, le=10)
    c: float | None = Field(default=None, ge=0)
    k: Literal["fixed"] = "fixed"
    o: _Nested | None = None


def _document(auth: bool) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    one = openapi.examples_of(
        [{"index": 0, "input": {"x": 1.5, "c": None, "k": "fixed"},
          "output": {"label": "a", "score": 0.9}},
         {"index": 3, "input": {"x": 9.0, "c": 2.0, "k": "fixed", "o": {"y": 1}},
          "output": {"label": "b", "score": 0.1}},
         {"index": 4, "input": "not an example"}],
        lambda out: out,
    )  # fmt: skip
    v1 = {
        "/v1/predict": {"post": openapi.operation(
            "predict", "s", _Input.model_json_schema(), _Answer.model_json_schema(), defs, auth,
            examples=one,
        )},
        "/v1/metadata": {"get": openapi.operation("metadata", "m", None, {"type": "object"},
                                                  defs, auth)},
    }  # fmt: skip
    v1.update(v2.paths(v2.Model("m", "1.0.0", v2.tensors(_Input), v2.tensors(_Answer)), auth,
                       [({"x": 1.5, "c": None, "k": "fixed"}, {"label": "a", "score": 0.9})]))  # fmt: skip
    return openapi.document(title="t", version="1.0.0", description="d", routes=v1, defs=defs,
                            auth=auth)  # fmt: skip


@pytest.mark.parametrize("auth", [True, False])
def test_the_document_is_valid_openapi_3_1_with_pydantic_schemas_kept(auth: bool) -> None:
    from openapi_spec_validator import validate

    document = _document(auth)
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on an invalid document (BentoML's own fails this)
    body = document["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    props = body["schema"]["properties"]
    # JSON Schema 2020-12 as pydantic wrote it: numeric exclusive bounds, null in the union, const
    assert props["x"]["exclusiveMinimum"] == 0 and props["x"]["maximum"] == 10
    assert {"type": "null"} in props["c"]["anyOf"]
    assert props["k"]["const"] == "fixed"
    assert "$defs" not in json.dumps(document)
    assert set(document["components"]["schemas"]) == {"_Nested"}
    post = document["paths"]["/v1/predict"]["post"]
    expected = {"200", "400", "413", "415", "503"} | ({"401"} if auth else set())
    assert set(post["responses"]) == expected
    assert ("security" in post) is auth
    assert ("securitySchemes" in document["components"]) is auth
    assert {"/livez", "/readyz", "/metrics", "/v1/predict", "/v1/metadata", "/v2/health/live",
            "/v2/health/ready", "/v2/models/m", "/v2/models/m/ready", "/v2/models/m/infer"} == set(
        document["paths"]
    )  # fmt: skip
    infer = document["paths"]["/v2/models/m/infer"]["post"]
    assert ("401" in infer["responses"]) is auth
    assert "security" not in document["paths"]["/v2/health/ready"]["get"]
    example = infer["requestBody"]["content"]["application/json"]["example"]
    assert {t["name"]: t["data"] for t in example["inputs"]} == {
        "x": [1.5], "c": ["null"], "k": ["fixed"], "o": ["null"]}  # fmt: skip


def test_every_example_is_valid_against_the_schema_it_illustrates() -> None:
    from jsonschema import Draft202012Validator

    document = _document(auth=True)
    post = document["paths"]["/v1/predict"]["post"]
    request = post["requestBody"]["content"]["application/json"]
    response = post["responses"]["200"]["content"]["application/json"]
    assert set(request["examples"]) == {"example0", "example3"}  # the malformed one is left out
    assert set(response["examples"]) == {"example0", "example3"}
    for media in (request, response):
        validator = Draft202012Validator({**media["schema"], "components": document["components"]})
        for example in media["examples"].values():
            validator.validate(example["value"])
    assert request["examples"]["example3"]["value"]["o"] == {"y": 1}
    assert response["examples"]["example3"]["value"] == {"label": "b", "score": 0.1}
    with pytest.raises(Exception, match="is not valid under any of the given schemas"):
        Draft202012Validator({**request["schema"], "components": document["components"]}).validate(
            {"x": 1.0, "o": {"y": 7}}
        )


def test_json_only_refuses_other_media_types() -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    guard = auth.JsonOnly(app)
    for content_type, status in (
        (b"multipart/form-data", 415),
        (b"application/json; charset=utf-8", 200),
        (None, 200),
    ):
        sent.clear()
        headers = [(b"content-type", content_type)] if content_type else []
        scope = {"type": "http", "method": "POST", "path": "/v1/predict", "headers": headers}
        asyncio.run(guard(scope, None, send))
        assert sent[0]["status"] == status, content_type


@pytest.mark.parametrize("input_types", ["strict", "lax"])
def test_a_400_names_the_contract_class_not_bentomls_descriptor(input_types: str) -> None:
    # BentoML validates bodies with a subclass it names <class>IODescriptor, and its 400 says
    # f"{exc.error_count()} validation error for {exc.title}" (_bentoml_impl/server/app.py)
    from _bentoml_sdk.io_models import ensure_io_descriptor
    from nb2prod.runtime import limits
    from pydantic import BaseModel, ValidationError, create_model

    class Input(BaseModel):
        x: float

    batch = create_model("BatchRequest", inputs=(list[Input], ...))
    for model, body, title, loc in [
        (Input, '{"x": "a"}', "Input", ("x",)),
        (batch, '{"inputs": [{"x": "a"}]}', "BatchRequest", ("inputs", 0, "x")),
    ]:
        descriptor = ensure_io_descriptor(limits.body_model(model, input_types))
        assert descriptor.__name__.endswith("IODescriptor")
        with pytest.raises(ValidationError) as err:
            descriptor.model_validate_json(body)
        assert f"{err.value.error_count()} validation error for {err.value.title}" == (
            f"1 validation error for {title}"
        )
        assert err.value.errors()[0]["loc"] == loc


def test_answers_are_counted_per_known_value_and_the_rest_as_other() -> None:
    from prometheus_client import REGISTRY

    metrics = telemetry.metrics(MONITORING)

    def count(value: str) -> float:
        found = REGISTRY.get_sample_value(
            "nb2prod_predictions_total", {"field": "label", "value": value}
        )
        return found or 0.0

    before = {v: count(v) for v in ("a", "b", "other")}
    labels = ["a", "b", "a", "zz", None, ["not", "hashable"], "a"]
    metrics.observe_outputs([SimpleNamespace(label=v, score=0.3) for v in labels])
    assert {v: count(v) - before[v] for v in before} == {"a": 3, "b": 1, "other": 3}


def test_true_and_1_are_two_labels_though_one_dict_key() -> None:
    tally = telemetry._tally([True, 1, 1, "1"])
    assert sorted(tally.values()) == [1, 1, 2]
    assert tally[(bool, True)] == 1 and tally[(int, 1)] == 2
