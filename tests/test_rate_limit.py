"""The per-client rate limit of the serving runtime (runtime/limits.py RateLimit).

Starlette's TestClient drives the middleware around a small app, with a clock the test moves; the
served release answering 429 is tests/e2e/test_hostile.py's."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from nb2prod.errors import ConfigError
from nb2prod.notebook.config import load_config_file
from nb2prod.runtime import limits
from nb2prod.runtime.schema import RateLimit
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TOKEN_A = "token-a-of-more-than-16-chars"
TOKEN_B = "token-b-of-more-than-16-chars"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited(limit: RateLimit | None, clock: Clock, **kw: Any) -> TestClient:
    async def ok(request: Any) -> Any:
        return PlainTextResponse("ok")

    paths = ["/v1/predict", "/v2/infer", "/livez", "/readyz", "/metrics", "/docs.json", "/nope"]
    app = Starlette(
        routes=[Route(p, ok, methods=["GET", "POST"]) for p in paths],
        middleware=[Middleware(limits.RateLimit, limit=limit, clock=clock, **kw)],
    )
    return TestClient(app)


def statuses(client: TestClient, n: int, path: str = "/v1/predict", **kw: Any) -> list[int]:
    return [client.post(path, **kw).status_code for _ in range(n)]


def test_a_burst_passes_then_429_with_retry_after() -> None:
    clock = Clock()
    client = limited(RateLimit(requests_per_s=2, burst=3), clock)
    assert statuses(client, 3) == [200, 200, 200]
    refused = client.post("/v1/predict")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"  # half a second to the next token: 1 s
    assert refused.headers["content-type"] == "application/json"
    error = refused.json()["error"]
    assert "2 requests/s per client" in error and "[service] rate_limit" in error


def test_the_bucket_refills_at_the_rate_and_never_above_the_burst() -> None:
    clock = Clock()
    client = limited(RateLimit(requests_per_s=0.5, burst=2), clock)
    assert statuses(client, 3) == [200, 200, 429]
    assert client.post("/v1/predict").headers["retry-after"] == "2"  # 1 token at 0.5/s
    clock.now += 2.0  # one token back
    assert statuses(client, 2) == [200, 429]
    clock.now += 3600  # an hour idle: still only `burst` requests at once
    assert statuses(client, 3) == [200, 200, 429]


def test_retry_after_counts_the_seconds_until_a_token() -> None:
    clock = Clock()
    client = limited(RateLimit(requests_per_s=0.1, burst=1), clock)
    assert statuses(client, 1) == [200]
    assert client.post("/v1/predict").headers["retry-after"] == "10"
    clock.now += 7.5
    assert client.post("/v1/predict").headers["retry-after"] == "3"  # 2.5 s left, rounded up
    clock.now += 2.5
    assert statuses(client, 1) == [200]


def test_refused_requests_do_not_fill_the_bucket_further_into_debt() -> None:
    clock = Clock()
    client = limited(RateLimit(requests_per_s=1, burst=1), clock)
    assert statuses(client, 10) == [200] + [429] * 9
    clock.now += 1.0
    assert statuses(client, 1) == [200]  # 9 refusals cost nothing


def test_each_client_address_has_its_own_bucket() -> None:
    clock = Clock()
    limiter = limits.RateLimit(None, limit=RateLimit(requests_per_s=1, burst=1), clock=clock)
    assert limiter.take(b"address:10.0.0.1") == 0
    assert limiter.take(b"address:10.0.0.1") > 0
    assert limiter.take(b"address:10.0.0.2") == 0  # another client: a full bucket


@pytest.mark.parametrize(
    ("key", "scope", "expected"),
    [
        ("address", {"client": ("10.1.2.3", 5000), "headers": []}, b"address:10.1.2.3"),
        (
            "address",  # a client cannot choose its address with a header
            {"client": ("10.1.2.3", 5000), "headers": [(b"x-forwarded-for", b"1.1.1.1")]},
            b"address:10.1.2.3",
        ),
        (
            "forwarded",  # the last address: the one the proxy in front appended
            {"client": ("10.0.0.9", 1), "headers": [(b"x-forwarded-for", b"6.6.6.6, 8.8.4.4")]},
            b"address:8.8.4.4",
        ),
        ("forwarded", {"client": ("10.0.0.9", 1), "headers": []}, b"address:10.0.0.9"),
        ("token", {"client": ("10.0.0.9", 1), "headers": []}, b"address:10.0.0.9"),
    ],
)
def test_the_client_key(key: str, scope: dict[str, Any], expected: bytes) -> None:
    assert limits.client_key(scope, key) == expected


def test_per_token_buckets_are_keyed_by_a_hash_of_the_token() -> None:
    def scope(token: str) -> dict[str, Any]:
        return {
            "client": ("10.0.0.1", 1),
            "headers": [(b"authorization", f"Bearer {token}".encode())],
        }

    a, b = limits.client_key(scope(TOKEN_A), "token"), limits.client_key(scope(TOKEN_B), "token")
    assert a != b and TOKEN_A.encode() not in a
    clock = Clock()
    client = limited(RateLimit(requests_per_s=1, burst=2, key="token"), clock)
    one = {"headers": {"Authorization": f"Bearer {TOKEN_A}"}}
    other = {"headers": {"Authorization": f"Bearer {TOKEN_B}"}}
    assert statuses(client, 3, **one) == [200, 200, 429]
    assert statuses(client, 2, **other) == [200, 200]  # the same address, another token


def test_open_routes_are_never_limited_and_everything_else_is() -> None:
    clock = Clock()
    client = limited(RateLimit(requests_per_s=1, burst=1), clock)
    for path in ("/livez", "/readyz", "/metrics", "/docs.json"):
        assert [client.get(path).status_code for _ in range(5)] == [200] * 5, path
    assert statuses(client, 2, "/v2/infer") == [200, 429]
    assert statuses(client, 1, "/nope") == [429]  # one bucket for every limited path


def test_without_a_limit_every_request_passes() -> None:
    client = limited(None, Clock())
    assert statuses(client, 50) == [200] * 50


def test_the_buckets_kept_are_bounded() -> None:
    clock = Clock()
    limiter = limits.RateLimit(
        None, limit=RateLimit(requests_per_s=1, burst=1), clock=clock, max_clients=3
    )
    for n in range(10):
        limiter.take(f"address:10.0.0.{n}".encode())
    assert list(limiter.buckets) == [b"address:10.0.0.7", b"address:10.0.0.8", b"address:10.0.0.9"]


def test_rate_limit_config_is_checked_and_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "nb2prod.toml"
    path.write_text("[service]\nrate_limit = {requests_per_s = 5, burst = 10}\n")
    assert load_config_file(path).config.service.rate_limit == RateLimit(requests_per_s=5, burst=10)
    for bad, where in (
        ("{requests_per_s = 0, burst = 10}", "service.rate_limit.requests_per_s"),
        ("{requests_per_s = 5, burst = 0}", "service.rate_limit.burst"),
        ("{requests_per_s = 5, burst = 1, key = 'ip'}", "service.rate_limit.key"),
        ("{requests_per_s = 5, burst = 1, burts = 2}", "service.rate_limit.burts"),
        ("{burst = 1}", "service.rate_limit.requests_per_s"),
    ):
        path.write_text(f"[service]\nrate_limit = {bad}\n")
        with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
            load_config_file(path)
    with pytest.raises(ValidationError):
        RateLimit(requests_per_s=-1, burst=1)
    path.write_text(
        '[service]\nauth = "none"\nrate_limit = {requests_per_s = 5, burst = 1, key = "token"}\n'
    )
    with pytest.raises(ConfigError, match='key = "token" needs auth = "token"'):
        load_config_file(path)
