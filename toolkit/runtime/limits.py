"""What a request body may be: its size, the length of a batch, and strict JSON types.

A body is read whole before it is validated, and pydantic checks a list's ``max_length`` only after
it has parsed the whole document and validated its items (an 84 MB batch of a million rows took
seconds and over a gigabyte before its 400). So :class:`BodyLimit` refuses a body over
``[service] max_body_bytes`` (413) before reading more of it than that, and a batch of more than
``max_batch_rows`` inputs (400) after reading no more than ``max_batch_rows + 1`` of them.

:class:`RateLimit` holds each client to ``[service] rate_limit`` (a token bucket per client
address or bearer token): past it a 429 with ``Retry-After``, before the body is read. Open
routes (health probes, /metrics, the OpenAPI document) are never limited.

JSON types are strict (SPEC section 6: a string is not a number): :func:`body_model` makes the
model BentoML validates bodies with read JSON in pydantic's strict mode, at any depth, unless
``[service] input_types = "lax"``. Strict JSON still takes an integer for a float field.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from .auth import bearer_token, send_json
from .routes import is_open
from .schema import RateLimit as RateLimitSettings

BATCH_ROUTE = "/v1/predict_batch"
BYTES_PER_ROW = 4096  # the default body limit: this much per row of max_batch_rows ...
BODY_OVERHEAD = 65536  # ... plus this much
_WHITESPACE = " \t\n\r"


def default_max_body_bytes(max_batch_rows: int) -> int:
    """The body limit when ``[service] max_body_bytes`` is not set: a full batch of wide rows."""
    return max_batch_rows * BYTES_PER_ROW + BODY_OVERHEAD


class _StrictJson:
    """Mixin: ``model_validate_json`` in strict mode unless the caller says otherwise.

    BentoML reads every body with ``model_validate_json``; ``strict=True`` there applies to nested
    models too, which a model's own ``strict`` setting would not.
    """

    @classmethod
    def model_validate_json(cls, json_data: Any, *, strict: bool | None = None, **kw: Any) -> Any:
        return super().model_validate_json(  # type: ignore[misc]
            json_data, strict=True if strict is None else strict, **kw
        )


def body_model(model: type[BaseModel], input_types: str) -> type[BaseModel]:
    """``model`` as request bodies are read into it: strict JSON types unless ``"lax"``.

    A subclass with the same name, docstring and JSON Schema; its instances are ``model``'s.
    Its title is ``model``'s, set explicitly: BentoML validates bodies with a subclass it names
    ``<name>IODescriptor``, and a 400 says ``1 validation error for <title>``, which must name
    the contract's class (``Input``), not BentoML's.
    """
    title = model.model_config.get("title") or model.__name__
    namespace = {"__module__": model.__module__, "__qualname__": model.__qualname__,
                 "__doc__": model.__doc__, "model_config": ConfigDict(title=title)}  # fmt: skip
    bases = (model,) if input_types == "lax" else (_StrictJson, model)
    return type(model.__name__, bases, namespace)


def read_json(model: type[BaseModel], body: str | bytes, input_types: str) -> BaseModel:
    """One body validated as the service validates it (the contract probe uses this)."""
    return model.model_validate_json(body, strict=input_types != "lax")


def batch_exceeds(body: bytes, rows: int) -> bool:
    """Whether the body's ``inputs`` array holds more than ``rows`` items, found by decoding at
    most ``rows + 1`` of them. False when the body is not such an object: pydantic says why."""
    if len(body) < 2 * rows + len('{"inputs":[]}'):  # too short for rows + 1 items
        return False
    if body.count(b",") < rows:  # items of an array are separated by commas: at most rows
        return False
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    decoder = json.JSONDecoder()
    i = _skip(text, 0)
    if not text.startswith("{", i):
        return False
    i = _skip(text, i + 1)
    try:
        while i < len(text) and text[i] == '"':
            key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            i = _skip(text, i)
            if not text.startswith(":", i):
                return False
            i = _skip(text, i + 1)
            if key == "inputs" and text.startswith("[", i):
                count, i = 0, _skip(text, i + 1)
                while not text.startswith("]", i):
                    count += 1
                    if count > rows:
                        return True
                    _, i = decoder.raw_decode(text, i)
                    i = _skip(text, i)
                    if text.startswith(",", i):
                        i = _skip(text, i + 1)
                    elif not text.startswith("]", i):
                        return False
                i += 1
            else:
                _, i = decoder.raw_decode(text, i)
            i = _skip(text, i)
            if not text.startswith(",", i):
                return False
            i = _skip(text, i + 1)
    except ValueError:  # not JSON: pydantic's 400 says where
        return False
    return False


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, 400 for a batch over ``max_rows``.

    A declared Content-Length over the limit is refused before a byte of the body is read;
    otherwise the body is read up to the limit and handed on in one piece.
    """

    def __init__(self, app: Any, *, max_bytes: int, max_rows: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_rows = max_rows

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self.too_large(send, f"is {declared} bytes")  # refused before it is read
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self.too_large(send, f"has more than {self.max_bytes} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if scope["path"] == BATCH_ROUTE and batch_exceeds(body, self.max_rows):
            message = f"List should have at most {self.max_rows} items after validation"
            await send_json(send, 400, {
                "error": f"a batch takes at most {self.max_rows} inputs ([service] max_batch_rows)",
                "detail": [{"type": "too_long", "loc": ["inputs"], "msg": message}],
            })  # fmt: skip
            return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: disconnect, as the server tells it
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def too_large(self, send: Any, size: str) -> None:
        message = (
            f"the request body {size}; this service takes at most {self.max_bytes} bytes "
            "([service] max_body_bytes)"
        )
        await send_json(send, 413, {"error": message})


def _content_length(scope: dict[str, Any]) -> int | None:
    for key, value in scope.get("headers", ()):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


MAX_CLIENTS = 10_000  # buckets kept; the least recently seen client's is dropped past it


class RateLimit:
    """ASGI middleware: a token bucket per client; a request that finds its bucket empty gets 429
    with ``Retry-After`` (whole seconds until the bucket holds one request again).

    A bucket holds at most ``burst`` requests and refills at ``requests_per_s``; a new client
    starts full. The client is its address, the last ``X-Forwarded-For`` address (``key =
    "forwarded"``, behind a proxy) or its bearer token (``key = "token"``, hashed; the address
    without one). Buckets live in this worker process: with ``workers = N`` a client may get up
    to N times the limit. ``limit=None`` passes every request through.
    """

    def __init__(
        self,
        app: Any,
        *,
        limit: RateLimitSettings | None,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.app = app
        self.limit = limit
        self.clock = clock
        self.max_clients = max_clients
        self.buckets: OrderedDict[bytes, tuple[float, float]] = OrderedDict()  # tokens, when

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.limit is None or scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        wait = self.take(client_key(scope, self.limit.key))
        if wait > 0:
            retry = max(1, math.ceil(wait))
            limit = self.limit
            message = (
                f"too many requests: this service takes {limit.requests_per_s:g} requests/s per "
                f"client (bursts of {limit.burst}; [service] rate_limit); retry in {retry} s"
            )
            await send_json(send, 429, {"error": message}, (b"retry-after", str(retry).encode()))
            return
        await self.app(scope, receive, send)

    def take(self, client: bytes) -> float:
        """Take one request from ``client``'s bucket: 0 if it had one, else the seconds until it
        will."""
        assert self.limit is not None
        rate, burst = self.limit.requests_per_s, float(self.limit.burst)
        now = self.clock()
        tokens, then = self.buckets.pop(client, (burst, now))
        tokens = min(burst, tokens + (now - then) * rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / rate
        self.buckets[client] = (tokens, now)  # most recently seen last
        while len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        return wait


def client_key(scope: dict[str, Any], key: str) -> bytes:
    """Who a request is from, as ``[service] rate_limit.key`` says."""
    headers = scope.get("headers", ())
    if key == "token":
        for name, value in headers:
            if name == b"authorization":
                token = bearer_token(value)
                if token:
                    return b"token:" + hashlib.sha256(token).digest()
    if key == "forwarded":
        forwarded = [v for name, v in headers if name == b"x-forwarded-for"]
        if forwarded:
            last = forwarded[-1].split(b",")[-1].strip()
            if last:
                return b"address:" + last
    client = scope.get("client")
    return b"address:" + (str(client[0]).encode() if client else b"unknown")
