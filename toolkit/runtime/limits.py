"""What a request body may be: its size, the length of a batch, and strict JSON types.

A body is read whole before it is validated, and pydantic checks a list's ``max_length`` only after
it has parsed the whole document and validated its items (an 84 MB batch of a million rows took
seconds and over a gigabyte before its 400). So :class:`BodyLimit` refuses a body over
``[service] max_body_bytes`` (413) before reading more of it than that, and a batch of more than
``max_batch_rows`` inputs (400) after reading no more than ``max_batch_rows + 1`` of them.

JSON types are strict (SPEC section 6: a string is not a number): :func:`body_model` makes the
model BentoML validates bodies with read JSON in pydantic's strict mode, at any depth, unless
``[service] input_types = "lax"``. Strict JSON still takes an integer for a float field.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from .auth import send_json

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
