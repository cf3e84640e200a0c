"""The OpenAPI document at /docs.json, made true for the /v1 routes.

BentoML 1.4 labels its document OpenAPI 3.0 but writes JSON Schema 2020 bounds into it
(``exclusiveMinimum: 0``, which 3.0 forbids), drops ``null`` from optional fields, documents a
400's ``detail`` as a string where it sends a list, and knows nothing of the bearer token, the
401, the 503 or /v1/metadata. Client generators and fuzzers (schemathesis) reject or
misread such a document. This module rewrites the /v1 operations from the service's own pydantic
models, converted to OpenAPI 3.0, and leaves BentoML's other routes as they are.
"""

from __future__ import annotations

import json
from typing import Any

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
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
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


def oas30(schema: Any, defs: dict[str, Any]) -> Any:
    """A pydantic (JSON Schema 2020) schema as OpenAPI 3.0; `$defs` are moved into `defs`."""
    if isinstance(schema, list):
        return [oas30(item, defs) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = dict(schema)
    for name, definition in schema.pop("$defs", {}).items():
        defs[name] = oas30(definition, defs)
    if "$ref" in schema:
        schema["$ref"] = schema["$ref"].replace("#/$defs/", "#/components/schemas/")
    branches = schema.get("anyOf")
    if isinstance(branches, list) and {"type": "null"} in branches:
        rest = [b for b in branches if b != {"type": "null"}]
        del schema["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            schema = {**rest[0], **schema}
        else:
            schema["anyOf"] = rest
        schema["nullable"] = True
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(schema.get(bound), (int, float)) and not isinstance(schema[bound], bool):
            schema[inclusive], schema[bound] = schema[bound], True
    if "const" in schema:
        schema["enum"] = [schema.pop("const")]
    if schema.get("type") == "null":  # a field that can only be null
        del schema["type"]
        schema["nullable"] = True
        schema["enum"] = [None]
    return {key: oas30(value, defs) if key != "enum" else value for key, value in schema.items()}


def operation(
    name: str, summary: str, request: Any, response: Any, defs: dict[str, Any], auth: bool
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": _json(summary, oas30(response, defs))}
    if request is not None:
        responses["400"] = _json(
            "the body breaks the contract; `detail` names the fields", VALIDATION_ERROR
        )
        responses["415"] = _json("the body is not application/json", ERROR)
        responses["503"] = _json("neither the model nor a fallback could answer", NO_ANSWER)
    if auth:
        responses["401"] = _json("missing or wrong bearer token", ERROR)
    op: dict[str, Any] = {"operationId": name, "summary": summary, "responses": responses}
    if request is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": oas30(request, defs)}},
        }
    if auth:
        op["security"] = [{"bearer": []}]
    return op


def _json(description: str, schema: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def rewrite(document: dict[str, Any], v1: dict[str, dict[str, Any]], auth: bool) -> dict[str, Any]:
    """BentoML's document with the /v1 paths replaced by `v1` (path -> method -> operation)."""
    paths = {p: ops for p, ops in document.get("paths", {}).items() if not p.startswith("/v1/")}
    document = {**document, "paths": {**paths, **v1}}
    if auth:
        components = document.setdefault("components", {})
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
        }
    return document


class CorrectedDocs:
    """ASGI middleware: GET /docs.json answers with :func:`rewrite` applied (computed once)."""

    def __init__(self, app: Any, *, build: Any) -> None:
        self.app = app
        self.build = build  # BentoML's document (dict) -> the corrected one
        self.body: bytes | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/docs.json" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        if self.body is None:
            status, chunks = 500, []

            async def collect(message: dict[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                elif message["type"] == "http.response.body":
                    chunks.append(message.get("body", b""))

            await self.app(scope, receive, collect)
            if status != 200:
                await _respond(send, status, b"".join(chunks))
                return
            self.body = json.dumps(self.build(json.loads(b"".join(chunks)))).encode()
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
