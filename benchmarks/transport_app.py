"""The transport alone, for benchmarks/serve.py: a raw ASGI app under uvicorn (the server and
event loop `bentoml serve` runs, no framework) that reads each body, validates it against the
iris Input with pydantic-core from its bytes, and answers a fixed body of the generated service's
shape and size, without calling a model. What no service on this server avoids per request:
HTTP parsing, the loop, the body's validation, the answer's bytes on the socket. The body is read
and the answer sent by the /v1 lane's own helpers (nb2prod.runtime.asgi).

Run: uvicorn transport_app:app (from benchmarks/)
"""

import json
from typing import Any

from iris_model import Flower
from nb2prod.runtime.asgi import read_body, send_json
from pydantic import TypeAdapter

BATCH_ROWS = 100
BATCH = TypeAdapter(dict[str, list[Flower]])
ANSWER = {"output": {"species": "versicolor", "confidence": 0.912345}, "model_version": "1.0.0",
          "degraded": False, "reason": None}  # fmt: skip
ONE = json.dumps(ANSWER, separators=(",", ":")).encode()
MANY = json.dumps({"results": [ANSWER] * BATCH_ROWS}, separators=(",", ":")).encode()
READY = b'{"ready":true}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    path = scope["path"]
    if path == "/predict_batch":
        BATCH.validate_json(body)
        answer = MANY
    elif path == "/predict":
        Flower.model_validate_json(body)
        answer = ONE
    else:
        answer = READY
    await send_json(send, 200, answer)
