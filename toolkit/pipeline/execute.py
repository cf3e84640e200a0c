"""The execute stage of ``package``: run the notebook (papermill) and probe what the release needs.

The notebook that runs is the user's notebook with ``skip`` cells left out and nb2prod's cells
added: a first one that records the data the notebook reads (:mod:`nb2prod.probe.lineage`), one
after the last training cell that saves the trained state (:mod:`nb2prod.probe.snapshot`), and at
the end the probe cell (one call into :mod:`nb2prod.probe`). Every cell keeps its original index
in ``metadata.nb2prod.index`` so an error names the cell the user sees.

When the trained state of the last run can be reused (``reuse.py``), the kernel instead runs the
setup cells, a cell restoring the state, the cells that cannot change the model, and the probe.
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nbformat

from ..adapters.children import Stopping
from ..adapters.kernel import run_notebook
from ..errors import ExecutionError, Nb2ProdError
from ..notebook.annotations import AnnotatedNotebook, Cell, Role
from ..probe.protocol import ProbePlan
from ..progress import Progress, Silent
from ..release.manifest import Lineage
from ..resources import cache_root
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
from .lineage import RAW_FILE, merge, read_recorded
from .lineage import summary as lineage_summary
from .pregen import pregenerating
from .render import render_pipeline
from .reuse import ReusePlan, TrainedState, merge_executed, ranges

if TYPE_CHECKING:
    from .parse import Parsed


@dataclass(frozen=True)
class Execution:
    """The executed notebook (probe cell removed) and what the probe found in the kernel."""

    executed: nbformat.NotebookNode
    capture: Capture
    lineage: Lineage = Lineage()
    modules: tuple[str, ...] = ()  # top-level modules the notebook's cells imported
    kernel_state: Path | None = None  # where the kernel saved the trained state (a full run)
    reuse: str = ""  # what was reused and why, or why nothing was
    restored: bool = False  # the trained state of the last run was restored, not trained again

    def summary(self) -> str:
        parts = [
            f"{len(self.capture.result.examples)} examples, model {self.capture.result.model_class}",
            lineage_summary(self.lineage),
        ]
        return "; ".join(parts + ([self.reuse] if self.reuse else []))


@dataclass(frozen=True)
class KeptState:
    """What a full run's kernel saved of its training when the probe then failed."""

    directory: Path
    executed: nbformat.NotebookNode
    lineage: Lineage
    modules: tuple[str, ...]


RESTORE_TAG = "nb2prod-restore"


class RestoreFailed(Exception):
    """The kernel could not load the stored trained state: run everything instead."""


