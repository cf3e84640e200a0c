"""Unit tests of what the serving runtime does against hostile clients (issue #23).

Starlette's TestClient drives the runtime's middlewares around small apps; where BentoML's own
middleware matters, a stand-in labels its series with the raw path exactly as BentoML 1.4's
``RunnerTrafficMetricsMiddleware`` does. The served release is tested in tests/e2e/test_hostile.py.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import re
import secrets
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import pytest
from nb2prod.notebook.config import ServiceConfig
from nb2prod.runtime import auth, guard, limits, routes, telemetry
from prometheus_client import CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN = "a-token-of-32-characters-0123456"


# ---------------------------------------------------------------- 1. bounded metric labels


class RawPathMetrics:
    """BentoML 1.4's metrics middleware in small: a counter labelled with ``scope["path"]``."""

    def __init__(self, app: Any, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("requests", "requests", ["endpoint"], registry=registry)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests.labels(endpoint=scope["path"]).inc()
        await self.app(scope, receive, send)


def bentoml_like_app(tmp_path: Path, registry: CollectorRegistry) -> Starlette:
    """BentoML's routes and middleware order: its metrics first, then the service's middlewares."""
    (tmp_path / "index.css").write_text("body {}")

    async def ok(request: Any) -> Any:
        return PlainTextResponse(request.url.path)

    v1 = Starlette(routes=[Route("/metadata", ok)])
    return Starlette(
        routes=[
            Route("/livez", ok), Route("/metrics", ok), Route("/v1/predict", ok, methods=["POST"]),
            Mount("/v1", v1), Mount("/static_content", StaticFiles(directory=tmp_path)),
        ],
        middleware=[
            Middleware(RawPathMetrics, registry=registry), Middleware(routes.BoundedLabels),
        ],
    )  # fmt: skip


def test_random_paths_share_one_metric_label(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    with TestClient(bentoml_like_app(tmp_path, registry)) as client:  # runs the lifespan
        client.get("/first-unknown")
        before = generate_latest(registry)
        for i in range(3000):
            prefix = ("", "/v1", "/static_content", "/v1/predict")[i % 4]
            client.get(f"{prefix}/{secrets.token_hex(8)}")
        after = generate_latest(registry)
        # the routes below BentoML's middlewares see the path that was sent
        assert client.get("/static_content/index.css").text == "body {}"
        assert client.get("/v1/metadata").text == "/v1/metadata"
        assert client.post("/v1/predict").text == "/v1/predict"
        assert client.get("/livez?x=1").text == "/livez"
    endpoints = {
        s.labels["endpoint"]
        for m in registry.collect()
        for s in m.samples
        if "endpoint" in s.labels
    }
    assert endpoints == {
        "/{unmatched}", "/static_content/{path}", "/v1/metadata", "/v1/predict", "/livez"
    }  # fmt: skip
    assert len(after.splitlines()) == len(before.splitlines()) + 2  # the static label, created
    assert len(after) < len(before) + 200


def test_labels_are_routes_or_one_shared_label() -> None:
    assert routes.label("/v1/predict") == "/v1/predict"
    assert routes.label("/metrics") == "/metrics"
    assert routes.label("/static_content/a.css") == "/static_content/{path}"
    for path in ("/v1/predict/", "/V1/predict", "//v1/predict", "/v1", "/x" * 500, "/%00"):
        assert routes.label(path) == routes.UNMATCHED


# ---------------------------------------------------------------- 2. body and batch limits


def run_asgi(app: Any, scope: dict[str, Any], chunks: list[bytes]) -> tuple[int, Any, int]:
    """(status, JSON body, how many times the app read from receive)."""
    sent: list[dict[str, Any]] = []
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if reads > len(chunks):
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": chunks[reads - 1], "more_body": reads < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), reads


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    await JSONResponse({"bytes": len(message["body"])})(scope, receive, send)


def post(path: str, length: int | None = None) -> dict[str, Any]:
    headers = [(b"content-length", str(length).encode())] if length is not None else []
    return {"type": "http", "method": "POST", "path": path, "headers": headers}


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    limit = limits.BodyLimit(echo_length, max_bytes=1000, max_rows=10)
    status, body, reads = run_asgi(limit, post("/v1/predict", 84_000_000), [b"x" * 1000])
    assert (status, reads) == (413, 0)
    assert body["error"] == (
        "the request body is 84000000 bytes; this service takes at most 1000 bytes "
        "([service] max_body_bytes)"
    )


def test_a_streamed_body_is_cut_off_at_the_limit() -> None:
    limit = limits.BodyLimit(echo_length, max_bytes=1000, max_rows=10)
    status, body, reads = run_asgi(limit, post("/v1/predict"), [b"x" * 600] * 50)
    assert (status, reads) == (413, 2)  # stopped at the chunk that went over
    assert "has more than 1000 bytes" in body["error"]
    status, body, _ = run_asgi(limit, post("/v1/predict"), [b"x" * 500, b"x" * 500])
    assert (status, body) == (200, {"bytes": 1000})  # at the limit: handed on in one piece


def test_a_batch_over_max_batch_rows_is_refused_after_reading_rows_plus_one_items() -> None:
    rows = 1000
    body = json.dumps({"inputs": [{}] * 1_300_000}).encode()  # 5.2 MB of tiny items
    limit = limits.BodyLimit(echo_length, max_bytes=len(body), max_rows=rows)
    tracemalloc.start()
    start = time.perf_counter()
    status, answer, _ = run_asgi(limit, post("/v1/predict_batch", len(body)), [body])
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert status == 400
    assert answer["detail"] == [
        {"type": "too_long", "loc": ["inputs"],
         "msg": f"List should have at most {rows} items after validation"},
    ]  # fmt: skip
    # the body and its text (two copies), nothing per item: pydantic took seconds and 170 MB
    assert peak < 3 * len(body), peak
    assert seconds < 1.0, seconds
    allowed = json.dumps({"inputs": [{}] * rows}).encode()
    assert run_asgi(limit, post("/v1/predict_batch"), [allowed])[0] == 200


@pytest.mark.parametrize(
    ("body", "more"),
    [
        ('{"inputs": []}', False),
        ('{"inputs": [1, 2, 3]}', False),
        ('{"inputs": [1, 2, 3, 4]}', True),
        ('{"other": [1, 2, 3, 4, 5], "inputs": [{"a": "]"}, [1, [2]], "x,y", null]}', True),
        ('  {\n "inputs" : [ {} , {} , {} , {} ] }', True),
        ('{"inputs": [1, 2], "inputs": [1, 2, 3, 4]}', True),  # a duplicate key over it too
        ('{"inputs": {"a": 1, "b": 2, "c": 3, "d": 4}}', False),  # not a list: pydantic's 400
        ('{"inputs": [1, 2, 3, 4', True),  # enough read to know
        ("not json at all, long enough to be looked at", False),
        ("[1, 2, 3, 4, 5, 6, 7, 8, 9]", False),
    ],
)
def test_batch_exceeds_counts_only_the_inputs(body: str, more: bool) -> None:
    assert limits.batch_exceeds(body.encode(), 3) is more


def test_the_default_body_limit_fits_a_full_batch_of_wide_rows() -> None:
    assert ServiceConfig().body_limit == 1000 * 4096 + 65536
    assert ServiceConfig(max_batch_rows=10).body_limit == 10 * 4096 + 65536
    assert ServiceConfig(max_body_bytes=2048).body_limit == 2048
    with pytest.raises(ValidationError):
        ServiceConfig(max_body_bytes=10)


# ---------------------------------------------------------------- 3. strict JSON types


class Sub(BaseModel):
    z: float


class Flower(BaseModel):
    """A flower."""

    petal_length: float = Field(gt=0, le=10)
    count: int = 1
    wild: bool = False
    sub: Sub | None = None


@pytest.mark.parametrize(
    ("field", "value"),
    [("petal_length", "0_5"), ("petal_length", "5.1"), ("petal_length", True),
     ("count", "3"), ("count", 3.0), ("wild", "true"), ("wild", 1)],
)  # fmt: skip
def test_strict_bodies_refuse_strings_and_booleans_for_numbers(field: str, value: Any) -> None:
    strict = limits.body_model(Flower, "strict")
    body = json.dumps({"petal_length": 1.0, field: value})
    with pytest.raises(ValidationError) as err:
        strict.model_validate_json(body)
    assert [e["loc"] for e in err.value.errors()] == [(field,)]
    assert limits.body_model(Flower, "lax").model_validate_json(body)  # lax: pydantic coerces


def test_strict_bodies_take_an_integer_for_a_float_and_stay_the_contract() -> None:
    strict = limits.body_model(Flower, "strict")
    read = strict.model_validate_json('{"petal_length": 5, "sub": {"z": 1}}')
    assert isinstance(read, Flower) and read.petal_length == 5.0
    with pytest.raises(ValidationError):  # nested models are strict too
        strict.model_validate_json('{"petal_length": 5, "sub": {"z": "1"}}')
    assert strict.model_json_schema() == Flower.model_json_schema()
    lax = limits.body_model(Flower, "lax")
    assert strict.__name__ == lax.__name__ == "Flower" and issubclass(lax, Flower)
    assert lax.model_json_schema() == Flower.model_json_schema()
    with pytest.raises(ValidationError):
        limits.read_json(Flower, '{"petal_length": "1"}', "strict")
    assert limits.read_json(Flower, '{"petal_length": "1"}', "lax").petal_length == 1.0  # type: ignore[attr-defined]


def test_input_types_default_to_strict_and_refuse_other_words() -> None:
    assert ServiceConfig().input_types == "strict"
    assert ServiceConfig(input_types="lax").input_types == "lax"
    with pytest.raises(ValidationError):
        ServiceConfig(input_types="loose")  # type: ignore[arg-type]


# ---------------------------------------------------------------- 4. the kill-switch file


def test_a_kill_switch_path_too_long_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(guard.DISABLE_FILE_ENV, "/tmp/" + "x" * 300)
    with pytest.raises(RuntimeError) as err:
        guard.check_kill_switch("/tmp/default.disabled")
    assert "cannot be checked (File name too long); refusing to start" in str(err.value)
    assert len(str(err.value)) < 400  # the path is shortened, the line stays readable


def deny(monkeypatch: pytest.MonkeyPatch) -> None:
    """stat() answering EACCES, as in a directory the service's user may not search."""

    def stat(self: Path, **kwargs: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "stat", stat)


def test_a_kill_switch_the_service_may_not_check_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    guard.check_kill_switch(str(tmp_path / "missing" / "off"))  # absent: fine, the model is on
    deny(monkeypatch)
    with pytest.raises(RuntimeError) as err:
        guard.check_kill_switch(str(tmp_path / "off"))
    assert "cannot be checked (Permission denied); refusing to start" in str(err.value)


def make_guard(path: Path) -> guard.Guard:
    return guard.Guard(
        timeout_ms=None, min_confidence=None, failures=5, reset_s=1.0, disable_file=str(path)
    )


@pytest.mark.parametrize("error", [errno.EACCES, errno.ENAMETOOLONG])
def test_a_running_service_keeps_the_switch_when_the_file_cannot_be_checked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: int
) -> None:
    switch = tmp_path / "off"
    switch.touch()
    checked = make_guard(switch)
    assert checked.switched_off() and checked.admit() == "disabled"

    def stat(self: Path, **kwargs: Any) -> Any:
        raise OSError(error, "cannot", str(self))

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("nb2prod.service").addHandler(handler)
    monkeypatch.setattr(Path, "stat", stat)
    try:
        for _ in range(100):
            assert checked.switched_off()  # the last known state, never an exception
    finally:
        logging.getLogger("nb2prod.service").removeHandler(handler)
    (record,) = records  # logged once, not once per request
    assert "keeping the model off" in record.getMessage()
    monkeypatch.undo()
    switch.unlink()
    assert not checked.switched_off() and checked.admit() is None


# ---------------------------------------------------------------- 5. auth


async def answered(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await PlainTextResponse("ok")(scope, receive, send)


def bearer_client(monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv(auth.TOKEN_ENV, TOKEN)
    return TestClient(auth.BearerAuth(answered, auth="token"))


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}",
        f"bearer {TOKEN}",
        f"BEARER {TOKEN}",
        f"bEaReR   {TOKEN}",
        f"Bearer\t{TOKEN}",
    ],
)
def test_the_bearer_scheme_is_case_insensitive(
    monkeypatch: pytest.MonkeyPatch, header: str
) -> None:
    client = bearer_client(monkeypatch)
    assert client.get("/v1/metadata", headers={"Authorization": header}).status_code == 200


