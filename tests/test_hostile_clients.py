"""Unit tests of what the serving runtime does against hostile clients (issue #23).

Starlette's TestClient drives the runtime's middlewares around small apps; where BentoML's own
middleware matters, a stand-in labels its series with the raw path exactly as BentoML 1.4's
``RunnerTrafficMetricsMiddleware`` does. The served release is tested in tests/e2e/test_hostile.py.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
import warnings
from typing import Any

import pytest
from nb2prod.notebook.config import ServiceConfig
from nb2prod.runtime import limits
from pydantic import BaseModel, Field, ValidationError
from starlette.responses import JSONResponse

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works the same
    warnings.simplefilter("ignore")

TOKEN = "a-token-of-32-characters-0123456"


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
    assert strict.__name__ == "Flower" and limits.body_model(Flower, "lax") is Flower
    with pytest.raises(ValidationError):
        limits.read_json(Flower, '{"petal_length": "1"}', "strict")
    assert limits.read_json(Flower, '{"petal_length": "1"}', "lax").petal_length == 1.0  # type: ignore[attr-defined]


def test_input_types_default_to_strict_and_refuse_other_words() -> None:
    assert ServiceConfig().input_types == "strict"
    assert ServiceConfig(input_types="lax").input_types == "lax"
    with pytest.raises(ValidationError):
        ServiceConfig(input_types="loose")  # type: ignore[arg-type]
