"""The cold start in phases: the runtime's startup marks (runtime/startup.py), verify reading them
from a server's log, the phases they make, the report and deploy/'s startup probe sized from them."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nb2prod.adapters import bento
from nb2prod.notebook.config import DeployConfig
from nb2prod.ops.deploy import sizing
from nb2prod.pipeline.report import _cold_start, _cold_start_pictures, evaluation_pictures
from nb2prod.pipeline.verify import (
    VerifyReport,
    cold_start_phases,
    served_cold_start,
    startup_marks,
)
from nb2prod.release.manifest import ColdStart, Serving
from nb2prod.runtime import startup
from nb2prod.runtime.telemetry import JsonFormatter

from tests.test_deploy import facts

LINUX = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def marks(imported: float, loaded: float, pid: int = 7) -> dict[str, float | int]:
    return {"pid": pid, "process_start_s": 99.0, "imported_s": imported, "loaded_s": loaded}


def line(entry: dict[str, object], prefix: str = "") -> str:
    return prefix + json.dumps(entry)


# --- the runtime's marks ----------------------------------------------------------------------


@LINUX
def test_process_start_is_on_the_boot_clock_the_marks_use() -> None:
    before = startup.now()
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)  # fmt: skip
    try:
        started = startup.process_start(child.pid)
    finally:
        child.communicate(b"")
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert started is not None
    assert before - 2 * tick <= started <= startup.now() + tick
    own = startup.process_start()
    assert own is not None and own < before


def test_process_start_of_a_process_that_does_not_exist_is_none(tmp_path: Path) -> None:
    assert startup.process_start(2**22 + 12345) is None
    (tmp_path / "5").mkdir()
    (tmp_path / "5" / "stat").write_text("5 (odd) name) S 1 2")  # too few fields
    assert startup.process_start(5, proc=tmp_path) is None


@LINUX
def test_the_startup_line_is_json_that_verify_reads_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(startup, "_MARKS", {})
    startup.imported()
    first = startup._MARKS["imported_s"]
    time.sleep(0.01)
    startup.imported()  # the first call counts
    logger = logging.getLogger("nb2prod.test-startup")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        returned = startup.loaded(logger)
    finally:
        logger.removeHandler(handler)
    out = capsys.readouterr().out
    # a worker's stdout reaches BentoML's log with a prefix of its own
    found = startup_marks("INFO noise\n" + "[worker 1] " + out + "{not json\n")
    assert found == [returned]
    assert returned["imported_s"] == first <= returned["loaded_s"]
    assert returned["pid"] == os.getpid() and returned["process_start_s"] < first


def test_startup_marks_ignore_other_json_lines() -> None:
    log = "\n".join([
        line({"message": "request", "startup": "x"}),
        line({"message": "started", "startup": "not a mapping"}),
        line({"message": "started", "other": 1}),
        line({"message": "started", "startup": marks(1.0, 2.0)}, prefix="2026 INFO "),
    ])  # fmt: skip
    assert startup_marks(log) == [marks(1.0, 2.0)]


# --- the phases -------------------------------------------------------------------------------


def test_phases_run_from_the_server_start_to_the_first_answer_and_sum_to_the_total() -> None:
    cold = cold_start_phases(100.0, [marks(102.5, 103.25)], ready=103.5, first_s=0.125)
    assert cold == ColdStart(import_s=2.5, model_load_s=0.75, first_answer_s=0.375, total_s=3.625)
    assert math.isclose(cold.import_s + cold.model_load_s + cold.first_answer_s, cold.total_s)


def test_phases_follow_the_first_worker_to_load_its_model() -> None:
    slow, fast = marks(101.0, 105.0, pid=1), marks(101.5, 102.0, pid=2)
    cold = cold_start_phases(100.0, [slow, fast], ready=102.25, first_s=0.25)
    assert cold is not None
    assert (cold.import_s, cold.model_load_s, cold.first_answer_s) == (1.5, 0.5, 0.5)


def test_a_ready_seen_within_a_tick_before_the_worker_said_loaded_counts_no_negative_time() -> None:
    cold = cold_start_phases(100.0, [marks(101.0, 102.0)], ready=101.99, first_s=0.05)
    assert cold is not None and cold.first_answer_s == 0.05 and cold.total_s == 2.05


@pytest.mark.parametrize(
    "found",
    [
        [],  # no worker line in the log
        [{"pid": 1, "imported_s": None, "loaded_s": 102.0}],  # the service did not mark imported
        [marks(99.0, 102.0)],  # imported before the server started: another server's line
        [marks(103.0, 102.0)],  # out of order
    ],
)
def test_no_phases_without_a_complete_worker_in_order(found: list[dict[str, object]]) -> None:
    assert cold_start_phases(100.0, found, ready=104.0, first_s=0.1) is None


@LINUX
def test_a_served_cold_start_runs_from_the_servers_process_start(tmp_path: Path) -> None:
    """The server's start from /proc, its worker's marks from its log, /readyz at the start
    plus the adapter's time to ready."""
    started = startup.process_start(os.getpid())
    assert started is not None
    log = tmp_path / "serve.log"
    log.write_text("circus starting\n" + line({"message": "started",
                   "startup": marks(started + 1.5, started + 2.0)}) + "\n")  # fmt: skip
    server = bento.Server(url="http://127.0.0.1:1", pid=os.getpid(), cold_start_s=2.25, log=log)
    cold = served_cold_start(server, 0.25)
    assert cold is not None
    assert (cold.import_s, cold.model_load_s, cold.first_answer_s, cold.total_s) == (
        1.5, 0.5, 0.5, 2.5,
    )  # fmt: skip
    assert served_cold_start(server, None) is None  # no first answer timed
    log.write_text("no startup line\n")
    assert served_cold_start(server, 0.25) is None
    log.unlink()
    assert served_cold_start(server, 0.25) is None


