"""`nb2prod check`: one fixture notebook per finding, each carrying the findings it must give."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner
from nb2prod.cli import main
from nb2prod.notebook.check import CODES, check_path

from tests.notebooks import make_check_fixtures

FIXTURES = sorted(
    [*make_check_fixtures.HERE.glob("*.ipynb"), *make_check_fixtures.HERE.glob("*/*.ipynb")]
)
ROOT = Path(__file__).resolve().parent.parent


def expected(path: Path) -> Counter[tuple[int | None, str, str]]:
    node = nbformat.read(path, as_version=4)
    return Counter(
        (e["cell"], e["code"], e["severity"]) for e in node.metadata["nb2prod_test"]["expect"]
    )


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_each_fixture_gives_exactly_its_findings(path: Path) -> None:
    report = check_path(path)
    got = Counter((f.cell, f.code, f.severity) for f in report.findings)
    assert got == expected(path), [f.render(path) for f in report.findings]


def test_every_code_has_a_fixture_and_the_clean_one_is_clean() -> None:
    covered = {code for path in FIXTURES for (_, code, _) in expected(path)}
    assert covered == set(CODES)
    assert not check_path(make_check_fixtures.HERE / "clean.ipynb").findings


def test_fixtures_are_up_to_date_with_their_generator() -> None:
    built = {
        name: make_check_fixtures.build(name, *spec)
        for name, spec in make_check_fixtures.FIXTURES.items()
    }
    built.update(make_check_fixtures.extra_fixtures())
    assert {p.stem for p in FIXTURES} == set(built)
    for name, node in built.items():
        on_disk = nbformat.read(make_check_fixtures.path_of(name), as_version=4)
        assert [c.source for c in on_disk.cells] == [c.source for c in node.cells], name


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_the_shipped_notebooks_check_clean(path: Path) -> None:
    assert check_path(path).findings == ()


def test_secrets_are_named_by_kind_never_printed() -> None:
    for name, secret in [
        ("NB400_aws_key_in_source", "AKIAIOSFODNN7EXAMPLE"),
        ("NB400_password_in_url", "hunter2pass"),
        ("NB401_token_in_output", "ghp_1234567890"),
    ]:
        result = CliRunner().invoke(
            main, ["check", str(make_check_fixtures.HERE / f"{name}.ipynb")]
        )
        assert result.exit_code == 1
        assert "credential found" in result.output and secret not in result.output


def test_text_output_is_each_finding_with_its_hint_and_a_summary() -> None:
    path = make_check_fixtures.HERE / "NB200_hidden_dependency.ipynb"
    result = CliRunner().invoke(main, ["check", str(path)])
    lines = result.output.splitlines()
    assert result.exit_code == 1
    assert lines[0] == (
        f"{path}:cell 3: error NB200: name 'deco' is a function defined only in cell 2 (train), "
        "which does not go into the service"
    )
    assert lines[1] == (
        "  hint: Move the definition of `deco` into a `setup` cell (code travels with the "
        "service; only values are exported)."
    )
    assert "name 'pd' is imported only in cell 2 (train)" in lines[2]
    assert lines[-1] == "1 notebook(s): 2 error(s), 0 warning(s)"


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_every_finding_prints_a_hint(path: Path) -> None:
    result = CliRunner().invoke(main, ["check", str(path)])
    lines = result.output.splitlines()[:-1]
    assert len(lines) == 2 * len(check_path(path).findings)
    assert all(line.startswith("  hint: ") and len(line) > 20 for line in lines[1::2])


def test_fitted_state_is_reported_as_exported_not_as_an_error() -> None:
    path = make_check_fixtures.HERE / "NB202_fitted_state.ipynb"
    result = CliRunner().invoke(main, ["check", "--strict", str(path)])
    assert result.exit_code == 0, result.output  # information, not a warning
    assert (
        "info NB202: cell 2 (train) defines `scaler`, read by preprocess (cell 3): exported "
        "with the model as fitted state" in result.output
    )


def test_json_output_for_ci() -> None:
    path = make_check_fixtures.HERE / "NB311_unseeded.ipynb"
    result = CliRunner().invoke(main, ["check", "--format", "json", str(path)])
    (report,) = json.loads(result.output)
    assert result.exit_code == 0  # warnings only
    assert report["errors"] == 0 and report["warnings"] == 2
    assert {f["code"] for f in report["findings"]} == {"NB311"}
    assert set(report["findings"][0]) == {"cell", "severity", "code", "message", "hint"}
    assert report["findings"][0]["hint"].startswith("Pass `random_state=`")


def test_strict_fails_on_warnings() -> None:
    path = str(make_check_fixtures.HERE / "NB301_magic_in_train.ipynb")
    assert CliRunner().invoke(main, ["check", path]).exit_code == 0
    assert CliRunner().invoke(main, ["check", "--strict", path]).exit_code == 1


def test_several_notebooks_at_once_as_pre_commit_passes_them() -> None:
    paths = [
        str(make_check_fixtures.HERE / n) for n in ("clean.ipynb", "NB201_never_defined.ipynb")
    ]
    result = CliRunner().invoke(main, ["check", *paths])
    assert result.exit_code == 1 and "2 notebook(s): 1 error(s)" in result.output


def test_package_refuses_a_notebook_with_check_errors(tmp_path: Path) -> None:
    source = make_check_fixtures.HERE / "NB200_hidden_dependency.ipynb"
    result = CliRunner().invoke(main, ["package", str(source), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    (line,) = [li for li in result.output.splitlines() if li.startswith("error: ")]
    assert "error NB200: name 'deco' is a function defined only in cell 2 (train)" in line
    assert line.endswith("(and 1 more)") and "docs/check.md" in result.output
    assert "hint: Move the definition of `deco` into a `setup` cell" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("train", "warned"),
    [
        ("rng = random.Random(2016)", False),  # seeded where it is made
        ("rng = random.Random()", True),
        ("rng = np.random.RandomState(0)", False),
        ("rng = np.random.RandomState()", True),
    ],
)
def test_a_generator_is_unseeded_only_when_made_without_a_seed(train: str, warned: bool) -> None:
    from nb2prod.notebook.annotations import load_node
    from nb2prod.notebook.check import check

    path = make_check_fixtures.HERE / "clean.ipynb"
    node = load_node(path)
    node.cells[2].source = f"#| nb2prod: train\nimport random\n{train}\ndata = 1"
    found = [f for f in check(node, path).findings if f.code == "NB311"]
    assert bool(found) is warned, found
    if warned:
        assert "without a seed" in found[0].message
