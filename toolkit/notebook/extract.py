"""Extraction (``package``'s parse stage): choose the cells that go into the service and check they can stand alone.

Works on the notebook's one analysis (``dataflow.py``: cells parsed, fitted state found), no
kernel. The result says which cells become
``pipeline.py``, which roles need nb2prod's defaults, and which top-level modules the service
code imports (they become pinned requirements), and which values it reads from cells that do not
go into the service (fitted state, exported with the model).

An import statement in a service cell that the service can neither have nor needs is left out of
the service's copy of the cell (:func:`left_out_imports`): every module it imports is one no
installed distribution provides but the kernel can import (a helper module beside the notebook,
say), and the service code never reads a name it binds (training cells use it). Its lines are
commented out, so the cell keeps its line numbers. ``check`` reports it as a warning (NB205).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, replace

from ..errors import NotebookError
from .annotations import AnnotatedNotebook, Cell, Role, require_roles
from .dataflow import FittedValue, NotebookAnalysis, ParsedCell, single_output_field
from .imports import unprovided


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
    left_out: tuple[LeftOutImport, ...] = ()  # import statements not copied into the service


@dataclass(frozen=True)
class LeftOutImport:
    """An import statement of a service cell that the service's copy of the cell leaves out."""

    cell: int
    line: int  # first line of the statement in the cell
    end_line: int
    modules: tuple[str, ...]  # the top-level modules it imports, none provided by a distribution


LEFT_OUT_NOTE = "# nb2prod left this import out of the service (the service code never uses it): "


def left_out_imports(analysis: NotebookAnalysis) -> tuple[LeftOutImport, ...]:
    """The module-level import statements of service cells that the service leaves out: every
    module they import is one no installed distribution provides but the kernel can import
    (beside the notebook, or elsewhere on its path), and the service code reads none of the
    names they bind. In notebook order."""
    candidates: list[tuple[LeftOutImport, set[str]]] = []
    for cell in analysis.notebook.service_cells:
        tree = analysis.trees.get(cell.index)
        body = tree.body if tree is not None else []
        for node in body:
            if isinstance(node, ast.Import):
                modules = {a.name.split(".")[0] for a in node.names}
                names = {a.asname or a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = {node.module.split(".")[0]}
                names = {a.asname or a.name for a in node.names}
            else:
                continue
            if names & analysis.service_reads or "*" in names or _shares_lines(node, body):
                continue
            end = node.end_lineno or node.lineno
            found = LeftOutImport(cell.index, node.lineno, end, tuple(sorted(modules)))
            candidates.append((found, modules))
    if not candidates:
        return ()
    wanted = set().union(*(modules for _, modules in candidates))
    directory = analysis.notebook.path.resolve().parent
    missing = {u.module for u in unprovided(wanted, directory) if u.whence != "missing"}
    return tuple(found for found, modules in candidates if modules <= missing)


def _shares_lines(node: ast.stmt, body: list[ast.stmt]) -> bool:
    """Whether another statement shares a line with ``node`` (``import a; x = 1``)."""
    end = node.end_lineno or node.lineno
    return any(
        other is not node
        and other.lineno <= end
        and (other.end_lineno or other.lineno) >= node.lineno
        for other in body
    )


def _without(cell: Cell, left_out: list[LeftOutImport]) -> Cell:
    """The cell's service copy: the left-out statements' lines commented out, the rest as is."""
    lines = cell.source.splitlines(keepends=True)
    for statement in left_out:
        for number in range(statement.line, statement.end_line + 1):
            text = lines[number - 1]
            note = LEFT_OUT_NOTE if number == statement.line else "#   "
            lines[number - 1] = note + text
    return replace(cell, source="".join(lines))


INFERRED_OUTPUT_FIELD = "prediction"


def extract(analysis: NotebookAnalysis) -> Extraction:
    """What goes into the service; :class:`NotebookError` naming the cell when it cannot."""
    notebook = analysis.notebook
    require_roles(notebook)
    setup = [c for c in notebook.service_cells if c.role is Role.SETUP]
    rest = [c for c in notebook.service_cells if c.role is not Role.SETUP]
    imports: set[str] = set()
    for cell in setup + rest:
        imports |= _imported_modules(_service_tree(analysis.cells[cell.index], notebook))
    left_out = left_out_imports(analysis)
    if left_out:
        imports = set()  # what the service's copies import, without the left-out statements
        for cell in setup + rest:
            tree = analysis.trees[cell.index]
            dropped = {s.line for s in left_out if s.cell == cell.index}
            kept = ast.Module(
                body=[n for n in tree.body if n.lineno not in dropped], type_ignores=[]
            )
            imports |= _imported_modules(kept)
    cells = tuple(
        _without(c, [s for s in left_out if s.cell == c.index])
        if any(s.cell == c.index for s in left_out)
        else c
        for c in setup + rest
    )
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
        left_out=left_out,
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
