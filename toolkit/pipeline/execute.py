"""The execute stage of ``package``: run the notebook (papermill) and probe what the release needs.

The notebook that runs is the user's notebook with ``skip`` cells left out and nb2prod's probe
cell appended (one call into :mod:`nb2prod.probe`). Every cell keeps its original index in ``metadata.nb2prod.index`` so an error
names the cell the user sees.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from ..adapters.kernel import run_notebook
from ..errors import ExecutionError
from ..notebook.annotations import AnnotatedNotebook, Role
from ..probe.protocol import ProbePlan
from ..progress import Progress, Silent
from ..scratch import keep_dir
from .beside import files_written, listing
from .capture import (
    CAPTURE_TAG,
    Capture,
    probe_cell_source,
    probe_plan,
    read_capture,
    read_failure,
    traceback_file,
)
from .kernellog import announce, keep_last, tail_block
from .render import render_pipeline

if TYPE_CHECKING:
    from .parse import Parsed


@dataclass(frozen=True)
class Execution:
    """The executed notebook (probe cell removed) and what the probe found in the kernel."""

    executed: nbformat.NotebookNode
    capture: Capture

    def summary(self) -> str:
        return (
            f"{len(self.capture.result.examples)} examples, model {self.capture.result.model_class}"
        )


def execute_notebook(
    parsed: Parsed,
    parameters: Mapping[str, Any],
    scratch: Path,
    progress: Progress | None = None,
) -> Execution:
    """Run ``parsed``'s notebook with the probe, which imports the service code as it will be
    released (rendered into ``scratch``) and runs the examples through it."""
    capture_dir = scratch / "capture"
    capture_dir.mkdir()
    pipeline_file = scratch / "pipeline.py"
    pipeline_file.write_bytes(render_pipeline(parsed.context))
    plan = probe_plan(
        out_dir=capture_dir,
        pipeline_file=pipeline_file,
        notebook=parsed.notebook,
        extraction=parsed.extraction,
        config=parsed.config,
    )
    return execute(
        parsed.notebook,
        plan=plan,
        parameters=parameters,
        scratch=scratch,
        keep_failed_as=f"{parsed.notebook.path.stem}.executed.ipynb",
        env=kernel_environment(os.environ, parsed.config.execution.env),
        progress=progress,
    )


# What a kernel needs of the packager's environment to run a notebook as it runs in Jupyter:
# where programs and home are, locale and time zone, temporary files, this Python and its
# virtualenv, Jupyter's and matplotlib's directories, thread counts of the numeric libraries,
# CA bundles, Java for PySpark. Anything else (tokens, passwords, cloud credentials, nb2prod's own
# NB2PROD_* settings) stays out unless the config names it in [execution] env.
KERNEL_ENV = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
        "TMPDIR", "TMP", "TEMP", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUTF8",
        "PYTHONIOENCODING", "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "IPYTHONDIR",
        "MPLBACKEND", "MPLCONFIGDIR", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS",
        "VECLIB_MAXIMUM_THREADS", "CUDA_VISIBLE_DEVICES", "SSL_CERT_FILE", "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "LD_LIBRARY_PATH", "JAVA_HOME", "SPARK_HOME",
        "PYSPARK_PYTHON", "SOURCE_DATE_EPOCH",
    }
)  # fmt: skip
KERNEL_ENV_PREFIXES = ("LC_", "JUPYTER_", "XDG_")


def kernel_environment(environ: Mapping[str, str], listed: Sequence[str] = ()) -> dict[str, str]:
    """The kernel's environment: the allow-list above plus the names ``[execution] env`` lists;
    never an ``NB2PROD_*`` variable (the config refuses to list one)."""
    return {
        name: value
        for name, value in environ.items()
        if not name.startswith("NB2PROD_")
        and (name in KERNEL_ENV or name.startswith(KERNEL_ENV_PREFIXES) or name in listed)
    }


def execute(
    notebook: AnnotatedNotebook,
    *,
    plan: ProbePlan,
    parameters: Mapping[str, Any],
    scratch: Path,
    keep_failed_as: str,
    env: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> Execution:
    """Run the notebook; on a failing cell raise :class:`ExecutionError` naming it.

    The executed notebook of a failed run is saved as ``keep_failed_as`` in a new temporary
    directory (outside any release) that the error's hint names, beside the kernel's log
    (``kernel.log``), whose last lines the error shows; a run that succeeds leaves neither.
    ``progress`` hears of each cell as it starts, and of the files the notebook wrote beside itself.
    """
    progress = progress or Silent()
    node = _runnable(notebook, probe_cell_source(plan))
    output_path = scratch / "executed.ipynb"
    log_path = scratch / "kernel.log"
    workdir = notebook.path.resolve().parent
    cells = {c.index: c for c in notebook.cells}
    before = listing(workdir)
    failure = run_notebook(
        node,
        output_path=output_path,
        cwd=workdir,
        parameters=parameters,
        scratch=scratch,
        log_path=log_path,
        env=env,
        on_cell=lambda k, n, cell: announce(progress, k, n, cell, cells),
    )
    wrote = files_written(before, listing(workdir))
    if wrote:
        progress.note(
            f"the notebook wrote {wrote} beside it while running (not part of the release)"
        )
    executed = nbformat.read(output_path, as_version=4)
    if failure is not None:
        kept = keep_dir("nb2prod-failed-")
        keep_failed_at = kept / keep_failed_as
        nbformat.write(executed, keep_failed_at)
        kept_log = kept / "kernel.log"
        shutil.copyfile(log_path, kept_log)
        index, label = _failing_cell(notebook, executed, failure.cell_index)
        raise ExecutionError(
            f"{notebook.path}: {label} raised {failure.ename}: {failure.evalue}"
            + tail_block(kept_log),
            hint=f"The executed notebook, with the failing cell marked, is at {keep_failed_at} "
            f"and the kernel's whole output (prints, warnings, workers) is in {kept_log}",
            cell_index=index,
            ename=failure.ename,
            evalue=failure.evalue,
        )
    problem = read_failure(Path(plan.out_dir))
    if problem is not None:
        bug = traceback_file(Path(plan.out_dir))
        if bug is not None:  # nb2prod's own bug: keep its traceback for the report
            kept = keep_dir("nb2prod-failed-") / bug.name
            shutil.copy(bug, kept)
            problem.hint = f"This is a bug in nb2prod; please report it with {kept}."
        raise problem
    capture = read_capture(Path(plan.out_dir))
    last_log = keep_last(log_path, notebook.path)
    if last_log is not None:
        progress.note(f"the kernel's output (prints, warnings, workers) is in {last_log}")
    executed.cells = [c for c in executed.cells if CAPTURE_TAG not in c.metadata.get("tags", [])]
    return Execution(executed=executed, capture=capture)


def _runnable(notebook: AnnotatedNotebook, capture_source: str) -> nbformat.NotebookNode:
    node = copy.deepcopy(notebook.node)
    roles = {c.index: c.role for c in notebook.cells}
    kept = []
    for index, cell in enumerate(node.cells):
        if roles.get(index) is Role.SKIP:
            continue
        cell.metadata.setdefault("nb2prod", {})["index"] = index
        kept.append(cell)
    capture = nbformat.v4.new_code_cell(capture_source)
    capture.metadata["tags"] = [CAPTURE_TAG]
    kept.append(capture)
    node.cells = kept
    return node


def _failing_cell(
    notebook: AnnotatedNotebook, executed: nbformat.NotebookNode, running: int = -1
) -> tuple[int | None, str]:
    """The original index of the cell that raised, and how to name it.

    Found by its error output: papermill's own index does not count the error banner it inserts
    at the top of the saved notebook. A cell that left none (the kernel died) is the cell that was
    ``running`` (its index in ``executed``, where papermill inserted no banner).
    """
    failed = next(
        (
            cell
            for cell in executed.cells
            if cell.cell_type == "code"
            and (
                any(o.get("output_type") == "error" for o in cell.get("outputs", []))
                or cell.metadata.get("papermill", {}).get("exception")
            )
        ),
        None,
    )
    if failed is None and 0 <= running < len(executed.cells):
        failed = executed.cells[running]
    if failed is None:
        return None, "a cell"
    tags = failed.metadata.get("tags", [])
    if CAPTURE_TAG in tags:
        return None, "nb2prod's probe cell"
    if "injected-parameters" in tags:
        return None, "the parameters papermill injected"
    index = failed.metadata.get("nb2prod", {}).get("index")
    by_index = {c.index: c for c in notebook.cells}
    if index not in by_index:
        return index, f"cell {index}"
    cell = by_index[index]
    label = cell.label
    if cell.role is None:
        label = label.replace(f"cell {index} ", f"cell {index} (untagged) ", 1)
    return index, label