def test_verify_summary_names_the_phases() -> None:
    report = VerifyReport(3, (), 422, 4.4, {},
                          cold_start=ColdStart(import_s=2.1, model_load_s=0.3, first_answer_s=2.05,
                                               total_s=4.45))  # fmt: skip
    assert report.summary().endswith(
        "ready in 4.4 s (import 2.1 s, model load 0.3 s, first answer 2.0 s)"
    )
    assert VerifyReport(3, (), 422, 4.4, {}).summary().endswith("ready in 4.4 s")


# --- what is sized and shown from them --------------------------------------------------------


def test_serving_sizes_from_the_phases_total_and_falls_back_to_ready() -> None:
    cold = ColdStart(import_s=10.0, model_load_s=5.0, first_answer_s=1.0, total_s=16.0)
    assert Serving(cold_start_s=15.0, memory_bytes=None, cold_start=cold).startup_s == 16.0
    assert Serving(cold_start_s=15.0, memory_bytes=None).startup_s == 15.0
    # release.json from before the phases reads as it did
    old = Serving.model_validate({"cold_start_s": 15.0, "memory_bytes": 1})
    assert old.cold_start is None


@pytest.mark.parametrize(
    ("total", "threshold"),
    [
        (4.5, 12),  # 4 x 4.5 s = 18 s: the 60 s floor, 12 periods of 5 s
        (16.0, 13),  # 4 x 16 s = 64 s -> 13 periods (65 s)
        (40.0, 32),  # 160 s
    ],
)
def test_the_startup_probe_is_at_least_four_times_the_measured_total_and_a_minute(
    total: float, threshold: int
) -> None:
    cold = ColdStart(import_s=total / 2, model_load_s=total / 4, first_answer_s=total / 4,
                     total_s=total)  # fmt: skip
    size = sizing(facts(cold_start_s=total, cold_start=cold), DeployConfig())
    assert size.startup_failure_threshold == threshold
    assert size.startup_budget_s >= max(60, 4 * total)
    assert size.startup_budget_s - 5 < max(60, 4 * total)  # no more than one period above
    assert size.cold_start_note == (
        f"measured by verify: {total:.1f} s = import {total / 2:.1f} s + model load "
        f"{total / 4:.1f} s + first answer {total / 4:.1f} s"
    )


def test_the_report_shows_each_phase_with_its_share_and_draws_them() -> None:
    cold = ColdStart(import_s=2.0, model_load_s=1.0, first_answer_s=1.0, total_s=4.0)
    shown = _cold_start(cold)
    assert shown is not None
    assert [(p["name"], p["seconds"], p["share"]) for p in shown["phases"]] == [
        ("import", 2.0, 0.5), ("model load", 1.0, 0.25), ("first answer", 1.0, 0.25),
    ]  # fmt: skip
    assert _cold_start(None) is None


class _NoEvaluation:
    holdout = None
    latency = ()


def test_the_cold_start_picture_is_a_png() -> None:
    cold = ColdStart(import_s=2.0, model_load_s=1.0, first_answer_s=1.0, total_s=4.0)
    pictures = _cold_start_pictures(cold)
    assert [(section, caption) for section, caption, _ in pictures] == [
        ("cold_start", "Cold start in phases")
    ]
    assert pictures[0][2].startswith(b"\x89PNG")
    assert _cold_start_pictures(None) == []
    assert evaluation_pictures(_NoEvaluation()) == []  # type: ignore[arg-type]
