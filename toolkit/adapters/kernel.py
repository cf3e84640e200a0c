"""Adapter: run a notebook top to bottom with papermill in a kernel of *this* environment.

The only module that imports papermill. A private kernelspec pointing at ``sys.executable`` is
written into the run's scratch directory, so a fresh virtualenv needs no ``ipykernel install``
and a user's own ``python3`` kernelspec (perhaps another Python) is never picked by accident.

What the kernel prints never reaches the packager's console: the kernel process is started with its
stdout and stderr on a log file (opened for appending, shared with this adapter, which writes a
header line as each cell starts). The kernel echoes its cells' prints there as well as to the
notebook (``quiet=False``), and leaves file descriptors 1 and 2 alone (``capture_fd_output=False``),
so output below Python (C extensions, joblib/loky workers and subprocesses, which inherit those
descriptors, a crashing kernel's last words) lands in the log once, in the order it was written,
and not in the executed notebook (ipykernel would otherwise copy it to both, twice in the log).

Given a :class:`~.children.Stopping`, the kernel's graceful shutdown (it is asked to exit and given
jupyter_client's usual grace, then SIGTERM, then SIGKILL) waits in the background: a kernel with
scikit-learn or pandas loaded takes most of a second to exit after the last cell, and nothing
after the notebook's run needs it gone, only the run's end (which waits for it).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import nbformat

from .children import Stopping

KERNEL_NAME = "nb2prod-python"

# Called as each code cell starts with (its position among the code cells that run, 1-based, their
# number, the cell); returns the header line written to the log above the cell's output. Called
# with (position, total, None) when that cell has run (its return value is not used).
CellHook = Callable[[int, int, nbformat.NotebookNode | None], str]


@dataclass(frozen=True)
class CellFailure:
    """A cell of the executed notebook raised."""

    # index in the notebook that was executed (a dead kernel: in the one papermill saved)
    cell_index: int
    ename: str
    evalue: str


def run_notebook(
    node: nbformat.NotebookNode,
    *,
    output_path: Path,
    cwd: Path,
    parameters: Mapping[str, Any],
    scratch: Path,
    log_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: int | None = None,
    on_cell: CellHook | None = None,
    stopping: Stopping | None = None,
) -> CellFailure | None:
    """Execute ``node`` and save the executed notebook to ``output_path``.

    ``env`` is the kernel's whole environment (None: this process's, as jupyter_client does by
    default). Everything the kernel and its children print goes to ``log_path`` (created or
    appended to; default ``scratch/kernel.log``), never to this process's stdout/stderr. Returns None on success, or the failing
    cell (papermill has already saved the notebook with that cell marked). With ``stopping``,
    the kernel exits in the background once asked to (``stopping`` waits for it).
    """
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    input_path = scratch / "input.ipynb"
    nbformat.write(node, input_path)
    log_path = log_path or scratch / "kernel.log"
    with (
        log_path.open("ab", buffering=0) as log,
        _private_kernelspec(scratch / "jupyter"),
        _papermill_logging_to(log),
    ):
        counted = _CellCounter(log, on_cell)
        try:
            papermill.execute_notebook(
                str(input_path),
                str(output_path),
                parameters=dict(parameters),
                kernel_name=KERNEL_NAME,
                cwd=str(cwd),
                progress_bar=False,
                log_output=False,
                execution_timeout=timeout_s,
                kernel_manager_class=_manager(env, log, stopping),
                on_notebook_start=counted.notebook_starts,
                on_cell_execute=counted.cell_starts,
                on_cell_executed=counted.cell_ends,
            )
        except PapermillExecutionError as exc:
            return CellFailure(exc.cell_index, exc.ename, exc.evalue)
        except DeadKernelError:  # papermill has saved the notebook; the log has its last words
            return CellFailure(
                counted.index, "DeadKernelError",
                "the kernel died while the cell ran (a crash in a C extension, out of memory, "
                "os._exit, or a signal)",
            )  # fmt: skip
    return None


@contextmanager
def _papermill_logging_to(log: IO[bytes]) -> Iterator[None]:
    """papermill's and nbclient's log records (``Kernel died while waiting for execute reply``)
    go to the kernel's log while it runs, not to the console by logging's last resort."""
    logger = logging.getLogger("papermill")

    class _ToLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            log.write(f"[papermill] {record.getMessage()}\n".encode(errors="replace"))

    handler = _ToLog(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


class _CellCounter:
    """nbclient's hooks: counts the code cells of the notebook papermill runs (its injected
    parameters cell included) and writes each one's header to the log as it starts."""

    def __init__(self, log: IO[bytes], on_cell: CellHook | None) -> None:
        self.log, self.on_cell = log, on_cell
        self.total = self.started = 0
        self.index = -1  # nbclient's index of the cell that runs
        self.quiet = False  # the cell that runs is not announced

    def notebook_starts(self, notebook: nbformat.NotebookNode, **_: Any) -> None:
        self.total = sum(1 for cell in notebook.cells if _runs(cell) and not _quiet(cell))

    def cell_starts(self, cell: nbformat.NotebookNode, cell_index: int, **_: Any) -> None:
        self.index = cell_index
        self.quiet = _quiet(cell)
        if self.quiet:  # nb2prod's own bookkeeping: neither counted nor announced
            return
        self.started += 1
        header = (
            self.on_cell(self.started, self.total, cell)
            if self.on_cell
            else f"cell {self.started} of {self.total}"
        )
        self.log.write(f"\n──── {header}\n".encode())

    def cell_ends(self, **_: Any) -> None:
        if self.on_cell and not self.quiet:
            self.on_cell(self.started, self.total, None)


