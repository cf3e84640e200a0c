"""Serving-time helpers shared by the generated service and nb2prod's capture in the kernel.

Copied into every release by nb2prod so that the service needs nothing from nb2prod at run time.
Nothing here knows the notebook: the service passes its pipeline module in.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from types import ModuleType
from typing import Any

TOKEN_ENV = "NB2PROD_API_TOKEN"
TOKEN_FILE_ENV = "NB2PROD_API_TOKEN_FILE"
DISABLED_ENV = "NB2PROD_MODEL_DISABLED"
DISABLE_FILE_ENV = "NB2PROD_DISABLE_FILE"


class PipelineError(RuntimeError):
    """The pipeline returned something the contract does not allow."""


class NoAnswer(Exception):
    """Neither the model nor a fallback could answer: HTTP 503 with the reason, no traceback."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def response(self) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"error": self.message, "reason": self.reason}, status_code=503)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, sha256: str) -> None:
    actual = sha256_file(path)
    if actual != sha256:
        raise RuntimeError(
            f"{path}: sha256 is {actual} but the release recorded {sha256}; "
            "refusing to load a model file that is not the packaged one"
        )


def load_model(path: Path, sha256: str, fmt: str, trusted: list[str]) -> Any:
    """Load the packaged model, refusing a file whose bytes are not the ones nb2prod packaged."""
    check_sha256(path, sha256)
    if fmt == "skops":
        import skops.io  # constructs only known types, plus the `trusted` ones model.json lists

        return skops.io.load(path, trusted=trusted)
    if fmt == "cloudpickle":
        import pickle  # loading runs code: acceptable only because the hash matched above

        with path.open("rb") as handle:
            return pickle.load(handle)
    import joblib  # a pickle as well: same trust as above

    return joblib.load(path)


def run(
    pipeline: ModuleType, model: Any, inputs: list[Any], timings: dict[str, float] | None = None
) -> list[Any]:
    """preprocess -> predict -> postprocess for one batch; every item validated as Output.

    With ``timings``, the seconds each stage took are stored in it (for the stage histograms).
    """
    start = time.perf_counter()
    features = pipeline.preprocess(inputs)
    preprocessed = time.perf_counter()
    raw = pipeline.predict(model, features)
    predicted = time.perf_counter()
    outputs = list(pipeline.postprocess(raw, inputs))
    if len(outputs) != len(inputs):
        raise PipelineError(f"postprocess returned {len(outputs)} outputs for {len(inputs)} inputs")
    validated = [validate_output(pipeline, out) for out in outputs]
    if timings is not None:
        timings["preprocess"] = preprocessed - start
        timings["predict"] = predicted - preprocessed
        timings["postprocess"] = time.perf_counter() - predicted
    return validated


def validate_output(pipeline: ModuleType, value: Any) -> Any:
    """Re-validate so an Output mutated or built with model_construct cannot break the contract."""
    data = value.model_dump() if isinstance(value, pipeline.Output) else value
    return pipeline.Output.model_validate(data)


def fallback(pipeline: ModuleType, inp: Any) -> Any:
    """The notebook's fallback for one input, validated as Output."""
    return validate_output(pipeline, pipeline.fallback(inp))


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
    return token.encode()


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
    """ASGI middleware: every /v1/* route needs `Authorization: Bearer <token>`."""

    def __init__(self, app: Any, auth: str) -> None:
        self.app = app
        token = api_token(auth)
        assert token is not None, "BearerAuth is only installed with auth = token"
        self.expected = b"Bearer " + token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            given = dict(scope["headers"]).get(b"authorization", b"")
            # constant-time comparison, so response timing does not leak the token
            if not hmac.compare_digest(given, self.expected):
                await send_json(
                    send, 401, {"error": "missing or wrong bearer token"},
                    (b"www-authenticate", b'Bearer realm="nb2prod"'),
                )  # fmt: skip
                return
        await self.app(scope, receive, send)


