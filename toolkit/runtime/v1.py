"""The /v1 routes as one lean ASGI app, and the fast lane that takes /v1 requests to it.

BentoML 1.4 answers an ``@bentoml.api`` through a Starlette request, its IO descriptor, a call
in its thread pool and a response object, under its own middlewares (request metrics,
OpenTelemetry, timeout and concurrency, request context): for a model that answers in a tenth of
a millisecond, most of every request. :class:`App` answers ``/v1/predict``, ``/v1/predict_batch``
and ``/v1/metadata`` itself: the body is validated once, by pydantic-core straight from its
bytes, against the contract (the same strict body model BentoML's route used, so the same 400),
answered by the service's one answer path (guard, fallback, batching, metrics) and serialised
once. :class:`FastLane` is put outside BentoML's middlewares when the app starts (as
:mod:`.routes` puts its label layer) and hands /v1 requests to nb2prod's own middlewares (access
log and metrics, auth, JSON only, body limits; :func:`.app.own_middlewares`, the same list
the service installs for every other path) around :class:`App`; every other path goes through
BentoML as before. The ``@bentoml.api`` routes stay declared on the service (its Python client
and ``bentoml build`` see them) and answer when the lane is not installed.

What BentoML's own layers did that the lane leaves out, on /v1 only: the
``bentoml_service_request_*`` series (nb2prod's ``nb2prod_requests_total`` and
``nb2prod_request_duration_seconds`` count every /v1 request), OpenTelemetry spans, and
BentoML's ``traffic.timeout``/``max_concurrency`` (the time budget is ``[fallback] timeout_ms``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from .asgi import dumps, read_body, send_json

PREDICT, BATCH, METADATA = "/v1/predict", "/v1/predict_batch", "/v1/metadata"
ROUTES = {PREDICT: "POST", BATCH: "POST", METADATA: "GET"}

logger = logging.getLogger("nb2prod.service")


def bad_request(exc: ValidationError) -> dict[str, Any]:
    """The 400 body, as BentoML's route gave it (``{"error", "detail"}``, no input values)."""
    return {
        "error": f"{exc.error_count()} validation error for {exc.title}",
        "detail": exc.errors(include_context=False, include_input=False),
    }


class App:
    """``POST /v1/predict``, ``POST /v1/predict_batch`` and ``GET /v1/metadata``.

    ``service()`` gives the running service (a :class:`~.app.Handlers`), whose ``predict_one``
    and ``predict_many`` answer; ``metadata()`` the body of /v1/metadata.
    """

    def __init__(
        self,
        Input: type[BaseModel],
        BatchRequest: type[BaseModel],
        service: Callable[[], Any],
        metadata: Callable[[], dict[str, Any]],
    ) -> None:
        # pydantic-core from the bytes; strict JSON types unless lax (runtime/limits.py)
        self.read_one = Input.model_validate_json
        self.read_batch = BatchRequest.model_validate_json
        self.service = service
        self.metadata = metadata

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        wanted = ROUTES.get(path)
        if wanted is None:
            await send_json(send, 404, b'{"detail":"Not Found"}')
            return
        if method != wanted and not (wanted == "GET" and method == "HEAD"):
            await send_json(
                send, 405, b'{"detail":"Method Not Allowed"}', (b"allow", wanted.encode())
            )
            return
        try:
            if path == METADATA:
                body = dumps(self.metadata())
                await send_json(send, 200, body if method == "GET" else b"", length=len(body))
                return
            body = await read_body(receive)
            try:
                answer = await self.answer(path, body)
            except ValidationError as exc:
                await send_json(send, 400, dumps(bad_request(exc)))
                return
            if isinstance(answer, BaseModel):
                await send_json(send, 200, answer.__pydantic_serializer__.to_json(answer))
            else:  # a Starlette response: the 503 of an input nothing could answer
                await answer(scope, receive, send)
        except Exception:  # nb2prod's bug, not the client's: a 500 that says so, never a hang
            logger.exception("the route %s failed", path)
            await send_json(send, 500, b'{"error":"internal error in the /v1 route (logged)"}')

    async def answer(self, path: str, body: bytes) -> Any:
        service = self.service()
        if path == PREDICT:
            inp = self.read_one(body)
            return await service.predict_one(inp.__dict__)
        return await service.predict_many(getattr(self.read_batch(body), "inputs"))  # noqa: B009


class FastLane:
    """Outside BentoML's middlewares: /v1 requests to ``lane``, everything else to ``app``."""

    def __init__(
        self, app: Any, lane: Callable[[dict[str, Any], Any, Any], Awaitable[None]]
    ) -> None:
        self.app = app
        self.lane = lane

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in ROUTES:
            await self.lane(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def chain(app: Any, middlewares: list[tuple[type, dict[str, Any]]]) -> Any:
    """``app`` inside ``middlewares`` (outermost first), as Starlette would build them."""
    for cls, options in reversed(middlewares):
        app = cls(app, **options)
    return app
