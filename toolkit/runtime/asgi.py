"""What the service's own ASGI apps (/v1, /v2) share: reading a request body, sending a JSON one."""

from __future__ import annotations

import json
from typing import Any

_JSON = (b"content-type", b"application/json")


async def read_body(receive: Any) -> bytes:
    """The whole request body (the body limit hands it on in one message; a client that goes
    away ends it)."""
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def send_json(
    send: Any, status: int, body: bytes, *headers: tuple[bytes, bytes], length: int | None = None
) -> None:
    """A response of JSON ``body`` (already serialised); ``length``: a HEAD's, the GET's."""
    size = str(len(body) if length is None else length).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [_JSON, (b"content-length", size), *headers],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})
