"""The serving workers' resource series (runtime/telemetry.py Resources, InFlight).

BentoML serves /metrics from prometheus_client's multiprocess directory, where the process_*
collector does not work: each worker writes its own memory, CPU seconds, start and in-flight
series there. The multiprocess test runs real worker processes against one directory and reads
it back with prometheus_client's own MultiProcessCollector, as BentoML does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from nb2prod.runtime.telemetry import InFlight, Resources, resident_bytes
from prometheus_client import CollectorRegistry

MIB = 1 << 20

# one worker: starts, burns CPU, refreshes; a graceful exit is marked dead as BentoML does
WORKER = textwrap.dedent(
    """
    import sys, time
    from nb2prod.runtime.telemetry import Resources
    resources = Resources()
    end = time.process_time() + float(sys.argv[1])
    while time.process_time() < end:
        pass
    resources.refresh()
    if sys.argv[2] == "exit":
        from prometheus_client import multiprocess
        import os
        multiprocess.mark_process_dead(os.getpid())
    print(__import__("os").getpid())
    """
)


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    found = registry.get_sample_value(name, labels)
    return found


def samples(registry: CollectorRegistry, name: str) -> list[Any]:
    return [s for metric in registry.collect() for s in metric.samples if s.name == name]


def test_each_worker_writes_its_own_series_in_multiprocess_mode(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    def worker(cpu_s: float, end: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", WORKER, str(cpu_s), end],
            env=env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return int(done.stdout.strip())

    gone = worker(0.3, "exit")  # a worker that exited (restarted, say)
    live = worker(0.2, "stay")  # one still running: its pid's files stay
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(tmp_path))
    # starts and CPU seconds count every worker, the one that exited too
    assert value(registry, "nb2prod_worker_starts_total") == 2
    cpu = value(registry, "nb2prod_process_cpu_seconds_total")
    assert cpu is not None and 0.5 <= cpu < 5
    # memory and start time: one series per live worker, labelled with its pid
    memory = samples(registry, "nb2prod_process_resident_memory_bytes")
    assert [s.labels for s in memory] == [{"pid": str(live)}]
    assert 10 * MIB < memory[0].value < 4096 * MIB  # a Python interpreter with pydantic loaded
    started = samples(registry, "nb2prod_process_start_time_seconds")
    assert [s.labels["pid"] for s in started] == [str(live)] and started[0].value > 1.7e9
    assert str(gone) not in {s.labels.get("pid") for s in memory + started}
    assert value(registry, "nb2prod_requests_in_flight") == 0


def test_refresh_adds_the_cpu_used_since_the_last_one_and_reads_memory() -> None:
    ticks = iter([1.0, 1.5, 1.5, 4.0])
    registry = CollectorRegistry()
    resources = Resources(clock=lambda: next(ticks), registry=registry)  # refreshes once: 1.0
    assert value(registry, "nb2prod_process_cpu_seconds_total") == 1.0
    assert value(registry, "nb2prod_worker_starts_total") == 1
    resources.refresh()
    resources.refresh()  # no CPU used since: nothing added
    assert value(registry, "nb2prod_process_cpu_seconds_total") == 1.5
    resources.refresh()
    assert value(registry, "nb2prod_process_cpu_seconds_total") == 4.0
    rss = value(registry, "nb2prod_process_resident_memory_bytes")
    assert rss is not None and rss > 10 * MIB


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
def test_resident_bytes_is_what_the_kernel_reports() -> None:
    status = Path("/proc/self/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    found = resident_bytes()
    assert found is not None and abs(found - kib * 1024) < 0.1 * kib * 1024


def test_in_flight_counts_api_requests_and_a_scrape_refreshes() -> None:
    ticks = iter([0.0, 2.0, 2.0, 2.0, 2.0])
    registry = CollectorRegistry()
    resources = Resources(clock=lambda: next(ticks), registry=registry)
    seen: list[float | None] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(value(registry, "nb2prod_requests_in_flight"))
        if scope["path"] == "/v1/boom":
            raise RuntimeError("boom")

    middleware = InFlight(app, resources=resources)

    async def call(path: str, kind: str = "http") -> None:
        await middleware({"type": kind, "path": path}, None, None)

    asyncio.run(call("/v1/predict"))
    asyncio.run(call("/v2/models/m/infer"))
    with pytest.raises(RuntimeError):
        asyncio.run(call("/v1/boom"))
    asyncio.run(call("/readyz"))  # not an API request
    asyncio.run(call("/", kind="lifespan"))
    assert seen == [1, 1, 1, 0, 0]
    assert value(registry, "nb2prod_requests_in_flight") == 0  # the failed one too
    assert value(registry, "nb2prod_process_cpu_seconds_total") == 0
    asyncio.run(call("/metrics"))  # the worker answering the scrape refreshes first
    assert value(registry, "nb2prod_process_cpu_seconds_total") == 2.0