def _quiet(cell: nbformat.NotebookNode) -> bool:
    """A cell the caller marked ``metadata.nb2prod.quiet`` (bookkeeping of its own, instant)."""
    return bool(cell.get("metadata", {}).get("nb2prod", {}).get("quiet"))


def _runs(cell: nbformat.NotebookNode) -> bool:
    """Whether nbclient executes ``cell`` (it skips markdown and empty code cells)."""
    return bool(cell.cell_type == "code" and cell.source.strip())


def log_tail(log_path: Path, lines: int = 20) -> list[str]:
    """The last ``lines`` non-blank lines of a kernel log (read from its end: a log can be big)."""
    try:
        with log_path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    # a progress bar's carriage returns: keep what the line finally showed
    shown = (line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n"))
    return [line for line in shown if line][-lines:]


@contextmanager
def _private_kernelspec(root: Path) -> Iterator[None]:
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            # the kernel listens on loopback only; its TCP warning would only be noise
            "--IPKernelApp.log_level=ERROR",
            # the kernel's stdout/stderr are the log file: cells' prints are echoed there, and
            # output below Python (C extensions, workers, subprocesses) goes there only, once
            "--IPKernelApp.quiet=False",
            "--IPKernelApp.capture_fd_output=False",
        ],  # fmt: skip
        "display_name": f"nb2prod ({sys.executable})",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    previous = os.environ.get("JUPYTER_PATH")
    # jupyter_client reads JUPYTER_PATH each time it looks a kernelspec up
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root), previous]))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = previous


def _manager(env: Mapping[str, str] | None, log: IO[bytes], stopping: Stopping | None) -> type:
    """nbclient's kernel manager, starting the kernel with its stdout and stderr on ``log`` and,
    given ``env``, with that environment instead of a copy of ``os.environ`` (jupyter_client's
    provisioner takes ``env`` and Popen's ``stdout``/``stderr`` from ``start_kernel``'s keywords
    and adds only its own ``JPY_*`` variables). Given ``stopping``, a graceful shutdown sends the
    request and leaves the waiting for the kernel's exit to ``stopping``."""
    from jupyter_client.manager import AsyncKernelManager

    kernel_env = None if env is None else dict(env)

    class _Manager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            if kernel_env is not None:
                kw["env"] = dict(kernel_env)
            kw["stdout"] = kw["stderr"] = log
            await super().start_kernel(**kw)

        async def _async_finish_shutdown(
            self, waittime: float | None = None, pollinterval: float = 0.1, restart: bool = False
        ) -> None:
            # jupyter_client: wait for the kernel to exit after the shutdown request, SIGTERM it
            # after half the grace and SIGKILL it after the rest; here the same, in the background
            process = getattr(self.provisioner, "process", None)
            if stopping is None or restart or not isinstance(process, subprocess.Popen):
                await super()._async_finish_shutdown(waittime, pollinterval, restart)
                return
            grace_s = max(self.shutdown_wait_time, 0) if waittime is None else waittime
            assert self.provisioner is not None
            self.provisioner.process = None  # type: ignore[attr-defined]  # the stop's now
            stopping.defer(lambda: exit_within(process, grace_s))

    return _Manager


def exit_within(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """Wait for ``process`` to exit: SIGTERM after half of ``grace_s``, SIGKILL after the rest."""
    for then in (process.terminate, process.kill):
        try:
            process.wait(timeout=grace_s / 2)
            return
        except subprocess.TimeoutExpired:
            then()
    process.wait()
