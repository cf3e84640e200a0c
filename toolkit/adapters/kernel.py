"""Adapter: run a notebook top to bottom with papermill in a kernel of *this* environment.

The only module that imports papermill. A private kernelspec pointing at ``sys.executable`` is
written into the run's scratch directory, so a fresh virtualenv needs no ``ipykernel install``
and a user's own ``python3`` kernelspec (perhaps another Python) is never picked by accident.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

KERNEL_NAME = "nb2prod-python"


@dataclass(frozen=True)
class CellFailure:
    """A cell of the executed notebook raised."""

    cell_index: int  # index in the notebook that was executed
    ename: str
    evalue: str


def run_notebook(
    node: nbformat.NotebookNode,
    *,
    output_path: Path,
    cwd: Path,
    parameters: Mapping[str, Any],
    scratch: Path,
    env: Mapping[str, str] | None = None,
    timeout_s: int | None = None,
) -> CellFailure | None:
    """Execute ``node`` and save the executed notebook to ``output_path``.

    ``env`` is the kernel's whole environment (None: this process's, as jupyter_client does by
    default). Returns None on success, or the failing cell (papermill has already saved the
    notebook with that cell marked).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    input_path = scratch / "input.ipynb"
    nbformat.write(node, input_path)
    with _private_kernelspec(scratch / "jupyter"):
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
                **({} if env is None else {"kernel_manager_class": _manager_with_env(env)}),
            )
        except PapermillExecutionError as exc:
            return CellFailure(exc.cell_index, exc.ename, exc.evalue)
    return None


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


def _manager_with_env(env: Mapping[str, str]) -> type:
    """nbclient's kernel manager, starting the kernel with ``env`` instead of a copy of
    ``os.environ`` (jupyter_client's provisioner takes ``env`` from ``start_kernel``'s keywords
    and adds only its own ``JPY_*`` variables)."""
    from jupyter_client.manager import AsyncKernelManager

    kernel_env = dict(env)

    class _Manager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw["env"] = dict(kernel_env)
            await super().start_kernel(**kw)

    return _Manager