@pytest.mark.parametrize(
    "header", [TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", "Bearer", ""]
)
def test_anything_but_the_token_is_refused(monkeypatch: pytest.MonkeyPatch, header: str) -> None:
    client = bearer_client(monkeypatch)
    response = client.get("/v1/metadata", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="nb2prod"'


def test_only_the_documented_routes_are_open(monkeypatch: pytest.MonkeyPatch) -> None:
    client = bearer_client(monkeypatch)
    candidates = [
        *routes.OPEN, "/static_content/index.css", "/v1/predict", "/v1/predict_batch",
        "/v1/metadata", "/v1", "/v1/", "/nope", "/V1/predict", "//v1/predict", "/docs.json/",
        "/metrics/", "/static_content", "/livez/../v1/predict", "/v2/health/ready",
        "/v2/models/m", "/v2/models/m/infer", "/v2/health/ready/", "/v2/health",
    ]  # fmt: skip
    open_paths = {p for p in candidates if client.get(p).status_code != 401}
    assert open_paths == {
        "/", "/docs.json", "/schema.json", "/healthz", "/livez", "/readyz", "/metrics",
        "/static_content/index.css", "/v2/health/live", "/v2/health/ready",
    }  # fmt: skip


@pytest.mark.parametrize("length", [1, 8, 15])
def test_a_short_token_is_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, length: int
) -> None:
    monkeypatch.setenv(auth.TOKEN_ENV, "t" * length)
    with pytest.raises(RuntimeError) as err:
        auth.api_token("token")
    assert f"{auth.TOKEN_ENV} has {length} characters" in str(err.value)
    assert "shorter than 16" in str(err.value)
    token_file = tmp_path / "token"
    token_file.write_text("s" * length + "\n")
    monkeypatch.delenv(auth.TOKEN_ENV)
    monkeypatch.setenv(auth.TOKEN_FILE_ENV, str(token_file))
    with pytest.raises(RuntimeError) as err:
        auth.api_token("token")
    assert f"{token_file} has {length} characters" in str(err.value)


def test_a_token_of_16_characters_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(auth.TOKEN_ENV, " " + "t" * 16 + "\n")
    assert auth.api_token("token") == b"t" * 16


def test_redaction_ignores_the_case_and_spaces_of_keys() -> None:
    body = {
        "EMAIL": "a@b", " Email ": "c@d", "inputs": [{"eMail\t": "e@f", "x": 1}],
        "emails": "kept", "x": {"email": "g@h"},
    }  # fmt: skip
    redacted = telemetry.redact(body, frozenset({"email"}))
    assert redacted == {
        "EMAIL": "[REDACTED]", " Email ": "[REDACTED]",
        "inputs": [{"eMail\t": "[REDACTED]", "x": 1}], "emails": "kept",
        "x": {"email": "[REDACTED]"},
    }  # fmt: skip


# ---------------------------------------------------------------- 6. series that exist from start


def test_every_known_series_exists_before_the_first_request() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from tests.test_service_runtime import MONITORING

    telemetry.metrics(MONITORING).expect_invalid(["x", "c", "email"])
    found = {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")))
        for family in text_string_to_metric_families(generate_latest().decode())
        for s in family.samples
    }
    for stage in telemetry.STAGES:
        assert ("nb2prod_stage_duration_seconds_bucket", (("stage", stage),)) in found
    for field in ("x", "c"):  # the fields with a drift reference
        assert ("nb2prod_input_drift_psi", (("field", field),)) in found
        assert ("nb2prod_input_drift_observations", (("field", field),)) in found
    for route in ("/v1/predict", "/v1/predict_batch"):
        for field in ("x", "c", "email", "(other)", "(body)"):
            labels = (("field", field), ("route", route))
            assert ("nb2prod_validation_failures_total", labels) in found


def test_the_dashboard_queries_only_series_that_exist_from_start() -> None:
    from nb2prod.ops.dashboard import dashboard, queries
    from nb2prod.ops.slo import observed

    from tests.test_service_runtime import MONITORING

    telemetry.metrics(MONITORING).expect_invalid(["x", "c", "email"])
    telemetry.worker_resources()  # what each worker's InFlight middleware makes as it starts
    exported = {
        line.split("{")[0].split(" ")[0]
        for line in generate_latest().decode().splitlines()
        if line.startswith("nb2prod_")
    }
    board = dashboard(observed("svc", "1.0.0", MONITORING, {}, ()))
    queried = {name for q in queries(board) for name in re.findall(r"\b(nb2prod_\w+)", q)}
    # nb2prod_release_info is set by the service when it starts (tests/e2e/test_hostile.py)
    assert queried - exported == {"nb2prod_release_info"}
    undrifted = MONITORING.model_copy(
        update={"drift": MONITORING.drift.model_copy(update={"fields": {}})}
    )
    board = dashboard(observed("svc", "1.0.0", undrifted, {}, ()))
    assert not any("nb2prod_input_drift_psi" in q for q in queries(board))
