"""The guard's model threads: a model call runs off the event loop, its answer comes back to the
loop, the time budget holds while the call is still running, and a stuck call costs one thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from nb2prod.runtime import guard


def make(timeout_ms: int | None) -> guard.Guard:
    return guard.Guard(
        timeout_ms=timeout_ms, min_confidence=None, failures=None, reset_s=1.0, disable_file=None
    )


def test_a_call_answers_from_a_model_thread_and_its_errors_reach_the_caller() -> None:
    checked = make(timeout_ms=1000)

    def where(x: int) -> tuple[int, str]:
        return x * 2, threading.current_thread().name

    def fails() -> None:
        raise ValueError("bad input")

    def own_timeout() -> None:
        raise TimeoutError("the model's own")

    async def run() -> None:
        value, name = await checked.call(where, 21)
        assert value == 42 and name.startswith("nb2prod-model")
        with pytest.raises(ValueError, match="bad input"):
            await checked.call(fails)
        with pytest.raises(guard.OverBudget):  # a TimeoutError the model raised: the budget's
            await checked.call(own_timeout)

    asyncio.run(run())


def test_past_the_budget_the_caller_hears_at_once_and_the_late_answer_is_dropped() -> None:
    checked = make(timeout_ms=50)
    release = threading.Event()
    done: list[str] = []

    def stuck() -> str:
        release.wait(5)
        done.append("stuck")
        return "late"

    async def run() -> None:
        start = time.monotonic()
        with pytest.raises(guard.OverBudget):
            await checked.call(stuck)
        assert time.monotonic() - start < 1.0  # the budget, not the call
        assert await checked.call(lambda: "next") == "next"  # another thread answers meanwhile
        release.set()
        for _ in range(100):  # the late answer arrives on the loop and is dropped, no error
            if done:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.02)

    asyncio.run(run())
    assert done == ["stuck"]


def test_a_call_still_queued_past_its_budget_never_runs() -> None:
    threads = guard.ModelThreads(1)
    release = threading.Event()
    ran: list[str] = []

    def block() -> None:
        release.wait(5)

    async def run() -> None:
        first = threads.submit(block)
        second = threads.submit(ran.append, "second")
        with pytest.raises(guard.OverBudget):
            await guard.within(second, 0.05)  # the one thread is busy: never started
        release.set()
        await first
        assert await threads.submit(ran.append, "third") is None

    asyncio.run(run())
    assert ran == ["third"]


def test_threads_are_started_as_calls_need_them_and_kept() -> None:
    threads = guard.ModelThreads(3)
    release = threading.Event()

    async def run() -> None:
        for i in range(20):  # one call at a time: one thread
            assert await threads.submit(lambda i=i: i) == i
        assert threads._started == 1
        stuck = [threads.submit(release.wait, 5) for _ in range(5)]  # more than 3 at once
        await asyncio.sleep(0.05)
        assert threads._started == 3  # bounded: the rest wait in the queue
        release.set()
        assert await asyncio.gather(*stuck) == [True] * 5

    asyncio.run(run())
