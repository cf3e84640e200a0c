"""What `check` (and `package` before execute) finds without running: service imports no
distribution provides (NB205), unbounded numeric Input fields (NB214), config naming what no cell
makes (NB215), and where the model is made (NB212). Nothing of the notebook is imported or run."""

from __future__ import annotations

import ast
import shutil
import sys
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner
from nb2prod.cli import main
from nb2prod.notebook import bounds, imports
from nb2prod.notebook.annotations import load_node
from nb2prod.notebook.check import check, check_path
from nb2prod.notebook.config import Config

from tests.notebooks import make_check_fixtures

HERE = make_check_fixtures.HERE


def findings(path: Path, code: str) -> list[str]:
    return [f"{f.message} | {f.fix}" for f in check_path(path).findings if f.code == code]


# ---------------------------------------------------------------- NB205: imports


def test_the_distribution_scan_agrees_with_importlib_metadata() -> None:
    # the same mapping the probe's lock step uses (probe/environment.py), read faster
    provided = set(metadata.packages_distributions())
    assert imports.distributed(provided | {"nb2prod_no_such_module"}) == provided


def test_a_local_module_the_service_never_uses_is_a_warning_the_import_is_left_out() -> None:
    (found,) = [f for f in check_path(HERE / "NB205_local_module_unused.ipynb").findings
                if f.code == "NB205"]  # fmt: skip
    assert found.severity == "warning"
    assert "`p_helpers` is a module beside the notebook (p_helpers.py)" in found.message
    assert "so the import is left out of the service" in found.message
    assert "move the import to an untagged or `train` cell" in found.fix


def test_an_unused_local_import_sharing_a_statement_with_a_used_module_stays_an_error(
    tmp_path: Path,
) -> None:
    # `import p_helpers, numpy`: the statement cannot be left out whole, so it stays an error
    node = load_node(HERE / "clean.ipynb")
    node.cells[0].source += "\nimport p_helpers, json"
    node.cells[3].source += "\njson.dumps({})"
    shutil.copy(HERE / "p_helpers.py", tmp_path / "p_helpers.py")
    (found,) = [f for f in check(node, tmp_path / "nb.ipynb").findings if f.code == "NB205"]
    assert found.severity == "error"


def test_a_local_module_the_service_uses_says_make_it_a_package() -> None:
    (found,) = findings(HERE / "NB205_local_module_used.ipynb", "NB205")
    assert "The service code uses `p_helpers`: make it an installed package" in found
    assert "copy what the service uses into a `setup` cell" in found


