"""What goes into the service, decided without a kernel."""

from __future__ import annotations

from pathlib import Path

import pytest
from nb2prod.errors import NotebookError
from nb2prod.notebook.annotations import Role, annotate
from nb2prod.notebook.dataflow import analyse
from nb2prod.notebook.extract import extract

from tests.conftest import code, minimal_cells, notebook

PATH = Path("nb.ipynb")


def test_setup_cells_come_first_and_train_cells_stay_out() -> None:
    cells = [code("#| nb2prod: train\nimport pandas")] + minimal_cells()
    cells.append(code("#| nb2prod: setup\nimport numpy as np"))
    result = extract(analyse(annotate(notebook(*cells), PATH)))
    assert [c.role for c in result.cells] == [
        Role.SETUP, Role.SETUP, Role.CONTRACT, Role.PREPROCESS
    ]  # fmt: skip
    assert result.imports == ("numpy", "pydantic")  # pandas is only imported by a train cell


def test_defaults_when_predict_and_postprocess_are_absent() -> None:
    result = extract(analyse(annotate(notebook(*minimal_cells()), PATH)))
    assert result.default_predict is True
    assert result.default_output_field == "y"
    assert result.has_fallback is False


def test_no_default_when_the_cells_exist() -> None:
    cells = minimal_cells() + [
        code("#| nb2prod: predict\ndef predict(model, f):\n    return f"),
        code("#| nb2prod: postprocess\ndef postprocess(raw, inputs):\n    return raw"),
        code("#| nb2prod: fallback\ndef fallback(inp):\n    return Output(y=0)"),
    ]
    result = extract(analyse(annotate(notebook(*cells), PATH)))
    assert (result.default_predict, result.default_output_field, result.has_fallback) == (
        False, None, True
    )  # fmt: skip


def test_output_with_two_fields_needs_a_postprocess_cell() -> None:
    cells = minimal_cells()
    cells[1] = code(
        "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float\n"
        "class Output(BaseModel):\n    y: float\n    z: float\n"
    )
    with pytest.raises(NotebookError) as err:
        extract(analyse(annotate(notebook(*cells), PATH)))
    assert "cell 1 (contract)" in err.value.message and "it has 2 (y, z)" in err.value.message


@pytest.mark.parametrize("line", ["!pip install scikit-learn", "%pip install numpy", "%%time"])
def test_shell_escapes_and_magics_in_service_cells_are_errors(line: str) -> None:
    cells = minimal_cells()
    cells[2] = code(f"#| nb2prod: preprocess\n{line}\ndef preprocess(inputs):\n    return inputs")
    with pytest.raises(NotebookError) as err:
        extract(analyse(annotate(notebook(*cells), PATH)))
    assert "cell 2 (preprocess)" in err.value.message and "line 2" in err.value.message


def test_magics_outside_the_service_are_left_alone() -> None:
    cells = minimal_cells() + [code("!pip list\n%matplotlib inline")]
    assert extract(analyse(annotate(notebook(*cells), PATH))).cells


def test_syntax_error_names_the_cell_and_line() -> None:
    cells = minimal_cells()
    cells[2] = code("#| nb2prod: preprocess\ndef preprocess(inputs)\n    return inputs")
    with pytest.raises(NotebookError, match=r"cell 2 \(preprocess\).*line 2: syntax error"):
        extract(analyse(annotate(notebook(*cells), PATH)))


def test_without_a_contract_cell_the_contract_is_inferred() -> None:
    cells = [c for c in minimal_cells() if "nb2prod: contract" not in c.source]
    result = extract(analyse(annotate(notebook(*cells), PATH)))
    assert result.infer_contract is True and result.default_output_field == "prediction"


def test_a_postprocess_cell_needs_a_contract_cell() -> None:
    cells = [c for c in minimal_cells() if "nb2prod: contract" not in c.source]
    cells.append(code("#| nb2prod: postprocess\ndef postprocess(raw, inputs):\n    return raw"))
    with pytest.raises(NotebookError, match="a postprocess cell builds Output"):
        extract(analyse(annotate(notebook(*cells), PATH)))


def test_fitted_state_lists_each_value_once_with_every_reader() -> None:
    cells = [code("scale = 2.0", "parameters")] + minimal_cells()
    cells[3] = code(  # preprocess reads a fitted encoder and the parameter
        "#| nb2prod: preprocess\ndef preprocess(inputs):\n"
        "    return [encoder[i.x] * scale for i in inputs]"
    )
    cells += [
        code("#| nb2prod: train\nencoder = {1.0: 0.5}\nencoder = dict(encoder)"),
        code("#| nb2prod: skip\nencoder = None"),  # never runs: the train value is exported
        code(
            "#| nb2prod: fallback\ndef fallback(inp):\n    return Output(y=encoder.get(inp.x, 0))"
        ),
    ]
    result = extract(analyse(annotate(notebook(*cells), PATH)))
    assert [(v.name, v.cell.index, v.role) for v in result.artifacts] == [
        ("scale", 0, "parameters"),
        ("encoder", 6, "train"),
    ]
    assert result.artifacts[1].readers == "preprocess (cell 3) and fallback (cell 8)"


def test_an_import_of_a_local_module_the_service_never_reads_is_left_out(tmp_path: Path) -> None:
    (tmp_path / "team_helpers.py").write_text("def split(x):\n    return x\n")
    setup = (
        "#| nb2prod: setup\nimport numpy as np\nfrom team_helpers import (\n    split,\n)\nK = 2"
    )
    cells = [code(setup), code("#| nb2prod: train\nparts = split([1])"), *minimal_cells()]
    result = extract(analyse(annotate(notebook(*cells), tmp_path / "nb.ipynb")))
    (statement,) = result.left_out
    assert (statement.cell, statement.line, statement.end_line) == (0, 3, 5)
    assert statement.modules == ("team_helpers",)
    assert "team_helpers" not in result.imports and "numpy" in result.imports
    service = result.cells[0].source.splitlines()
    assert len(service) == len(setup.splitlines())  # line numbers kept
    assert service[2].startswith("# nb2prod left this import out of the service")
    assert service[3:5] == ["#       split,", "#   )"]
    assert service[1] == "import numpy as np" and service[5] == "K = 2"
    compile(result.cells[0].source, "setup", "exec")  # still Python


def test_an_import_of_a_local_module_the_service_reads_stays(tmp_path: Path) -> None:
    (tmp_path / "team_helpers.py").write_text("def scale(x):\n    return x\n")
    cells = [
        code("#| nb2prod: setup\nimport team_helpers"),
        *minimal_cells(),
        code("#| nb2prod: postprocess\ndef postprocess(raw, inputs):\n"
             "    return [Output(y=team_helpers.scale(r)) for r in raw]"),
    ]  # fmt: skip
    result = extract(analyse(annotate(notebook(*cells), tmp_path / "nb.ipynb")))
    assert result.left_out == ()
    assert "team_helpers" in result.imports
    assert result.cells[0].source == "#| nb2prod: setup\nimport team_helpers"


def test_an_unread_import_of_an_installed_package_stays(tmp_path: Path) -> None:
    cells = [code("#| nb2prod: setup\nimport json\nimport sklearn"), *minimal_cells()]
    result = extract(analyse(annotate(notebook(*cells), tmp_path / "nb.ipynb")))
    assert result.left_out == () and "sklearn" in result.imports
