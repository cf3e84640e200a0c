"""When the model answers and when the fallback does: time budget, circuit breaker, kill switch,
confidence floor (SPEC section 6 reasons), and adaptive batching of single requests."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

DISABLED_ENV = "NB2PROD_MODEL_DISABLED"
DISABLE_FILE_ENV = "NB2PROD_DISABLE_FILE"
_ABSENT = (errno.ENOENT, errno.ENOTDIR)  # stat() errors that mean "no such file": the model is on
logger = logging.getLogger("nb2prod.service")


def kill_switch_path(disable_file: str) -> Path:
    """The kill-switch file: NB2PROD_DISABLE_FILE, else the release's default."""
    return Path(os.environ.get(DISABLE_FILE_ENV) or disable_file)


def check_kill_switch(disable_file: str) -> None:
    """Before any worker starts: the kill-switch file must be checkable, or nobody could switch
    the model off. Raises with what to change (a path too long, a directory the service may not
    search) instead of letting every worker fail on it."""
    path = kill_switch_path(disable_file)
    try:
        path.stat()
    except OSError as exc:
        if exc.errno not in _ABSENT:
            shown = str(path) if len(str(path)) <= 120 else str(path)[:120] + "..."
            raise RuntimeError(
                f"the kill-switch file {shown} cannot be checked ({exc.strerror}); refusing to "
                f"start: set {DISABLE_FILE_ENV} to a path whose directory the service can search"
            ) from None


def disabled_by_env() -> bool:
    """The kill switch as the environment sets it now (NB2PROD_MODEL_DISABLED)."""
    return os.environ.get(DISABLED_ENV, "") not in ("", "0", "false")


class OverBudget(Exception):
    """The model path did not answer within the time budget: the fallback answers, ``timeout``."""


class NoAnswer(Exception):
    """Neither the model nor a fallback could answer: HTTP 503 with the reason, no traceback."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def response(self) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse({"error": self.message, "reason": self.reason}, status_code=503)


class Guard:
    """Decides when the model answers and when the fallback does (SPEC section 6 reasons).

    ``failures=None``: no circuit breaker. ``disable_file=None``: the kill switch is ``disabled``
    alone, decided once (by default NB2PROD_MODEL_DISABLED, read now).
    """

    def __init__(
        self,
        *,
        timeout_ms: int | None,
        min_confidence: float | None,
        failures: int | None,
        reset_s: float,
        disable_file: str | None,
        disabled: bool | None = None,
    ) -> None:
        self.timeout_s = timeout_ms / 1000 if timeout_ms else None
        self.min_confidence = min_confidence
        self.failures = failures
        self.reset_s = reset_s
        self.disabled = disabled_by_env() if disabled is None else disabled
        # The kill switch on a running service: while this file exists the fallback answers.
        # A file reaches every worker at once and adds no route an attacker could call.
        self.disable_file = None if disable_file is None else kill_switch_path(disable_file)
        self._file_seen = False  # the file's state at the last stat() that answered
        self._stat_error: int | None = None  # errno of the failing stat(), logged once
        self._lock = threading.Lock()
        self._consecutive = 0
        self._opened_at: float | None = None
        self._trial = False
        # a stuck model call keeps its thread; the pool bounds how many can pile up
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="nb2prod-model")

    def switched_off(self) -> bool:
        """The kill switch: NB2PROD_MODEL_DISABLED at start, or the file now (one stat()).

        Should stat() start failing on a running service (the directory's permissions changed),
        the switch keeps its last known state and the failure is logged once: never an error
        for the request, never a flapping model.
        """
        return self.disabled or (self.disable_file is not None and self._file_exists())

    def _file_exists(self) -> bool:
        assert self.disable_file is not None
        try:
            self.disable_file.stat()
        except OSError as exc:
            if exc.errno in _ABSENT:
                self._file_seen, self._stat_error = False, None
            elif exc.errno != self._stat_error:
                self._stat_error = exc.errno
                logger.error(
                    "cannot check the kill-switch file; keeping the model %s",
                    "off" if self._file_seen else "on",
                    extra={"fields": {"file": str(self.disable_file)[:200], "error": exc.strerror}},
                )
            return self._file_seen
        self._file_seen, self._stat_error = True, None
        return True

    def admit(self) -> str | None:
        """None when the model may be tried, else the reason the fallback must answer."""
        if self.switched_off():
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
        A TimeoutError, the budget's or one the model path raised, is :class:`OverBudget`.
        """
        future = asyncio.wrap_future(self._pool.submit(fn, *args))
        try:
            if self.timeout_s is None:
                return await future
            return await asyncio.wait_for(future, self.timeout_s)
        except TIMEOUT_ERRORS:
            raise OverBudget from None

    def record(self, ok: bool) -> None:
        if self.failures is None:  # no circuit breaker: nothing to count
            return
        with self._lock:
            self._trial = False
            if ok:
                self._consecutive = 0
                self._opened_at = None
                return
            self._consecutive += 1
            if self._consecutive >= self.failures:
                self._opened_at = time.monotonic()

    def low_confidence(self, outputs: list[Any]) -> set[int]:
        """The positions of the outputs whose ``confidence`` is below ``min_confidence``."""
        floor = self.min_confidence
        if floor is None:
            return set()
        return {
            i
            for i, out in enumerate(outputs)
            if isinstance(c := getattr(out, "confidence", None), (int, float)) and c < floor
        }


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
            for (_, future), result in zip(batch, results, strict=False):
                if not future.done():  # a waiter past its deadline or gone has cancelled it
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._start()