class JsonOnly:
    """ASGI middleware: a /v1/* POST body must be JSON (415 otherwise).

    BentoML would try other decoders, and answers a multipart body without a boundary with a 500.
    A missing Content-Type is taken as JSON, as BentoML does.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"].startswith("/v1/"):
            given = dict(scope["headers"]).get(b"content-type", b"application/json")
            media = given.split(b";")[0].strip().lower()
            if media != b"application/json" and not media.endswith(b"+json"):
                message = f"Content-Type {given.decode('latin-1')!r} is not supported; send application/json"
                await send_json(send, 415, {"error": message})
                return
        await self.app(scope, receive, send)


class Guard:
    """Decides when the model answers and when the fallback does (SPEC section 6 reasons)."""

    def __init__(
        self,
        *,
        timeout_ms: int | None,
        min_confidence: float | None,
        failures: int,
        reset_s: float,
        disable_file: str,
    ) -> None:
        self.timeout_s = timeout_ms / 1000 if timeout_ms else None
        self.min_confidence = min_confidence
        self.failures = failures
        self.reset_s = reset_s
        self.disabled = os.environ.get(DISABLED_ENV, "") not in ("", "0", "false")
        # The kill switch on a running service: while this file exists the fallback answers.
        # A file reaches every worker at once and adds no route an attacker could call.
        self.disable_file = Path(os.environ.get(DISABLE_FILE_ENV) or disable_file)
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial = False
        # a stuck model call keeps its thread; the pool bounds how many can pile up
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="nb2prod-model")

    def admit(self) -> str | None:
        """None when the model may be tried, else the reason the fallback must answer."""
        if self.disabled or self.disable_file.exists():  # one stat() per request
            return "disabled"
        with self._lock:
            if self._opened_at is None:
                return None
            if time.monotonic() - self._opened_at < self.reset_s or self._trial:
                return "circuit_open"
            self._trial = True  # one trial request decides whether the circuit closes
            return None

    async def call(self, fn: Any, *args: Any) -> Any:
        """Run the model path in the pool, within the time budget when one is set.

        The event loop only awaits, so a stuck call holds one pool thread, never the server.
        """
        future = asyncio.wrap_future(self._pool.submit(fn, *args))
        if self.timeout_s is None:
            return await future
        return await asyncio.wait_for(future, self.timeout_s)

    def record(self, ok: bool) -> None:
        with self._lock:
            self._trial = False
            if ok:
                self._consecutive = 0
                self._opened_at = None
                return
            self._consecutive += 1
            if self._consecutive >= self.failures:
                self._opened_at = time.monotonic()

    def low_confidence(self, output: Any) -> bool:
        confidence = getattr(output, "confidence", None)
        return (
            self.min_confidence is not None
            and isinstance(confidence, (int, float))
            and confidence < self.min_confidence
        )


TIMEOUT_ERRORS = (asyncio.TimeoutError, FutureTimeout)


class Batcher:
    """Adaptive batching of single requests, without a fixed wait.

    A request starts a model call at once while fewer than ``max_in_flight`` calls are running;
    only when all are busy do requests queue, and the queue goes together into the next free call
    (at most ``max_size``). So at low load nothing waits, under load the model runs fewer, larger
    batches, and one stuck call holds up only its own batch, not every request behind it.
    """

    def __init__(self, run_batch: Any, max_size: int, max_in_flight: int = 4) -> None:
        self.run_batch = run_batch  # async: list of inputs -> list of per-item results
        self.max_size = max_size
        self.max_in_flight = max_in_flight
        self._queue: list[tuple[Any, asyncio.Future[Any]]] = []
        self._in_flight = 0

    def enqueue(self, item: Any) -> asyncio.Future[Any]:
        """The future of this item's result (await it, or shield it to apply a deadline)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._start()
        return future

    def _start(self) -> None:
        while self._queue and self._in_flight < self.max_in_flight:
            batch, self._queue = self._queue[: self.max_size], self._queue[self.max_size :]
            self._in_flight += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        try:
            results = await self.run_batch([item for item, _ in batch])
        except Exception as exc:  # every waiter of this batch hears of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), result in zip(batch, results):
                if not future.done():  # a waiter past its deadline or gone has cancelled it
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._start()