def test_a_module_on_sys_path_without_a_distribution_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "lib"
    elsewhere.mkdir()
    (elsewhere / "team_utils.py").write_text("def clean(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(elsewhere))
    node = load_node(HERE / "clean.ipynb")
    node.cells[0].source += "\nfrom team_utils import clean"
    node.cells[
        3
    ].source = (
        "#| nb2prod: preprocess\ndef preprocess(inputs):\n    return [[clean(i.x)] for i in inputs]"
    )
    (found,) = [f for f in check(node, tmp_path / "nb.ipynb").findings if f.code == "NB205"]
    assert f"`team_utils` is importable (from {elsewhere / 'team_utils.py'})" in found.message
    assert "no installed distribution provides it" in found.message
    assert "uses `clean` from `team_utils`: make it an installed package" in found.fix


def test_nothing_of_the_notebook_is_imported_or_run(tmp_path: Path) -> None:
    # a helper whose import has an effect: check must find it without importing it
    directory = tmp_path / "project"
    directory.mkdir()
    marker = tmp_path / "imported"
    (directory / "loud_helpers.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    node = load_node(HERE / "clean.ipynb")
    node.cells[0].source += "\nimport loud_helpers"
    node.cells[2].source += f"\nopen({str(marker)!r}, 'w').close()"  # a train cell, not run
    found = [f for f in check(node, directory / "nb.ipynb").findings if f.code == "NB205"]
    assert len(found) == 1 and "loud_helpers.py" in found[0].message
    assert not marker.exists() and "loud_helpers" not in sys.modules


def test_installed_and_standard_modules_are_fine() -> None:
    assert (
        imports.unprovided({"numpy", "sklearn", "pydantic", "os", "json", "__future__"}, HERE) == ()
    )


def test_package_stops_on_an_unprovided_import_before_execute(tmp_path: Path) -> None:
    shutil.copy(HERE / "NB205_local_module_used.ipynb", tmp_path / "nb.ipynb")
    shutil.copy(HERE / "p_helpers.py", tmp_path / "p_helpers.py")
    result = CliRunner().invoke(
        main, ["package", str(tmp_path / "nb.ipynb"), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    (line,) = [li for li in result.output.splitlines() if li.startswith("error: ")]
    assert "error NB205: line 4: `p_helpers` is a module beside the notebook" in line
    assert "execute" not in result.output.split("error: ")[0]  # stopped at parse
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- NB214: bounds


def test_unbounded_numbers_are_warnings_with_suggested_bounds() -> None:
    found = check_path(HERE / "NB214_unbounded_numbers.ipynb").findings
    warned = {f.message.split("`")[1]: f for f in found if f.code == "NB214"}
    assert set(warned) == {"age", "rooms"}  # x is bounded, label is a string
    assert all(f.severity == "warning" for f in warned.values())
    assert "has no bounds" in warned["age"].message
    assert "add `ge=0, le=77` to its `Field(...)`" in warned["age"].fix
    assert "examples range from 22 to 38.5" in warned["age"].fix
    assert "has no upper bound (le/lt)" in warned["rooms"].message
    assert "add `le=10` to its `Field(...)`" in warned["rooms"].fix


def test_package_prints_the_bounds_warning_before_execute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nb2prod.pipeline import run

    def no_kernel(*args: object, **kwargs: object) -> None:
        raise AssertionError("execute must not be reached in this test")

    monkeypatch.setattr(run, "execute_notebook", no_kernel)
    shutil.copy(HERE / "NB214_unbounded_numbers.ipynb", tmp_path / "nb.ipynb")
    result = CliRunner().invoke(
        main, ["package", str(tmp_path / "nb.ipynb"), "--out", str(tmp_path / "out")]
    )
    assert (
        "warning: " in result.output and "warning NB214: line 6: Input field `age`" in result.output
    )
    assert result.output.index("NB214") < result.output.index("execute")


@pytest.mark.parametrize(
    ("annotation", "lower", "upper"),
    [
        ("float", False, False),
        ("int = 3", False, False),
        ("float | None = None", False, False),
        ("Optional[int] = Field(None, gt=0)", True, False),
        ("Annotated[float, Field(ge=0, le=1)]", True, True),
        ("Annotated[float, Ge(0), Lt(5)]", True, True),
        ("Annotated[float, Interval(le=9)]", False, True),
        ("confloat(ge=0)", True, False),
        ("PositiveInt", True, False),
        ("'float' = Field(le=2)", False, True),
        ("float = Field(ge=0, le=None)", True, False),
    ],
)
def test_bounds_are_read_from_every_way_pydantic_takes_them(
    annotation: str, lower: bool, upper: bool
) -> None:
    tree = ast.parse(f"class Input(BaseModel):\n    v: {annotation}\n")
    node = tree.body[0]
    assert isinstance(node, ast.ClassDef)
    found = bounds.unbounded_fields(node, {}, None)
    if lower and upper:
        assert found == ()
        return
    (field,) = found
    assert (field.lower, field.upper) == (lower, upper)
    assert "<lowest valid>" in field.suggestion() or "<highest valid>" in field.suggestion()


def test_the_suggested_declaration_keeps_the_annotation_and_default() -> None:
    tree = ast.parse("class Input(BaseModel):\n    age: float | None = None\n")
    node = tree.body[0]
    assert isinstance(node, ast.ClassDef)
    (field,) = bounds.unbounded_fields(node, {}, [{"age": 22}, {"age": 38}])
    assert field.declaration() == "age: float | None = Field(None, ge=0, le=76)"


def test_non_numeric_and_bounded_fields_are_not_reported() -> None:
    tree = ast.parse(
        "class Base(BaseModel):\n    n: int\n"
        "class Input(Base):\n    n: int = Field(ge=0, le=9)\n    flag: bool\n    tags: list[float]\n"
        "    kind: Literal[1, 2]\n    name: str\n    x: Union[str, float]\n"
    )
    base, node = tree.body
    assert isinstance(base, ast.ClassDef) and isinstance(node, ast.ClassDef)
    assert bounds.unbounded_fields(node, {"Base": base}, None) == ()


def test_suggested_bounds_widen_the_examples_and_round_outwards() -> None:
    assert bounds._suggested([22, 80], integer=False) == ("0", "160")
    assert bounds._suggested([-3.5, 2.0], integer=False) == ("-9", "7.5")
    assert bounds._suggested([0.12, 0.9], integer=False) == ("0", "1.8")
    assert bounds._suggested([5], integer=True) == ("0", "10")


# ---------------------------------------------------------------- NB215: configuration


def test_config_naming_what_no_cell_makes_is_an_error() -> None:
    path = make_check_fixtures.path_of("NB215_config_names_nothing")
    found = findings(path, "NB215")
    assert any(
        "[evaluation] eval_x = 'holdout_X', but no cell" in f and "did you mean `holdout_x`?" in f
        for f in found
    )
    assert any(
        "[evaluation] output_field = 'label' is not a field of Output (y)" in f for f in found
    )
    assert any(
        "[gates] accuracy: no cell makes the metric 'accuracy' (metrics: f1)" in f for f in found
    )


@pytest.mark.parametrize(
    "evaluate",
    [
        'metrics = {"f1": 1.0}\nmetrics["accuracy"] = 0.9',
        'metrics = {"f1": 1.0}\nmetrics.update(accuracy=0.9)',
        "metrics = compute()",
        'metrics = {"f1": 1.0}\nadd_more(metrics)',
        'metrics = {"accuracy": 0.9}',
    ],
)
def test_a_gate_is_judged_statically_only_when_the_metric_keys_are_certain(evaluate: str) -> None:
    node = load_node(HERE / "clean.ipynb")
    node.cells.append(node.cells[2].copy())
    node.cells[-1].source = f"#| nb2prod: evaluate\n{evaluate}"
    config = Config.model_validate({"gates": {"accuracy": ">= 0.5"}})
    assert not [
        f for f in check(node, HERE / "clean.ipynb", config=config).findings if f.code == "NB215"
    ]


def test_default_evaluation_names_need_no_cell() -> None:
    # eval_X/eval_y are optional: only a configured name that nothing assigns is an error
    assert not findings(HERE / "clean.ipynb", "NB215")


# ---------------------------------------------------------------- NB212: the model cell


def test_a_model_made_in_a_train_cell_names_that_cell_and_when_the_model_is_taken() -> None:
    (found,) = check_path(HERE / "NB212_model_made_in_train.ipynb").errors
    assert found.code == "NB212" and found.cell == 4
    assert "cell 2 (train) does" in found.message
    assert "after the last cell ran" in found.message
    assert found.fix.startswith("Mark cell 2 `#| nb2prod: model` instead of cell 4")


def test_a_model_assigned_inside_a_block_counts() -> None:
    node = load_node(HERE / "clean.ipynb")
    node.cells[
        4
    ].source = "#| nb2prod: model\nwith open('/dev/null') as sink:\n    model = fit(data)"
    assert not [f for f in check(node, HERE / "clean.ipynb").findings if f.code == "NB212"]
