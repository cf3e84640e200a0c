"""One analysis of a notebook, shared by `check` and `package`: each cell parsed once."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nb2prod.errors import ParameterError
from nb2prod.notebook import dataflow
from nb2prod.notebook.annotations import Role, annotate
from nb2prod.notebook.check import check
from nb2prod.notebook.parameters import check_parameters
from nb2prod.pipeline.parse import parse
from nb2prod.progress import Silent

from tests.conftest import code, minimal_cells, notebook, write_notebook


def fitted_notebook() -> nbformat.NotebookNode:
    cells = minimal_cells()
    cells[2] = code(
        "#| nb2prod: preprocess\ndef preprocess(inputs):\n    return [i.x * scale for i in inputs]"
    )
    cells += [
        code("#| nb2prod: train\nscale = 2.0\n!echo fitted"),
        code("#| nb2prod: skip\nplot = scale"),
        code("threshold = 0.5", "parameters"),
    ]
    node = notebook(*cells)
    node.cells.insert(0, nbformat.v4.new_markdown_cell("# a markdown cell is not parsed"))
    return node


def test_package_parses_each_cell_once_and_finds_fitted_state_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_notebook(tmp_path, "nb.ipynb", fitted_notebook())
    parsed: Counter[str] = Counter()
    fitted_runs = []
    real_parse, real_fitted = ast.parse, dataflow.fitted_state

    def counting_parse(source: Any, filename: str = "<unknown>", *args: Any, **kw: Any) -> Any:
        parsed[filename] += 1
        return real_parse(source, filename, *args, **kw)

    def counting_fitted(found: Any) -> Any:
        fitted_runs.append(found)
        return real_fitted(found)

    monkeypatch.setattr(ast, "parse", counting_parse)
    monkeypatch.setattr(dataflow, "fitted_state", counting_fitted)
    result = parse(path, None, {"threshold": 0.7}, Silent(), out=tmp_path / "out")

    code_cells = [f"cell {c.index}" for c in result.notebook.cells]
    assert len(code_cells) == 8
    assert parsed == Counter(code_cells)  # -p, check and extract read one parse of each cell
    assert len(fitted_runs) == 1
    assert [(v.name, v.cell.index) for v in result.extraction.artifacts] == [("scale", 6)]


def test_check_and_extract_see_the_same_magic_lines() -> None:
    node = fitted_notebook()
    analysis = dataflow.analyse(annotate(node, Path("nb.ipynb")))
    train = analysis.cells[6]
    assert train.cell.role is Role.TRAIN
    assert [(m.number, m.text) for m in train.magics] == [(3, "!echo fitted")]
    assert train.scope is not None and "scale" in train.scope.defined
    found = check(node, Path("nb.ipynb")).findings
    assert [(f.code, f.cell, f.message) for f in found if f.code == "NB301"] == [
        ("NB301", 6, "line 3: `!echo fitted` is IPython syntax")
    ]


def test_output_defined_outside_the_contract_cell_is_a_finding_not_a_crash() -> None:
    cells = minimal_cells()
    cells[0] = code(
        "#| nb2prod: setup\nfrom pydantic import BaseModel\n"
        "class Output(BaseModel):\n    y: float\n    z: float"
    )
    cells[1] = code("#| nb2prod: contract\nclass Input(BaseModel):\n    x: float")
    (finding,) = check(notebook(*cells), Path("nb.ipynb")).errors  # `x: float`: NB214 too
    assert (finding.code, finding.cell) == ("NB213", None)
    assert finding.message == "no contract cell defines `class Output`"


def test_a_contract_cell_that_does_not_parse_is_a_syntax_finding_not_a_crash() -> None:
    cells = minimal_cells()
    cells.insert(1, code("#| nb2prod: contract\nclass Input(BaseModel)\n    x: float"))
    (finding,) = check(notebook(*cells), Path("nb.ipynb")).errors  # `x: float`: NB214 too
    assert (finding.code, finding.cell, finding.message) == ("NB110", 1, "line 2: expected ':'")


def test_an_error_only_the_symbol_table_sees_is_a_syntax_finding_not_a_crash() -> None:
    cells = minimal_cells()
    cells[2] = code("#| nb2prod: preprocess\ndef preprocess(inputs, inputs):\n    return inputs")
    (finding,) = check(notebook(*cells), Path("nb.ipynb")).errors  # `x: float`: NB214 too
    assert (finding.code, finding.cell) == ("NB110", 2)
    assert finding.message == "line 2: duplicate argument 'inputs' in function definition"


def test_p_names_are_read_from_the_parameters_cell_of_the_analysis() -> None:
    cells = [code("%matplotlib inline\nalpha: float = 0.5\nbeta = 2", "parameters")]
    analysis = dataflow.analyse(annotate(notebook(*cells, *minimal_cells()), Path("nb.ipynb")))
    check_parameters(analysis, {"alpha": 0.1, "beta": 3})  # the magic line is blanked, not fatal
    with pytest.raises(ParameterError, match=r"-p gamma: the parameters cell \(cell 0 .*no such"):
        check_parameters(analysis, {"gamma": 1})
    untagged = dataflow.analyse(annotate(notebook(*minimal_cells()), Path("nb.ipynb")))
    with pytest.raises(ParameterError, match="no cell is tagged 'parameters'"):
        check_parameters(untagged, {"alpha": 0.1})
