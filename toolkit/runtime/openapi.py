"""The OpenAPI 3.1 document at /docs.json, written from the release's own models and examples.

BentoML 1.4 labels its document OpenAPI 3.0 but writes JSON Schema 2020-12 into it
(``exclusiveMinimum: 0``, which 3.0 forbids), drops ``null`` from optional fields, documents a
400's ``detail`` as a string where it sends a list, and knows nothing of the bearer token, the
401, the 413, the 503 or /v1/metadata; ``openapi-spec-validator`` rejects it. pydantic emits JSON
Schema 2020-12, which is OpenAPI 3.1's own dialect, so this module writes a 3.1.0 document
instead: the /v1 operations from the service's pydantic models (only ``$defs`` move to
``components/schemas``), with request and response examples from the release's examples.json
(the notebook's own inputs and answers), the Open Inference Protocol's /v2 routes
(runtime/v2.py), and the open routes the server has besides (/livez, /readyz, /metrics). It is built once per process and does not depend on BentoML's document.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

OPENAPI_VERSION = "3.1.0"
#: How many of the examples illustrate /v1/predict_batch's body.
BATCH_EXAMPLES = 3

ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}},
    "required": ["error"],
}
VALIDATION_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
                "required": ["loc", "msg", "type"],
            },
        },
    },
    "required": ["error"],
}
NO_ANSWER = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "reason": {"type": "string"}},
    "required": ["error", "reason"],
}


def schema(value: Any, defs: dict[str, Any]) -> Any:
    """A pydantic (JSON Schema 2020-12) schema as an OpenAPI 3.1 Schema Object: the dialect is the
    same, so only ``$defs`` move into ``defs`` (``components/schemas``) and their refs follow."""
    if isinstance(value, list):
        return [schema(item, defs) for item in value]
    if not isinstance(value, dict):
        return value
    value = dict(value)
    for name, definition in value.pop("$defs", {}).items():
        defs[name] = schema(definition, defs)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "$ref" and isinstance(item, str):
            out[key] = item.replace("#/$defs/", "#/components/schemas/")
        elif key in ("enum", "const", "default", "examples"):
            out[key] = item  # values, not schemas
        elif key == "properties" and isinstance(item, dict):
            out[key] = {name: schema(sub, defs) for name, sub in item.items()}
        else:
            out[key] = schema(item, defs)
    return out


def operation(
    name: str,
    summary: str,
    request: Any,
    response: Any,
    defs: dict[str, Any],
    auth: bool,
    *,
    examples: Sequence[tuple[str, Any, Any]] = (),
) -> dict[str, Any]:
    """One operation; ``examples`` are (name, request body, response body) triples."""
    responses: dict[str, Any] = {
        "200": _json(summary, schema(response, defs), {n: out for n, _, out in examples})
    }
    if request is not None:
        responses["400"] = _json(
            "the body breaks the contract; `detail` names the fields", VALIDATION_ERROR
        )
        responses["413"] = _json("the body is larger than the release allows", ERROR)
        responses["415"] = _json("the body is not application/json", ERROR)
        responses["503"] = _json("neither the model nor a fallback could answer", NO_ANSWER)
    if auth:
        responses["401"] = _json("missing or wrong bearer token", ERROR)
    op: dict[str, Any] = {"operationId": name, "summary": summary, "responses": responses}
    if request is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": _media(schema(request, defs),
                                                   {n: body for n, body, _ in examples})},
        }  # fmt: skip
    if auth:
        op["security"] = [{"bearer": []}]
    return op


def _media(value: Any, examples: Mapping[str, Any]) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": value}
    if examples:
        media["examples"] = {name: {"value": body} for name, body in examples.items()}
    return media


def _json(
    description: str, value: Any, examples: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": _media(value, examples or {})},
    }


def _plain(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def open_routes() -> dict[str, Any]:
    """The server's routes that need no token (runtime/routes.py's OPEN), as BentoML answers them."""
    return {
        "/livez": {"get": {"operationId": "livez", "summary": "the process is up",
                           "responses": {"200": _plain("alive")}}},
        "/readyz": {"get": {"operationId": "readyz", "summary": "ready for traffic",
                            "responses": {"200": _plain("ready"), "503": _plain("not ready")}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                             "responses": {"200": _plain("the text exposition format")}}},
    }  # fmt: skip


def examples_of(answered: Sequence[Mapping[str, Any]], envelope: Any) -> list[tuple[str, Any, Any]]:
    """(name, Input, response) per example of examples.json; ``envelope(output)`` wraps an Output
    as /v1/predict answers it."""
    return [
        (f"example{e.get('index', i)}", dict(e["input"]), envelope(e["output"]))
        for i, e in enumerate(answered)
        if isinstance(e, Mapping) and isinstance(e.get("input"), Mapping) and "output" in e
    ]


def document(
    *,
    title: str,
    version: str,
    description: str,
    routes: Mapping[str, Mapping[str, Any]],
    defs: Mapping[str, Any],
    auth: bool,
) -> dict[str, Any]:
    """The whole document: ``routes`` (path -> method -> operation) and the open routes."""
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version, "description": description},
        "paths": {**open_routes(), **routes},
        "components": {"schemas": dict(defs)},
    }
    if auth:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc


class CorrectedDocs:
    """ASGI middleware: GET /docs.json answers with the document ``build()`` returns (once)."""

    def __init__(self, app: Any, *, build: Any) -> None:
        self.app = app
        self.build = build  # () -> the document
        self.body: bytes | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/docs.json" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        if self.body is None:
            self.body = json.dumps(self.build()).encode()
        await _respond(send, 200, self.body)


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