def execute_notebook(
    parsed: Parsed,
    parameters: Mapping[str, Any],
    scratch: Path,
    progress: Progress | None = None,
    *,
    reuse: ReusePlan | None = None,
    restore: TrainedState | None = None,
    stopping: Stopping | None = None,
    environment_file: Path | None = None,
) -> Execution:
    """Run ``parsed``'s notebook with the probe, which imports the service code as it will be
    released (rendered into ``scratch``) and runs the examples through it.

    With ``reuse`` the kernel saves the trained state after the last training cell; with
    ``restore`` as well, it restores that state instead and runs only the other cells. With
    ``stopping``, the kernel exits in the background after the last cell (adapters/kernel.py).
    ``environment_file``: where the packager records this environment's distributions meanwhile
    (the probe reads them there instead of every distribution's files, when they apply)."""
    capture_dir = scratch / "capture"
    capture_dir.mkdir(parents=True)
    pipeline_file = scratch / "pipeline.py"
    pipeline_file.write_bytes(render_pipeline(parsed.context))
    plan = probe_plan(
        out_dir=capture_dir,
        pipeline_file=pipeline_file,
        notebook=parsed.notebook,
        extraction=parsed.extraction,
        config=parsed.config,
    )
    if environment_file is not None:
        plan = plan.model_copy(update={"environment_file": str(environment_file)})
    lineage_file = capture_dir / RAW_FILE
    kernel_state = scratch / "trained"
    start = _injected(_lineage_start_source([str(scratch), str(cache_root())]), quiet=True)
    finish = _injected(_lineage_finish_source(lineage_file), quiet=True)
    notebook = parsed.notebook
    env = kernel_environment(os.environ, parsed.config.execution.env)
    try:
        # the contract probe's random inputs are made beside the kernel, meanwhile
        with pregenerating(plan, scratch, cwd=notebook.path.resolve().parent, env=env) as plan:
            if restore is not None and reuse is not None:
                node = _replay(notebook, reuse, restore, start, finish, probe_cell_source(plan))
                parameters = {}  # the restored state holds what the parameters cells left
            else:
                after = {}
                if reuse is not None and reuse.problem is None and reuse.snapshot_after is not None:
                    after[reuse.snapshot_after] = _injected(
                        _snapshot_source(list(reuse.names), kernel_state), quiet=True
                    )
                node = _runnable(notebook, probe_cell_source(plan), first=[start], after=after,
                                 last=[finish])  # fmt: skip
            execution = execute(
                notebook,
                plan=plan,
                parameters=parameters,
                scratch=scratch,
                keep_failed_as=f"{notebook.path.stem}.executed.ipynb",
                env=env,
                progress=progress,
                node=node,
                stopping=stopping,
            )
    except Nb2ProdError as exc:
        # every cell ran and the probe failed: what training left is kept for the fix
        executed = getattr(exc, "executed_notebook", None)
        if restore is None and executed is not None and kernel_state.is_dir():
            lineage, modules = read_recorded(capture_dir, notebook.path.resolve().parent)
            exc.kept_state = KeptState(kernel_state, executed, lineage, modules)  # type: ignore[attr-defined]
        raise
    lineage, modules = read_recorded(capture_dir, notebook.path.resolve().parent)
    if restore is None or reuse is None:
        return replace(execution, lineage=lineage, modules=modules, kernel_state=kernel_state)
    runnable = [c for c in notebook.cells if c.role is not Role.SKIP]
    executed = merge_executed(runnable, reuse.training, restore.executed_cells(),
                              execution.executed)  # fmt: skip
    training = reuse.training
    ran = [c for c in reuse.replayed]
    roles = sorted({str(c.role) for c in ran if c.role is not Role.SETUP})
    detail = (
        f"reused the trained state of the last run (cells {ranges(c.index for c in training)} "
        f"unchanged); ran cells {ranges(c.index for c in ran)} ({', '.join(roles) or 'setup'})"
    )
    return replace(
        execution,
        executed=executed,
        lineage=merge(restore.lineage, lineage),
        modules=tuple(sorted(set(modules) | set(restore.modules))),
        reuse=detail,
        restored=True,
    )


def _injected(
    source: str, *tags: str, does: str | None = None, quiet: bool = False
) -> nbformat.NotebookNode:
    """One of nb2prod's own cells; ``does`` is how progress names it (the probe's by default);
    a ``quiet`` one (instant bookkeeping: the lineage hook) is neither counted nor announced."""
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["tags"] = [CAPTURE_TAG, *tags]
    if does is not None or quiet:
        cell.metadata["nb2prod"] = {"does": does, "quiet": quiet}
    return cell


def _lineage_start_source(excluded: list[str]) -> str:
    return (
        "# nb2prod: record the data the notebook reads (nb2prod.probe.lineage)\n"
        "from nb2prod.probe import lineage as _nb2prod_lineage\n"
        f"_nb2prod_lineage.start({excluded!r})\n"
    )


def _lineage_finish_source(out_file: Path) -> str:
    return f"_nb2prod_lineage.finish({str(out_file)!r})\n"


def _snapshot_source(names: list[str], out_dir: Path) -> str:
    return (
        "# nb2prod: keep the trained state for the next run (nb2prod.probe.snapshot)\n"
        "from nb2prod.probe.snapshot import save as _nb2prod_save\n"
        f"_nb2prod_save(globals(), {names!r}, {str(out_dir)!r})\n"
    )


