"""The routes a generated service answers, which of them are open, and bounded metric labels.

BentoML 1.4 (``RunnerTrafficMetricsMiddleware``, the outermost of its middlewares) labels its
``bentoml_service_request_*`` series with ``endpoint=scope["path"]``, the raw path of every request,
unknown ones included: each random path a client sends is a new series of some twenty samples,
kept for the life of the worker. A service middleware runs inside that one and cannot change what
it reads, so :class:`BoundedLabels` puts a layer *outside* BentoML's middlewares when the app starts
(the ASGI lifespan) that shows BentoML the path's label instead of the path, and restores the real
path below them, before any routing. Known routes are their own label; everything else shares one.
"""

from __future__ import annotations

import logging
from typing import Any

API = frozenset({"/v1/predict", "/v1/predict_batch", "/v1/metadata"})
# the Open Inference Protocol (runtime/v2.py): its model routes share two labels, whatever the
# model name and version in the path
V2_INFER = "/v2/infer"
V2_MODEL = "/v2/models"
V2_HEALTH = frozenset({"/v2/health/live", "/v2/health/ready"})
# what answers without a token when auth = "token": health probes, the Prometheus scrape, the
# OpenAPI document and BentoML's index page with its static files; every other path needs one
OPEN = frozenset(
    {"/", "/docs.json", "/schema.json", "/healthz", "/livez", "/readyz", "/metrics", *V2_HEALTH}
)
OPEN_PREFIXES = ("/static_content/",)
UNMATCHED = "/{unmatched}"  # the label of every path that is not a route of the service
# the scope key that keeps the request's path while BentoML's middlewares see its label
_REAL_PATH = "nb2prod.path"


def is_open(path: str) -> bool:
    """Whether ``path`` answers without a bearer token."""
    return path in OPEN or path.startswith(OPEN_PREFIXES)


def label(path: str) -> str:
    """The metric label of a request path: the route itself, a prefix's template, or UNMATCHED."""
    if path in API or path in OPEN:
        return path
    if path.startswith("/v2/models/"):
        return V2_INFER if path.endswith("/infer") else V2_MODEL
    for prefix in OPEN_PREFIXES:
        if path.startswith(prefix):
            return prefix + "{path}"
    return UNMATCHED


class BoundedLabels:
    """ASGI middleware (the first service middleware): see the module docstring.

    At lifespan start it wraps the app's whole middleware stack in :class:`_ShowLabel`; on each
    request it gives the routes below the path the client sent.
    """

    def __init__(self, app: Any, lane: Any = None) -> None:
        self.app = app
        self.lane = lane  # builds the /v1 fast lane (runtime/v1.py), put outside with the labels

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" and not install_outside(scope.get("app"), self.lane):
            logging.getLogger("nb2prod.service").warning(
                "cannot bound BentoML's endpoint labels: its app has no middleware_stack"
            )
        elif _REAL_PATH in scope:
            scope = {**scope, "path": scope[_REAL_PATH]}
            del scope[_REAL_PATH]
        await self.app(scope, receive, send)


def install_outside(app: Any, lane: Any = None) -> bool:
    """Wrap a built Starlette app's middleware stack in :class:`_ShowLabel` (once), and that in
    the /v1 fast lane ``lane()`` builds when one is given (outermost: its requests never reach
    BentoML's layers)."""
    from .v1 import FastLane

    stack = getattr(app, "middleware_stack", None)
    if stack is None or isinstance(stack, (_ShowLabel, FastLane)):
        return isinstance(stack, (_ShowLabel, FastLane))
    app.middleware_stack = (
        _ShowLabel(stack) if lane is None else FastLane(_ShowLabel(stack), lane())
    )
    return True


class _ShowLabel:
    """Outside every middleware: BentoML's metrics see the path's label, not the path."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            path = scope["path"]
            shown = label(path)
            if shown != path:
                scope = {**scope, "path": shown, _REAL_PATH: path}
        await self.app(scope, receive, send)
