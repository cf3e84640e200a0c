"""What execute shows while the notebook runs, what it keeps of the kernel's output, and what it
says of the files the notebook wrote beside itself (no kernel here: see tests/e2e/test_execute_log.py)."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from nb2prod import cli
from nb2prod.adapters import kernel
from nb2prod.adapters.kernel import log_tail
from nb2prod.notebook.annotations import Cell, Role
from nb2prod.pipeline import beside
from nb2prod.pipeline.capture import CAPTURE_TAG
from nb2prod.pipeline.kernellog import cell_line, keep_last, last_log_path, tail_block
from rich.console import Console


def runnable(source: str, index: int | None = None, *tags: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if index is not None:
        cell.metadata["nb2prod"] = {"index": index}
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


# --- the progress line of a cell ------------------------------------------------------------


def test_a_cell_is_named_by_its_place_its_index_role_and_first_line() -> None:
    source = "#| nb2prod: train\nsearch.fit(X, y)\nprint('done')"
    cells = {7: Cell(7, source, Role.TRAIN)}
    line = cell_line(5, 14, runnable(source, 7), cells)
    assert line == "[5/14] cell 7 (train) `search.fit(X, y)`"


def test_a_long_first_line_is_shortened_and_an_untagged_cell_has_no_role() -> None:
    source = "x = " + " + ".join(["1"] * 60)
    line = cell_line(1, 2, runnable(source, 0), {0: Cell(0, source)})
    assert line.startswith("[1/2] cell 0 `x = 1 + 1") and line.endswith("...`")
    assert len(line) < 90


def test_papermill_and_nb2prod_cells_say_what_they_are() -> None:
    assert cell_line(1, 3, runnable("alpha = 2", None, "injected-parameters"), {}) == (
        "[1/3] the parameters papermill injected"
    )
    probe = cell_line(3, 3, runnable("from nb2prod.probe import x; x()", None, CAPTURE_TAG), {})
    assert probe.startswith("[3/3] nb2prod's probe") and "import" not in probe


# --- the console: one redrawn line on a terminal, slow steps only elsewhere -------------------


def plain_console(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> io.StringIO:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=100, highlight=False, emoji=False)
    monkeypatch.setattr(cli, "console", console)
    return out


def test_off_a_terminal_only_steps_of_a_second_or_more_are_printed_with_their_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = plain_console(monkeypatch, terminal=False)
    clock = iter([0.0, 0.2, 10.0, 14.5, 20.0, 20.1, 30.0])
    monkeypatch.setattr(cli.time, "monotonic", lambda: next(clock))
    progress = cli.ConsoleProgress()
    progress.started("execute", "papermill, top to bottom")
    progress.update("execute", "[1/3] cell 0 `import pandas as pd`")  # 0.2 s: not printed
    progress.update("execute", "")
    progress.update("execute", "[2/3] cell 1 (train) `search.fit(X, y)`")  # 4.5 s
    progress.update("execute", "")
    progress.update("execute", "[3/3] cell 2 `print(x)`")  # 0.1 s
    progress.finished("execute", 30.0, "2 examples")
    lines = out.getvalue().splitlines()
    assert lines == [
        "▸ execute   papermill, top to bottom",
        "  [2/3] cell 1 (train) `search.fit(X, y)`  4.5 s",
        "✓ execute    30.00 s  2 examples",
    ]


def test_on_a_terminal_the_step_line_is_redrawn_and_gone_when_the_stage_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = plain_console(monkeypatch, terminal=True)
    progress = cli.ConsoleProgress()
    progress.started("execute", "papermill")
    progress.update("execute", "[1/2] cell 0 `time.sleep(1)`")
    time.sleep(0.6)  # the live line refreshes 4 times a second: the elapsed time ticks
    progress.update("execute", "[2/2] cell 1 `fit()`")
    progress.finished("execute", 1.0, "done")
    drawn = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    assert "[1/2] cell 0 `time.sleep(1)`  0." in drawn and "[2/2] cell 1 `fit()`" in drawn
    assert cli._live_lines == []  # stopped: nothing is redrawn any more
    # transient: the last thing printed is the stage's end, on its own line
    assert drawn.rstrip().splitlines()[-1].endswith("✓ execute     1.00 s  done")


def test_an_error_stops_the_step_line_before_it_is_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain_console(monkeypatch, terminal=True)
    progress = cli.ConsoleProgress()
    progress.update("execute", "[1/1] cell 0 `raise ValueError()`")
    assert len(cli._live_lines) == 1
    with pytest.raises(SystemExit), cli._errors():
        raise cli.Nb2ProdError("boom")
    assert cli._live_lines == []


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.04, "0.0 s"), (4.25, "4.2 s"), (59.9, "59.9 s"), (187, "3 min 07 s")]
)
def test_elapsed_time(seconds: float, shown: str) -> None:
    assert cli.format_elapsed(seconds) == shown


# --- the kernel log's last lines --------------------------------------------------------------


def test_the_last_lines_of_the_log_skip_blanks_and_keep_what_a_progress_bar_ended_on(
    tmp_path: Path,
) -> None:
    log = tmp_path / "kernel.log"
    log.write_text(
        "\n".join(f"line {i}" for i in range(100)) + "\n\n  \nfit 10%\rfit 50%\rfit 100%\n"
    )
    tail = log_tail(log, 3)
    assert tail == ["line 98", "line 99", "fit 100%"]


def test_the_last_lines_of_a_big_log_are_read_from_its_end(tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    with log.open("w") as f:
        for i in range(200_000):  # a few MB
            f.write(f"training line {i}\n")
    assert log_tail(log) == [f"training line {i}" for i in range(199_980, 200_000)]
    assert log_tail(tmp_path / "missing.log") == []


def test_the_error_shows_the_tail_indented_and_nothing_for_an_empty_log(tmp_path: Path) -> None:
    log = tmp_path / "kernel.log"
    log.write_text("\n──── [1/1] cell 0 `fit()`\nepoch 1\nepoch 2\n")
    assert tail_block(log) == (
        "\nthe kernel's last output:\n  | ──── [1/1] cell 0 `fit()`\n  | epoch 1\n  | epoch 2"
    )
    log.write_text("\n\n")
    assert tail_block(log) == ""


def test_the_last_successful_log_of_each_notebook_replaces_the_one_before(tmp_path: Path) -> None:
    one, other = tmp_path / "a" / "train.ipynb", tmp_path / "b" / "train.ipynb"
    log = tmp_path / "kernel.log"
    log.write_text("run 1\n")
    kept = keep_last(log, one)
    assert kept == last_log_path(one) and kept.read_text() == "run 1\n"
    assert os.environ["NB2PROD_CACHE_DIR"] in str(kept)  # the tests' own cache, not the user's
    log.write_text("run 2\n")
    assert keep_last(log, one) == kept and kept.read_text() == "run 2\n"
    assert last_log_path(other) != kept  # same name, another directory
    # no partial file left beside it (other tests of this session keep their own logs there)
    assert [p.name for p in kept.parent.iterdir() if p.name.startswith("train-")] == [kept.name]


# --- files written beside the notebook --------------------------------------------------------


def touch(path: Path, text: str = "x", mtime_ns: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def test_new_and_changed_files_are_named_and_untouched_ones_are_not(tmp_path: Path) -> None:
    touch(tmp_path / "data.csv", "a", 10**18)
    touch(tmp_path / "model.txt", "old", 10**18)
    touch(tmp_path / "out" / "keep.txt", "k", 10**18)
    before = beside.listing(tmp_path)
    touch(tmp_path / "submission.csv")
    touch(tmp_path / "model.txt", "new")
    touch(tmp_path / "out" / "scores.csv")
    (tmp_path / "data.csv").read_text()  # read, not written
    after = beside.listing(tmp_path)
    assert beside.written(before, after) == ["model.txt", "out/scores.csv", "submission.csv"]
    assert beside.files_written(before, after) == "model.txt, out/scores.csv, submission.csv"
    assert beside.files_written(after, after) == ""


def test_hidden_names_and_caches_are_left_out_and_deep_trees_are_one_entry(
    tmp_path: Path,
) -> None:
    before = beside.listing(tmp_path)
    touch(tmp_path / ".ipynb_checkpoints" / "nb-checkpoint.ipynb")
    touch(tmp_path / "__pycache__" / "helpers.cpython-311.pyc")
    touch(tmp_path / ".cache" / "x")
    touch(tmp_path / "runs" / "2024" / "01" / "events.out")
    after = beside.listing(tmp_path)
    assert beside.written(before, after) == ["runs/2024/"]


def test_the_listing_is_bounded_and_the_note_counts_what_it_does_not_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(beside, "MAX_ENTRIES", 50)
    before = beside.listing(tmp_path)
    for i in range(80):
        touch(tmp_path / f"part-{i:03d}.csv")
    after = beside.listing(tmp_path)
    assert len(after) == 50 and sorted(after)[0] == "part-000.csv"
    note = beside.files_written(before, after)
    assert (
        note == "part-000.csv, part-001.csv, part-002.csv, part-003.csv, part-004.csv and 45 more"
    )


# --- the kernel adapter's pieces that need no kernel ----------------------------------------


def test_each_code_cell_gets_a_header_in_the_log_and_the_hook_hears_its_start_and_end(
    tmp_path: Path,
) -> None:
    heard: list[tuple[int, int, str | None]] = []

    def on_cell(k: int, n: int, cell: nbformat.NotebookNode | None) -> str:
        heard.append((k, n, None if cell is None else cell.source))
        return f"[{k}/{n}] {cell.source if cell else ''}"

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# title"),
        nbformat.v4.new_code_cell("a = 1"),
        nbformat.v4.new_code_cell("   "),  # nbclient does not run an empty cell
        nbformat.v4.new_code_cell("b = 2"),
    ]
    with (tmp_path / "kernel.log").open("ab", buffering=0) as log:
        counter = kernel._CellCounter(log, on_cell)
        counter.notebook_starts(notebook=nb)
        counter.cell_starts(cell=nb.cells[1], cell_index=1)
        log.write(b"output of a\n")  # what the kernel writes, interleaved
        counter.cell_ends(cell=nb.cells[1], cell_index=1, execute_reply={})
        counter.cell_starts(cell=nb.cells[3], cell_index=3)
        assert counter.index == 3
    assert heard == [(1, 2, "a = 1"), (1, 2, None), (2, 2, "b = 2")]
    assert (tmp_path / "kernel.log").read_text() == (
        "\n──── [1/2] a = 1\noutput of a\n\n──── [2/2] b = 2\n"
    )


def test_papermills_warnings_go_to_the_log_while_it_runs_and_not_after(tmp_path: Path) -> None:
    import logging

    logger = logging.getLogger("papermill")
    before = list(logger.handlers)
    with (tmp_path / "kernel.log").open("ab", buffering=0) as log:
        with kernel._papermill_logging_to(log):
            logger.warning("Kernel died while waiting for execute reply.")
            logger.info("Executing notebook with kernel: x")  # below WARNING: not kept
        logger.warning("after the run")
    assert (tmp_path / "kernel.log").read_text() == (
        "[papermill] Kernel died while waiting for execute reply.\n"
    )
    assert logger.handlers == before


def test_the_kernel_is_started_with_its_output_on_the_log_and_the_given_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from jupyter_client.manager import AsyncKernelManager

    seen: dict[str, object] = {}

    async def fake_start(self: object, **kw: object) -> None:
        seen.update(kw)

    monkeypatch.setattr(AsyncKernelManager, "start_kernel", fake_start)
    with (tmp_path / "kernel.log").open("ab") as log:
        manager = kernel._manager({"PATH": "/bin"}, log, None)()
        asyncio.run(manager.start_kernel(env={"SECRET": "x"}, cwd="/tmp"))
        assert seen == {"env": {"PATH": "/bin"}, "stdout": log, "stderr": log, "cwd": "/tmp"}
        seen.clear()
        asyncio.run(kernel._manager(None, log, None)().start_kernel(cwd="/tmp"))
        assert seen == {"stdout": log, "stderr": log, "cwd": "/tmp"}  # env: jupyter_client's