def _restore_source(state_file: Path) -> str:
    return (
        "# nb2prod: the trained state of the last run, instead of training again\n"
        "from nb2prod.probe.snapshot import restore as _nb2prod_restore\n"
        f"_nb2prod_restore(globals(), {str(state_file)!r})\n"
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
    node: nbformat.NotebookNode | None = None,
    stopping: Stopping | None = None,
) -> Execution:
    """Run the notebook; on a failing cell raise :class:`ExecutionError` naming it.

    The executed notebook of a failed run is saved as ``keep_failed_as`` in a new temporary
    directory (outside any release) that the error's hint names, beside the kernel's log
    (``kernel.log``), whose last lines the error shows; a run that succeeds leaves neither.
    ``progress`` hears of each cell as it starts, and of the files the notebook wrote beside itself.
    """
    progress = progress or Silent()
    if node is None:
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
        stopping=stopping,
    )
    wrote = files_written(before, listing(workdir))
    if wrote:
        progress.note(
            f"the notebook wrote {wrote} beside it while running (not part of the release)"
        )
    executed = nbformat.read(output_path, as_version=4)
    if failure is not None:
        restoring = next(
            (c for c in executed.cells if RESTORE_TAG in c.metadata.get("tags", [])), None
        )
        if restoring is not None and _raised(restoring):
            raise RestoreFailed(f"{failure.ename}: {failure.evalue}")
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
        # the training it ran may still be kept for the fix (run.py)
        problem.executed_notebook = executed  # type: ignore[attr-defined]
        raise problem
    capture = read_capture(Path(plan.out_dir))
    last_log = keep_last(log_path, notebook.path)
    if last_log is not None:
        progress.note(f"the kernel's output (prints, warnings, workers) is in {last_log}")
    executed.cells = [c for c in executed.cells if CAPTURE_TAG not in c.metadata.get("tags", [])]
    return Execution(executed=executed, capture=capture)


def _runnable(
    notebook: AnnotatedNotebook,
    capture_source: str,
    *,
    first: Sequence[nbformat.NotebookNode] = (),
    after: Mapping[int, nbformat.NotebookNode] | None = None,
    last: Sequence[nbformat.NotebookNode] = (),
) -> nbformat.NotebookNode:
    """The notebook without skip cells, nb2prod's cells added: ``first``, one ``after`` a cell
    (by index), ``last`` before the probe cell."""
    node = copy.deepcopy(notebook.node)
    roles = {c.index: c.role for c in notebook.cells}
    kept = list(first)
    for index, cell in enumerate(node.cells):
        if roles.get(index) is Role.SKIP:
            continue
        cell.metadata.setdefault("nb2prod", {})["index"] = index
        kept.append(cell)
        if after and index in after:
            kept.append(after[index])
    kept.extend(last)
    kept.append(_injected(capture_source))
    node.cells = kept
    return node


def _replay(
    notebook: AnnotatedNotebook,
    reuse: ReusePlan,
    restore: TrainedState,
    start: nbformat.NotebookNode,
    finish: nbformat.NotebookNode,
    capture_source: str,
) -> nbformat.NotebookNode:
    """The kernel of a reuse run: setup cells, the restore cell, the cells that cannot change
    the model (in notebook order), then the probe."""
    node = copy.deepcopy(notebook.node)
    replayed: list[Cell] = list(reuse.replayed)
    setup = [c.index for c in replayed if c.role is Role.SETUP]
    others = [c.index for c in replayed if c.role is not Role.SETUP]
    cells = [start]
    for index in setup:
        cell = node.cells[index]
        cell.metadata.setdefault("nb2prod", {})["index"] = index
        cells.append(cell)
    cells.append(_injected(_restore_source(restore.state_file), RESTORE_TAG,
                           does="restoring the trained state of the last run"))  # fmt: skip
    for index in others:
        cell = node.cells[index]
        cell.metadata.setdefault("nb2prod", {})["index"] = index
        cells.append(cell)
    cells += [finish, _injected(capture_source)]
    node.cells = cells
    return node


def _raised(cell: nbformat.NotebookNode) -> bool:
    return any(o.get("output_type") == "error" for o in cell.get("outputs", [])) or bool(
        cell.metadata.get("papermill", {}).get("exception")
    )


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
