"""runtime/v1.py: the lean /v1 app and the fast lane, driven as ASGI apps (a fake service)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from nb2prod.runtime import limits, routes, v1
from pydantic import BaseModel, ValidationError, create_model


class Input(BaseModel):
    x: float
    tag: str | None = None


class Output(BaseModel):
    y: float


BODY = limits.body_model(Input, "strict")
BATCH = limits.body_model(create_model("BatchRequest", inputs=(list[BODY], ...)), "strict")  # type: ignore[valid-type]


class Envelope(BaseModel):
    output: Output
    degraded: bool


class FakeService:
    def __init__(self) -> None:
        self.calls: list[Any] = []

    async def predict_one(self, fields: dict[str, Any]) -> Any:
        self.calls.append(fields)
        if fields["x"] == 13:
            raise RuntimeError("a bug below the route")
        if fields["x"] == 99:
            from starlette.responses import JSONResponse

            return JSONResponse({"error": "no answer", "reason": "error"}, status_code=503)
        return Envelope(output=Output(y=fields["x"] * 2), degraded=False)

    async def predict_many(self, inputs: list[Any]) -> Any:
        self.calls.append(inputs)
        results = [Envelope(output=Output(y=i.x * 2), degraded=False) for i in inputs]
        return create_model("BatchResult", results=(list[Envelope], ...))(results=results)


def call(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "root_path": ""}
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def app(service: FakeService) -> v1.App:
    return v1.App(BODY, BATCH, lambda: service, lambda: {"name": "demo", "version": "1.0.0"})


def test_predict_validates_the_body_once_and_answers_the_services_envelope(
    app: v1.App, service: FakeService
) -> None:
    status, headers, body = call(app, "POST", "/v1/predict", b'{"x": 2.5}')
    assert status == 200 and headers["content-type"] == "application/json"
    assert json.loads(body) == {"output": {"y": 5.0}, "degraded": False}
    assert int(headers["content-length"]) == len(body)
    assert service.calls == [{"x": 2.5, "tag": None}]


def test_a_400_is_the_one_bentomls_route_gave(app: v1.App, service: FakeService) -> None:
    from _bentoml_sdk.io_models import ensure_io_descriptor

    sent = b'{"x": "2.5", "tag": 3}'  # strict JSON types: a string is not a number
    status, _, body = call(app, "POST", "/v1/predict", sent)
    with pytest.raises(ValidationError) as bentoml_said:
        ensure_io_descriptor(BODY).model_validate_json(sent)
    exc = bentoml_said.value
    assert status == 400
    assert json.loads(body) == {
        "error": f"{exc.error_count()} validation error for {exc.title}",
        "detail": json.loads(json.dumps(exc.errors(include_context=False, include_input=False))),
    }
    assert json.loads(body)["error"] == "2 validation error for Input"  # BentoML's words, kept
    assert service.calls == []  # the model path never saw it


def test_not_json_is_a_400_naming_it(app: v1.App) -> None:
    status, _, body = call(app, "POST", "/v1/predict", b"x=1")
    assert status == 400 and json.loads(body)["detail"][0]["type"] == "json_invalid"


def test_a_batch_answers_each_input_in_order(app: v1.App, service: FakeService) -> None:
    status, _, body = call(app, "POST", "/v1/predict_batch", b'{"inputs": [{"x": 1}, {"x": 2}]}')
    assert status == 200
    assert [r["output"]["y"] for r in json.loads(body)["results"]] == [2.0, 4.0]
    status, _, body = call(app, "POST", "/v1/predict_batch", b'{"inputs": [{"x": "1"}]}')
    assert status == 400 and json.loads(body)["detail"][0]["loc"] == ["inputs", 0, "x"]


def test_a_response_from_the_service_is_sent_as_it_is(app: v1.App) -> None:
    status, _, body = call(app, "POST", "/v1/predict", b'{"x": 99}')
    assert status == 503 and json.loads(body) == {"error": "no answer", "reason": "error"}


def test_a_bug_below_the_route_is_a_500_that_says_so_and_is_logged(
    app: v1.App, caplog: pytest.LogCaptureFixture
) -> None:
    status, _, body = call(app, "POST", "/v1/predict", b'{"x": 13}')
    assert status == 500 and "internal error in the /v1 route" in json.loads(body)["error"]
    assert "a bug below the route" in caplog.text


def test_metadata_and_the_methods_each_route_answers(app: v1.App) -> None:
    status, _, body = call(app, "GET", "/v1/metadata")
    assert status == 200 and json.loads(body) == {"name": "demo", "version": "1.0.0"}
    status, headers, body = call(app, "HEAD", "/v1/metadata")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    status, headers, _ = call(app, "GET", "/v1/predict")
    assert status == 405 and headers["allow"] == "POST"
    assert call(app, "POST", "/v1/metadata")[0] == 405


def test_the_lane_takes_only_the_v1_routes() -> None:
    seen: list[str] = []

    def recorder(name: str) -> Any:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            seen.append(f"{name} {scope['path']}")
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        return app

    lane = v1.FastLane(recorder("bentoml"), recorder("lane"))
    for path in ("/v1/predict", "/v1/predict_batch", "/v1/metadata", "/v1/other", "/metrics",
                 "/v2/models/m/infer", "/v1/predict/"):  # fmt: skip
        call(lane, "POST", path)
    assert seen == [
        "lane /v1/predict", "lane /v1/predict_batch", "lane /v1/metadata", "bentoml /v1/other",
        "bentoml /metrics", "bentoml /v2/models/m/infer", "bentoml /v1/predict/",
    ]  # fmt: skip


def test_the_lane_is_installed_outside_the_stack_once() -> None:
    class Built:
        middleware_stack: Any = object()

    app, built = Built(), []

    def lane() -> Any:
        built.append(1)
        return object()

    stack = app.middleware_stack
    assert routes.install_outside(app, lane) and routes.install_outside(app, lane)
    assert isinstance(app.middleware_stack, v1.FastLane) and built == [1]
    assert isinstance(app.middleware_stack.app, routes._ShowLabel)
    assert app.middleware_stack.app.app is stack


def test_chain_puts_the_first_middleware_outermost() -> None:
    class Layer:
        def __init__(self, app: Any, name: str) -> None:
            self.app, self.name = app, name

    inner = object()
    built = v1.chain(inner, [(Layer, {"name": "outer"}), (Layer, {"name": "inner"})])
    assert built.name == "outer" and built.app.name == "inner" and built.app.app is inner
