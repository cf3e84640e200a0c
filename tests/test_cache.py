"""The run cache key: any input that decides a run changes it."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nb2prod.pipeline.cache import RunCache, installed_distributions, run_key
from nb2prod.pipeline.lock import Drift, Lock

from tests.conftest import minimal_cells, notebook

BASE = {
    "notebook": b'{"cells": []}',
    "parameters": {"C": 1.0},
    "config": b'version = "1.0.0"\n',
    "allow_drift": False,
}


def test_the_same_inputs_give_the_same_key() -> None:
    assert run_key(**BASE) == run_key(**dict(BASE))  # type: ignore[arg-type]


def test_every_input_changes_the_key() -> None:
    key = run_key(**BASE)  # type: ignore[arg-type]
    for change in (
        {"notebook": b'{"cells": [] }'},  # one byte
        {"parameters": {"C": 2.0}},
        {"config": b'version = "1.0.1"\n'},
        {"config": None},
        {"allow_drift": True},
    ):
        assert run_key(**{**BASE, **change}) != key, change  # type: ignore[arg-type]


def test_installed_distributions_are_this_environments() -> None:
    installed = installed_distributions()
    assert "nbformat" in installed and "bentoml" in installed


def test_an_entry_round_trips_and_a_broken_one_is_a_miss(tmp_path: Path) -> None:
    capture_dir = tmp_path / "capture"
    capture_dir.mkdir()
    (capture_dir / "probe.json").write_text(
        '{"model": {"file": "m.joblib", "format": "joblib", "trusted": [], "why": "w"},'
        ' "model_class": "c", "examples": [], "metrics": null, "input_schema": {},'
        ' "output_schema": {}, "output_fields": [], "requirements": {},'
        ' "unresolved_modules": [], "installed": {}, "python_version": "3.11.7"}'
    )
    cache = RunCache(tmp_path / "cache")
    lock = Lock(direct=("a==1",), text="a==1\n", drift=(Drift("b", "1", "2"),))
    cache.store("k1", capture_dir, notebook(*minimal_cells()), lock)
    hit, _ = cache.load("k1")
    assert hit is not None and hit.lock == lock and hit.capture.model.format == "joblib"
    assert isinstance(hit.executed, nbformat.NotebookNode)
    assert cache.load("other") == (None, "")
    (tmp_path / "cache" / "k1" / "lock.json").write_text("{not json")
    assert cache.load("k1") == (None, "")
