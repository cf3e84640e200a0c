"""Who may call the service: the bearer token (SPEC section 6) and what bodies /v1 accepts.

With ``auth = "token"`` every path needs ``Authorization: Bearer <token>`` except the open ones of
:data:`routes.OPEN` (health probes, /metrics, the OpenAPI document, BentoML's index page): a path
that is not a route gets 401 like a protected one, so nothing answers a scan without the token.
"""

from __future__ import annotations

import hmac
import json
import os
import re
from pathlib import Path
from typing import Any

from .routes import is_open

TOKEN_ENV = "NB2PROD_API_TOKEN"
TOKEN_FILE_ENV = "NB2PROD_API_TOKEN_FILE"
MIN_TOKEN_LENGTH = 16  # characters; shorter tokens can be guessed or are placeholders
_SPACE = b" \t"
_CREDENTIALS = re.compile(rb"([^ \t]+)[ \t]+(.*?)[ \t]*", re.DOTALL)  # scheme, then the token


def api_token(auth: str) -> bytes | None:
    """The bearer token the service requires, or None with auth = "none".

    Raises at import of the service, so `bentoml serve` refuses to start without a token.
    """
    if auth == "none":
        return None
    token = os.environ.get(TOKEN_ENV, "").strip()
    token_file = os.environ.get(TOKEN_FILE_ENV, "").strip()
    if not token and token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise RuntimeError(f"{TOKEN_FILE_ENV}={token_file}: cannot read it ({exc})") from None
    if not token:
        raise RuntimeError(
            f'this service is configured with auth = "token" but neither {TOKEN_ENV} nor '
            f"{TOKEN_FILE_ENV} is set; refusing to start without a token"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        where = TOKEN_ENV if os.environ.get(TOKEN_ENV, "").strip() else token_file
        raise RuntimeError(
            f"the token in {where} has {len(token)} characters; refusing to start with a token "
            f"shorter than {MIN_TOKEN_LENGTH} (make one with: python -c "
            '"import secrets; print(secrets.token_urlsafe(32))")'
        )
    return token.encode()


def bearer_token(header: bytes) -> bytes | None:
    """The credentials of an ``Authorization: Bearer <token>`` header, None for another scheme.

    The scheme is case-insensitive (RFC 9110 section 11.1); spaces around the token are ignored.
    """
    found = _CREDENTIALS.fullmatch(header.strip(_SPACE))
    if found is None or found[1].lower() != b"bearer":
        return None
    return found[2]


async def send_json(send: Any, status: int, payload: dict, *headers: tuple[bytes, bytes]) -> None:
    """Answer an ASGI request from a middleware with a small JSON body."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})


class BearerAuth:
    """ASGI middleware: every path but the open ones needs `Authorization: Bearer <token>`."""

    def __init__(self, app: Any, auth: str) -> None:
        self.app = app
        token = api_token(auth)
        assert token is not None, "BearerAuth is only installed with auth = token"
        self.expected = token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not is_open(scope["path"]):
            given = bearer_token(dict(scope["headers"]).get(b"authorization", b""))
            # constant-time comparison, so response timing does not leak the token
            if given is None or not hmac.compare_digest(given, self.expected):
                await send_json(
                    send, 401, {"error": "missing or wrong bearer token"},
                    (b"www-authenticate", b'Bearer realm="nb2prod"'),
                )  # fmt: skip
                return
        await self.app(scope, receive, send)


class JsonOnly:
    """ASGI middleware: a /v1/* or /v2/* POST body must be JSON (415 otherwise), or a /v2 body of
    the binary tensor extension (application/octet-stream with Inference-Header-Content-Length).

    BentoML would try other decoders, and answers a multipart body without a boundary with a 500.
    A missing Content-Type is taken as JSON, as BentoML does.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith(("/v1/", "/v2/"))
        ):
            headers = dict(scope["headers"])
            given = headers.get(b"content-type", b"application/json")
            media = given.split(b";")[0].strip().lower()
            binary = b"inference-header-content-length" in headers  # V2's binary extension
            if (
                media != b"application/json"
                and not media.endswith(b"+json")
                and not (binary and media == b"application/octet-stream")
            ):
                message = f"Content-Type {given.decode('latin-1')!r} is not supported; send application/json"
                await send_json(send, 415, {"error": message})
                return
        await self.app(scope, receive, send)
