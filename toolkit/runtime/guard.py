"""When the model answers and when the fallback does: time budget, circuit breaker, kill switch,
confidence floor (SPEC section 6 reasons), and adaptive batching of single requests."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import threading
import time
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
        # a stuck model call keeps its thread; at most MODEL_THREADS can pile up
        self._threads = ModelThreads(MODEL_THREADS)

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
        """Run the model path in the guard's threads, within the time budget when one is set.

        The event loop only awaits, so a stuck call holds one model thread, never the server.
        A TimeoutError, the budget's or one the model path raised, is :class:`OverBudget`.
        """
        future = self._threads.submit(fn, *args)
        try:
            return await within(future, self.timeout_s)
        except TimeoutError:  # the model path's own; past the budget is OverBudget already
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


MODEL_THREADS = 8


async def within(future: asyncio.Future[Any], seconds: float | None) -> Any:
    """``await future``; past ``seconds`` (None: no limit) :class:`OverBudget`, and the future
    is failed with it, so whoever would answer it later finds it done.

    One timer on the loop, where ``asyncio.wait_for`` adds a task, a waiter and callbacks.
    """
    if seconds is None:
        return await future
    handle = asyncio.get_running_loop().call_later(seconds, _settle, future, None, OverBudget())
    try:
        return await future
    finally:
        handle.cancel()


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """In the loop: ``future``'s result or exception, unless it is done (past its deadline, or
    the request that waited for it went away)."""
    if future.done():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


class ModelThreads:
    """Where the model path runs off the event loop: up to ``size`` threads, started as calls
    need them and kept.

    A call is one item on a queue, and its answer one callback on the caller's loop
    (``call_soon_threadsafe``); concurrent.futures' pool with ``asyncio.wrap_future`` and
    ``wait_for`` adds a second future, its lock and condition, chained callbacks, a task and a
    waiter (30 to 40 us more per model call on 2 cores, benchmarks/serve_floor.py). A call still
    queued when its future is done (past its budget) is not started. The threads are daemons: a
    model call that never returns holds its thread, not the process's exit.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a call
        self._started = 0

    def submit(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        """The future of ``fn(*args)`` run in a model thread, answered in this thread's loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            if self._idle:
                self._idle -= 1
                start = False
            else:
                start = self._started < self.size
                self._started += start
        self._queue.put((loop, future, fn, args))
        if start:
            name = f"nb2prod-model_{self._started - 1}"
            threading.Thread(target=self._work, name=name, daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            loop, future, fn, args = self._queue.get()
            answer: tuple[Any, BaseException | None] | None = None
            if not future.done():  # else past its budget before it started: not run
                try:
                    answer = (fn(*args), None)
                except BaseException as exc:  # noqa: BLE001 - the caller's to handle
                    answer = (None, exc)
            with self._lock:  # idle before the answer: the caller's next call finds this thread
                self._idle += 1
            if answer is not None:  # a closed loop (RuntimeError): nobody waits for it any more
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, future, *answer)
            del loop, future, fn, args, answer  # an idle thread holds no call's objects


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
