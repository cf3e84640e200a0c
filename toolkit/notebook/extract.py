"""Extraction (``package``'s parse stage): choose the cells that go into the service and check they can stand alone.

Pure: works on the notebook's one analysis (``dataflow.py``: cells parsed, fitted state found), no
kernel. The result says which cells become
``pipeline.py``, which roles need nb2prod's defaults, and which top-level modules the service
code imports (they become pinned requirements), and which values it reads from cells that do not
go into the service (fitted state, exported with the model).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass

from ..errors import NotebookError
from .annotations import AnnotatedNotebook, Cell, Role, require_roles
from .dataflow import FittedValue, NotebookAnalysis, ParsedCell, single_output_field


@dataclass(frozen=True)
class Extraction:
    """What goes into the service, decided statically."""

    cells: tuple[Cell, ...]  # setup cells first, then the rest in notebook order
    default_predict: bool  # no `predict` cell: model.predict(features)
    default_output_field: str | None  # no `postprocess` cell: the one field of Output
    has_fallback: bool
    imports: tuple[str, ...]  # top-level modules imported by service cells, stdlib excluded
    infer_contract: bool  # no `contract` cell: Input and Output are inferred in the kernel
    artifacts: tuple[FittedValue, ...] = ()  # fitted state the service code reads


INFERRED_OUTPUT_FIELD = "prediction"


def extract(analysis: NotebookAnalysis) -> Extraction:
    """What goes into the service; :class:`NotebookError` naming the cell when it cannot."""
    notebook = analysis.notebook
    require_roles(notebook)
    setup = [c for c in notebook.service_cells if c.role is Role.SETUP]
    rest = [c for c in notebook.service_cells if c.role is not Role.SETUP]
    cells = tuple(setup + rest)
    imports: set[str] = set()
    for cell in cells:
        imports |= _imported_modules(_service_tree(analysis.cells[cell.index], notebook))
    infer = not notebook.has_role(Role.CONTRACT)
    if infer and notebook.has_role(Role.POSTPROCESS):
        cell = notebook.with_role(Role.POSTPROCESS)[0]
        raise NotebookError(
            f"{notebook.path}: {cell.label}: a postprocess cell builds Output, so the notebook "
            "needs a contract cell defining it; only notebooks without postprocess get an "
            "inferred contract",
            hint="Add a cell `#| nb2prod: contract` with `class Input(BaseModel)` and "
            "`class Output(BaseModel)`.",
            cell=cell.index,
        )
    default_output_field = None
    if infer:
        default_output_field = INFERRED_OUTPUT_FIELD
    elif not notebook.has_role(Role.POSTPROCESS):
        default_output_field = single_output_field(analysis)
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    return Extraction(
        cells=cells,
        default_predict=not notebook.has_role(Role.PREDICT),
        default_output_field=default_output_field,
        has_fallback=notebook.has_role(Role.FALLBACK),
        imports=tuple(sorted(imports - stdlib)),
        infer_contract=infer,
        artifacts=analysis.fitted,
    )


def _service_tree(parsed: ParsedCell, notebook: AnnotatedNotebook) -> ast.Module:
    """A service cell's syntax tree; magics and syntax errors raise naming the cell."""
    cell = parsed.cell
    if parsed.magics:
        line = parsed.magics[0]
        raise NotebookError(
            f"{notebook.path}: {cell.label}: line {line.number} is an IPython magic or shell "
            f"escape ({line.text.strip()!r}); it cannot run inside the service",
            hint="Move it to an untagged or `train` cell, or declare the package as a "
            "dependency of your environment instead of installing it from the notebook.",
            cell=cell.index,
        )
    if parsed.tree is None:
        error = parsed.error
        assert error is not None  # a cell without magics has a tree or a syntax error
        raise NotebookError(
            f"{notebook.path}: {cell.label}: line {error.lineno}: syntax error: {error.msg}",
            cell=cell.index,
        )
    return parsed.tree


def _imported_modules(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found
