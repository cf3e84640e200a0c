"""The CLI is thin: it passes arguments through and turns errors into one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from nb2prod.cli import main
from nb2prod.pipeline import run as package_module
from nb2prod.pipeline.run import PackageResult

from tests.conftest import code, minimal_cells, notebook, write_notebook


def test_package_passes_parameters_config_and_flags(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    seen: dict[str, Any] = {}

    def fake_package(request, progress):  # type: ignore[no-untyped-def]
        seen["request"] = request
        return PackageResult(tmp_path / "rel", "svc:abc", "svc", "1.0.0", 3, 1.0)

    monkeypatch.setattr(package_module, "package", fake_package)
    result = CliRunner().invoke(
        main,
        ["package", "nb.ipynb", "--config", "c.toml", "--out", "o", "-p", "C", "0.5",
         "-p", "name", "abc", "-p", "flag", "True", "--no-gates"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    request = seen["request"]
    assert request.notebook == Path("nb.ipynb") and request.config == Path("c.toml")
    assert request.out == Path("o") and request.enforce_gates is False
    assert dict(request.parameters) == {"C": 0.5, "name": "abc", "flag": True}
    assert "svc:abc" in result.output and "nb2prod serve" in result.output


def test_errors_are_one_line_with_a_hint_and_exit_1(tmp_path: Path) -> None:
    cells = [c for c in minimal_cells() if "nb2prod: model" not in c.source]
    path = write_notebook(tmp_path, "nb.ipynb", notebook(*cells))
    result = CliRunner().invoke(main, ["package", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    (line,) = [li for li in result.output.splitlines() if li.startswith("error: ")]
    assert "nb.ipynb" in line and "no cell has the role 'model'" in line
    assert "hint: " in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_unknown_parameter_is_refused_before_running(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path, "nb.ipynb", notebook(code("C = 1", "parameters"), *minimal_cells())
    )
    result = CliRunner().invoke(main, ["package", str(path), "-p", "D", "2"])
    assert result.exit_code == 1
    assert "-p D: the parameters cell" in result.output and "Parameters: C." in result.output


def test_missing_notebook(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["package", str(tmp_path / "nope.ipynb")])
    assert result.exit_code == 1 and "no such notebook" in result.output


def test_verify_of_something_that_is_not_a_release(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["verify", str(tmp_path)])
    assert result.exit_code == 1 and "not an nb2prod release" in result.output
