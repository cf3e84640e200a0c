"""The Spark engine says what is missing; scoring on Spark itself is in tests/e2e/test_score.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from nb2prod.cli import main
from nb2prod.errors import MissingToolError
from nb2prod.scoring.spark import session

from tests.test_batch import ROWS, make_release, write_rows


def test_without_pyspark_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark raises ImportError
    with pytest.raises(MissingToolError) as caught:
        session()
    assert caught.value.hint is not None and "pip install 'nb2prod[spark]'" in caught.value.hint
    release = make_release(tmp_path / "release")
    source = write_rows(tmp_path / "rows.parquet", ROWS)
    result = CliRunner().invoke(
        main, ["score", str(release), str(source), str(tmp_path / "o.parquet"), "--engine", "spark"]
    )
    assert result.exit_code == 1
    assert "error: the Spark engine needs PySpark" in result.output
    assert not (tmp_path / "o.parquet").exists()


def test_without_java_the_error_names_debians_package(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pyspark", reason="PySpark is not installed")
    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(MissingToolError) as caught:
        session()
    assert caught.value.hint == "apt-get install openjdk-17-jre-headless"
