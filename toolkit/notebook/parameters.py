"""Papermill parameters given on the command line (``-p NAME VALUE``), typed and checked."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from ..errors import ParameterError
from .dataflow import NotebookAnalysis


def parse_parameter(value: str) -> Any:
    """``-p NAME VALUE`` typing as papermill's CLI does: bool, None, int, float, else string."""
    lowered = value.strip()
    if lowered in ("True", "true"):
        return True
    if lowered in ("False", "false"):
        return False
    if lowered in ("None", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(lowered)
        except ValueError:
            pass
    return value


def check_parameters(analysis: NotebookAnalysis, parameters: Mapping[str, Any]) -> None:
    """Every ``-p`` name must be assigned by a cell tagged ``parameters``."""
    if not parameters:
        return
    notebook = analysis.notebook
    cells = [c for c in notebook.cells if c.is_parameters]
    if not cells:
        raise ParameterError(
            f"{notebook.path}: -p given, but no cell is tagged 'parameters'",
            hint="Tag the cell that sets the defaults with `parameters` (papermill's tag).",
        )
    known: set[str] = set()
    for cell in cells:
        tree = analysis.cells[cell.index].tree
        for node in tree.body if tree is not None else ():
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else []
            )  # fmt: skip
            known |= {t.id for t in targets if isinstance(t, ast.Name)}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ParameterError(
            f"{notebook.path}: -p {unknown[0]}: the parameters cell ({cells[0].label}) "
            "defines no such name",
            hint=f"Parameters: {', '.join(sorted(known)) or 'none'}.",
        )
