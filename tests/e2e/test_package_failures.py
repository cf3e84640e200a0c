"""Failed packaging with a real kernel: clear errors, and nothing half-written anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from tests.conftest import (
    IRIS,
    code,
    copy_iris,
    minimal_cells,
    notebook,
    tree_snapshot,
    write_notebook,
)
from tests.e2e.conftest import bento_tags, nb2prod

pytestmark = pytest.mark.e2e


def earlier_release(dist: Path) -> None:
    """A stand-in for an earlier release that a failed run must not touch."""
    old = dist / "iris-classifier-1.0.0"
    (old / "model").mkdir(parents=True)
    (old / "release.json").write_text('{"version": "1.0.0"}\n')
    (old / "model" / "model.joblib").write_bytes(b"earlier model")


def test_a_raising_cell_names_the_cell_and_leaves_dist_unchanged(tmp_path: Path) -> None:
    path = copy_iris(tmp_path)
    node = nbformat.read(IRIS, as_version=4)
    node.cells.insert(5, code('#| nb2prod: train\nraise ValueError("labels are missing")'))
    nbformat.write(node, path)
    dist = tmp_path / "dist"
    earlier_release(dist)
    before, tags = tree_snapshot(dist), bento_tags()
    run = nb2prod("package", path, cwd=tmp_path)
    assert run.code == 1
    error = next(li for li in run.stderr.splitlines() if li.startswith("error:"))
    assert "cell 5 (train)" in error
    assert "raise ValueError" in error and "ValueError: labels are missing" in error
    kept = Path(run.stderr.split("is at ")[1].split()[0])
    assert kept.is_file() and "labels are missing" in kept.read_text()
    assert tree_snapshot(dist) == before
    assert bento_tags() == tags


def test_a_failing_gate_stops_before_anything_is_built(tmp_path: Path) -> None:
    config = (
        (IRIS.parent / "nb2prod.toml")
        .read_text()
        .replace('accuracy = ">= 0.90"', 'accuracy = ">= 0.999"')
    )
    path = copy_iris(tmp_path, config)
    dist = tmp_path / "dist"
    earlier_release(dist)
    before, tags = tree_snapshot(dist), bento_tags()
    run = nb2prod("package", path, cwd=tmp_path)
    assert run.code == 1
    assert "quality gates failed" in run.stderr
    row = next(li for li in run.stderr.splitlines() if li.startswith("accuracy"))
    assert row.split() == ["accuracy", "0.977778", ">=", "0.999", "FAIL"]
    assert "build" not in run.stdout.split("evaluate")[-1]
    assert tree_snapshot(dist) == before
    assert bento_tags() == tags


def test_a_hidden_dependency_static_analysis_cannot_see_fails_at_package_time(
    tmp_path: Path,
) -> None:
    # `check` finds plain names (tests/test_check.py); a dynamic lookup slips past it, and the
    # kernel probe, which imports the extracted pipeline.py fresh, still catches it.
    cells = minimal_cells()
    cells.insert(0, code("#| nb2prod: train\nscale = 10.0"))
    cells[3] = code(
        "#| nb2prod: preprocess\ndef preprocess(inputs):\n"
        "    return [[i.x * globals()['scale']] for i in inputs]"
    )
    path = write_notebook(tmp_path, "hidden.ipynb", notebook(*cells))
    run = nb2prod("package", path, "--out", tmp_path / "out")
    assert run.code == 1
    assert "KeyError: 'scale'" in run.stderr
    assert "(in cell 3 (preprocess) `def preprocess(inputs):`, line 3:" in run.stderr
    assert not (tmp_path / "out").exists()


def test_an_invalid_example_is_named(tmp_path: Path) -> None:
    cells = minimal_cells()
    cells[-1] = code('#| nb2prod: examples\nexamples = [{"x": 1.0}, {"x": "big"}]')
    run = nb2prod("package", write_notebook(tmp_path, "ex.ipynb", notebook(*cells)))
    assert run.code == 1 and "examples[1] is not a valid Input" in run.stderr


def test_parameters_override_changes_the_model_and_are_recorded(tmp_path: Path) -> None:
    cells = minimal_cells()
    cells[0] = code(
        "#| nb2prod: setup\nimport yaml  # import name differs from its distribution\nfrom pydantic import BaseModel"
    )
    cells.insert(0, code("k = 2.0", "parameters"))
    cells[4] = code(
        "#| nb2prod: model\nfrom sklearn.dummy import DummyRegressor\n"
        "model = DummyRegressor(strategy='constant', constant=k).fit([[0.0]], [k])"
    )
    (tmp_path / "nb2prod.toml").write_text('[service]\nauth = "none"\n')
    path = write_notebook(tmp_path, "const.ipynb", notebook(*cells))
    out = tmp_path / "release"
    run = nb2prod("package", path, "-p", "k", "7.5", "--out", out)
    assert run.code == 0, run.stdout + run.stderr
    release = json.loads((out / "release.json").read_text())
    assert release["parameters"] == {"k": 7.5} and release["name"] == "const"
    examples = json.loads((out / "examples.json").read_text())["examples"]
    assert [e["output"] for e in examples] == [{"y": 7.5}, {"y": 7.5}]
    assert "injected-parameters" in (out / "notebook.executed.ipynb").read_text()
    header = (out / "requirements.lock").read_text().splitlines()[1]
    assert "PyYAML==" in header and "scikit-learn==" in header  # yaml -> PyYAML, sklearn -> ...
