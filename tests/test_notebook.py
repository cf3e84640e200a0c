"""Annotation parsing (SPEC section 2) on in-memory notebooks."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nb2prod.errors import NotebookError
from nb2prod.notebook.annotations import Role, annotate, require_roles

from tests.conftest import code, minimal_cells, notebook

PATH = Path("nb.ipynb")


def test_directive_and_tag_forms_give_the_same_roles() -> None:
    node = notebook(
        code("#| nb2prod: setup\nimport math"),
        code("import math", "nb2prod:setup"),
        code("#|nb2prod:train\nx = 1"),
        code("x = 2", "nb2prod:evaluate", "other-tag"),
    )
    cells = annotate(node, PATH).cells
    assert [c.role for c in cells] == [Role.SETUP, Role.SETUP, Role.TRAIN, Role.EVALUATE]


def test_every_role_in_the_table_is_accepted() -> None:
    node = notebook(*(code(f"#| nb2prod: {role}\npass") for role in Role))
    assert [c.role for c in annotate(node, PATH).cells] == list(Role)


def test_untagged_cells_have_no_role_and_markdown_is_ignored() -> None:
    node = notebook(code("x = 1"))
    node.cells.insert(0, nbformat.v4.new_markdown_cell("#| nb2prod: setup"))
    cells = annotate(node, PATH).cells
    assert len(cells) == 1 and cells[0].role is None and cells[0].index == 1


def test_model_name_option_from_directive_and_tag() -> None:
    by_directive = annotate(notebook(code("#| nb2prod: model name=clf\nclf = 1")), PATH)
    by_tag = annotate(notebook(code("clf = 1", "nb2prod:model name=clf")), PATH)
    assert by_directive.model_variable == by_tag.model_variable == "clf"
    assert annotate(notebook(code("#| nb2prod: model\nmodel = 1")), PATH).model_variable == "model"


def test_parameters_tag_keeps_its_papermill_meaning() -> None:
    cells = annotate(notebook(code("alpha = 1", "parameters")), PATH).cells
    assert cells[0].is_parameters and cells[0].role is None


def test_a_directive_must_be_on_the_first_line() -> None:
    cells = annotate(notebook(code("x = 1\n#| nb2prod: setup")), PATH).cells
    assert cells[0].role is None


def test_unknown_role_names_the_cell_index_and_first_line() -> None:
    node = notebook(code("x = 1"), code("#| nb2prod: preprocessing\ndef f(): pass"))
    with pytest.raises(NotebookError) as err:
        annotate(node, PATH)
    assert "cell 1" in err.value.message
    assert "#| nb2prod: preprocessing" in err.value.message
    assert "unknown role 'preprocessing'" in err.value.message
    assert "preprocess" in (err.value.hint or "")


def test_two_roles_on_one_cell_is_an_error_naming_both() -> None:
    node = notebook(code("#| nb2prod: setup\nimport os", "nb2prod:train"))
    with pytest.raises(NotebookError) as err:
        annotate(node, PATH)
    assert "cell 0" in err.value.message and "'setup'" in err.value.message
    assert "'train'" in err.value.message


def test_the_same_role_twice_is_fine() -> None:
    node = notebook(code("#| nb2prod: setup\nimport os", "nb2prod:setup"))
    assert annotate(node, PATH).cells[0].role is Role.SETUP


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(NotebookError, match="has no option 'nam'"):
        annotate(notebook(code("#| nb2prod: model nam=clf\nclf = 1")), PATH)
    with pytest.raises(NotebookError, match="the role 'setup' has no option 'fast'") as err:
        annotate(notebook(code("#| nb2prod: setup fast=1\nimport os")), PATH)
    assert err.value.hint == "The role 'setup' takes no options."
    with pytest.raises(NotebookError, match="not a Python variable name"):
        annotate(notebook(code("#| nb2prod: model name=1clf\nclf = 1")), PATH)


@pytest.mark.parametrize("role", ["model", "preprocess", "examples"])
def test_a_missing_required_role_is_an_error_naming_it(role: str) -> None:
    cells = [c for c in minimal_cells() if f"nb2prod: {role}" not in c.source]
    with pytest.raises(NotebookError) as err:
        require_roles(annotate(notebook(*cells), PATH))
    assert f"no cell has the role '{role}'" in err.value.message
    assert err.value.hint


def test_two_model_cells_are_an_error() -> None:
    cells = minimal_cells() + [code("#| nb2prod: model\nmodel = 2")]
    with pytest.raises(NotebookError, match="a second 'model' cell"):
        require_roles(annotate(notebook(*cells), PATH))
