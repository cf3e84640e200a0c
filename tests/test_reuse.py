"""Reuse keys: data lineage, the packages a run depends on, and the trained state (no kernel)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import pytest
from nb2prod.errors import ReleaseExistsError
from nb2prod.notebook.annotations import annotate
from nb2prod.notebook.config import NON_TRAINING_KEYS, TRAINING_KEYS, Config
from nb2prod.notebook.dataflow import analyse
from nb2prod.pipeline.cache import RunCache, run_key
from nb2prod.pipeline.history import guard_packages, stale
from nb2prod.pipeline.lineage import data_changed, hash_files, merge
from nb2prod.pipeline.lock import Lock
from nb2prod.pipeline.packages import changed_packages, run_packages
from nb2prod.pipeline.reuse import TrainedStates, merge_executed, plan_reuse, ranges
from nb2prod.probe import snapshot
from nb2prod.probe.lineage import _Recorder
from nb2prod.release.manifest import Lineage

from tests.conftest import code, notebook

# ---------------------------------------------------------------- config keys


def test_every_config_key_is_classified_as_training_or_not() -> None:
    keys = set(Config.model_fields)
    assert not TRAINING_KEYS & NON_TRAINING_KEYS
    unclassified = keys - TRAINING_KEYS - NON_TRAINING_KEYS
    assert not unclassified, f"classify {unclassified} in notebook/config.py TRAINING_KEYS"
    assert keys == TRAINING_KEYS | NON_TRAINING_KEYS


# ---------------------------------------------------------------- the trained state's plan

SETUP = "#| nb2prod: setup\nfrom pydantic import BaseModel"
CONTRACT = "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float\n"
PREP = (
    "#| nb2prod: preprocess\ndef preprocess(inputs):\n    return [[scaler * i.x] for i in inputs]"
)
TRAIN = "#| nb2prod: train\nscaler = 2.0\nX_train = [[1.0]]\neval_X = [[3.0]]\nunused = 1"
MODEL = "#| nb2prod: model\nmodel = sum(X_train[0])"
POST = "#| nb2prod: postprocess\ndef postprocess(raw, inputs):\n    return raw"
EXAMPLES = '#| nb2prod: examples\nexamples = [{"x": 1.0}]'


def _analysis(*sources: str, tmp: Path = Path("nb.ipynb")) -> Any:
    node = notebook(*(code(s) for s in sources))
    return analyse(annotate(node, tmp))


def _plan(*sources: str, config: Config | None = None, parameters: Any = None) -> Any:
    return plan_reuse(_analysis(*sources), config or Config(), parameters or {})


BASE = (SETUP, CONTRACT, PREP, TRAIN, MODEL, POST, EXAMPLES)


def test_the_snapshot_keeps_what_later_cells_and_the_probe_read_from_training_cells() -> None:
    plan = _plan(*BASE)
    # preprocess reads scaler, the probe reads model and eval_X; X_train and unused stay behind
    assert plan.names == ("eval_X", "model", "scaler")
    assert [c.index for c in plan.training] == [3, 4]
    assert [c.index for c in plan.replayed] == [0, 1, 2, 5, 6]
    assert plan.snapshot_after == 4 and plan.problem is None


def test_the_key_ignores_cells_that_cannot_change_the_model() -> None:
    key = _plan(*BASE).key
    edited = list(BASE)
    edited[5] = POST.replace("return raw", "return [r * 2 for r in raw]")
    edited[6] = EXAMPLES.replace("1.0", "5.0")
    assert _plan(*edited).key == key
    assert _plan(*BASE, config=Config(gates={"r2": ">= 0.5"}, version="2.0.0")).key == key


@pytest.mark.parametrize(
    "change",
    [
        {3: TRAIN.replace("2.0", "3.0")},  # a train cell
        {4: MODEL + "\nmodel += 1"},  # the model cell
        {0: SETUP + "\nimport math"},  # a setup cell
    ],
)
def test_the_key_changes_with_training_cells(change: dict[int, str]) -> None:
    edited = [change.get(i, s) for i, s in enumerate(BASE)]
    assert _plan(*edited).key != _plan(*BASE).key


def test_a_cell_a_training_cell_reads_from_counts_as_training() -> None:
    train = TRAIN + "\nfeatures = preprocess([])"  # training calls preprocess
    cells = (SETUP, CONTRACT, PREP, train, MODEL, POST, EXAMPLES)
    edited = list(cells)
    edited[2] = PREP.replace("scaler * i.x", "i.x")
    assert _plan(*edited).key != _plan(*cells).key


def test_parameters_and_training_config_change_the_key() -> None:
    key = _plan(*BASE).key
    assert _plan(*BASE, parameters={"C": 2}).key != key
    assert _plan(*BASE, config=Config(execution={"env": ["SEED"]})).key != key


def test_an_unreadable_cell_means_no_reuse() -> None:
    plan = _plan(*BASE, "%%bash\necho hi")
    assert plan.problem is not None and "cannot be analysed" in plan.problem


def test_ranges_are_compact() -> None:
    assert ranges([2, 3, 4, 5, 7, 9, 10]) == "2-5, 7, 9-10"
    assert ranges([]) == ""


# ---------------------------------------------------------------- the kernel's recorder


def test_the_recorder_keeps_data_reads_and_drops_writes_code_and_scratch(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "out.csv").write_text("")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "plan.json").write_text("{}")
    recorder = _Recorder([str(scratch)])
    recorder.cwd = str(tmp_path)
    recorder.hook("open", ("data.csv", "r", 0))
    recorder.hook("open", (str(tmp_path / "out.csv"), "w", 577))
    recorder.hook("open", ("out.csv", "r", 0))  # read back what it wrote: an output
    recorder.hook("open", (str(scratch / "plan.json"), "r", 0))
    recorder.hook("open", (json.__file__, "r", 0))  # the standard library
    recorder.hook("open", ("/proc/self/status", "r", 0))
    recorder.hook("open", (3, "r", 0))  # a descriptor
    recorder.hook("open", ("gone.csv", "r", 0))
    recorder.hook("urllib.Request", ("https://example.org/data.csv", None, {}, "GET"))
    recorder.hook("socket.connect", (None, ("example.org", 443)))
    recorder.hook("socket.connect", (None, ("10.1.2.3", 5432)))
    recorder.hook("socket.connect", (None, ("127.0.0.1", 8000)))
    result = recorder.result()
    assert result["files"] == [str(tmp_path / "data.csv")]
    assert result["unhashable"] == ["https://example.org/data.csv", "connection to 10.1.2.3:5432"]
    recorder.hook("open", ("data.csv", "r", 0))  # after finish: nothing more
    assert not recorder.active


def test_the_audit_hook_records_a_real_kernels_reads(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("a\n1\n")
    (tmp_path / "db.sqlite").write_bytes(b"")
    script = (
        "from nb2prod.probe import lineage\n"
        "lineage.start([])\n"
        "import sqlite3, csv, wave\n"
        "rows = list(csv.reader(open('data.csv')))\n"
        "open('written.txt', 'w').write('x')\n"
        "sqlite3.connect('db.sqlite').close()\n"
        "lineage.finish('out.json')\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, timeout=60)
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["files"] == [str(tmp_path / "data.csv"), str(tmp_path / "db.sqlite")]
    assert "sqlite3" in result["modules"] and "wave" in result["modules"]


# ---------------------------------------------------------------- hashing on the host


def test_lineage_is_hashed_relative_to_the_notebook_and_rechecked(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("y\n1\n")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.csv"
    outside.write_text("z\n")
    lineage = hash_files([str(data), str(outside), str(tmp_path / "gone")], [], tmp_path)
    assert [f.path for f in lineage.files] == [str(outside), "data.csv"] or [
        f.path for f in lineage.files
    ] == ["data.csv", str(outside)]
    assert data_changed(lineage, tmp_path, reuse_unhashed=False) is None
    data.write_text("y\n0\n")  # labels flipped, same size
    assert data_changed(lineage, tmp_path, False) == "data.csv changed since the last run"
    data.unlink()
    assert data_changed(lineage, tmp_path, False) == "data.csv, which the last run read, is gone"
    outside.unlink()


def test_unhashable_data_is_reused_only_when_asked(tmp_path: Path) -> None:
    lineage = Lineage(unhashable=("https://example.org/x.csv",))
    reason = data_changed(lineage, tmp_path, reuse_unhashed=False)
    assert reason is not None and "--reuse-unhashed-data" in reason and "example.org" in reason
    assert data_changed(lineage, tmp_path, reuse_unhashed=True) is None
    both = merge(lineage, Lineage(unhashable=("connection to 10.0.0.1:5432",)))
    assert len(both.unhashable) == 2


# ---------------------------------------------------------------- packages

INSTALLED = {"numpy": "2.0.0", "scikit-learn": "1.5.0", "Jinja2": "3.1.4", "bentoml": "1.4.0"}


def test_a_run_depends_on_what_it_imported_and_what_the_lock_pins() -> None:
    found = run_packages(["json"], ["numpy", "scikit-learn"], INSTALLED)
    assert found == {"numpy": "2.0.0", "scikit-learn": "1.5.0"}


def test_an_unrelated_install_changes_nothing_a_locked_upgrade_does() -> None:
    recorded = {"numpy": "2.0.0", "scikit-learn": "1.5.0"}
    assert changed_packages(recorded, {**INSTALLED, "requests": "2.32.0"}) == []
    upgraded = {**INSTALLED, "scikit-learn": "1.6.1"}
    assert changed_packages(recorded, upgraded) == [("scikit-learn", "1.5.0", "1.6.1")]
    assert changed_packages(recorded, {"numpy": "2.0.0"}) == [("scikit-learn", "1.5.0", None)]


def _found(tmp_path: Path, **manifest: Any) -> Any:
    fields = {"name": "demo", "version": "1.0.0", "cache_key": "k", "lineage": None,
              "packages": {"scikit-learn": "1.5.0"}, "bento_tag": "demo:x"} | manifest  # fmt: skip
    return SimpleNamespace(manifest=SimpleNamespace(**fields), directory=tmp_path)


def test_a_same_version_release_with_a_changed_package_is_refused(tmp_path: Path) -> None:
    found = _found(tmp_path)
    guard_packages(found, {**INSTALLED, "requests": "2.32.0"}, replace=False)  # unrelated: fine
    upgraded = {**INSTALLED, "scikit-learn": "1.6.1"}
    with pytest.raises(ReleaseExistsError) as raised:
        guard_packages(found, upgraded, replace=False)
    assert "scikit-learn 1.5.0 -> 1.6.1" in raised.value.message
    assert "1.0.1" in (raised.value.hint or "") and "--replace" in (raised.value.hint or "")
    guard_packages(found, upgraded, replace=True)


def test_stale_names_why_a_release_is_not_up_to_date(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("y\n1\n")
    lineage = hash_files([str(data)], [], tmp_path)
    found = _found(tmp_path, lineage=lineage)
    upgraded = {**INSTALLED, "scikit-learn": "1.6.1"}
    assert "notebook" in (stale(found, "other", notebook_dir=tmp_path, installed=INSTALLED) or "")
    assert "scikit-learn 1.5.0 -> 1.6.1" in (
        stale(found, "k", notebook_dir=tmp_path, installed=upgraded) or ""
    )
    data.write_text("y\n0\n")
    assert stale(found, "k", notebook_dir=tmp_path, installed=INSTALLED) == (
        "data.csv changed since the last run"
    )


# ---------------------------------------------------------------- the run cache


def test_the_run_key_no_longer_covers_every_installed_package() -> None:
    base = {"notebook": b"{}", "parameters": {}, "config": None, "allow_drift": False}
    assert run_key(**base) == run_key(**base)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        run_key(**base, installed={"x": "1"})  # type: ignore[arg-type]


def _capture_dir(tmp_path: Path) -> Path:
    capture_dir = tmp_path / "capture"
    capture_dir.mkdir()
    (capture_dir / "probe.json").write_text(
        '{"model": {"file": "m.joblib", "format": "joblib", "trusted": [], "why": "w"},'
        ' "model_class": "c", "examples": [], "metrics": null, "input_schema": {},'
        ' "output_schema": {}, "output_fields": [], "requirements": {},'
        ' "unresolved_modules": [], "installed": {}, "python_version": "3.11.7"}'
    )
    return capture_dir


def test_a_cached_run_misses_when_its_data_or_packages_changed(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("y\n1\n")
    cache = RunCache(tmp_path / "cache")
    lineage = hash_files([str(data)], [], tmp_path)
    cache.store("k", _capture_dir(tmp_path), notebook(), Lock((), ""), lineage,
                {"scikit-learn": "1.5.0"})  # fmt: skip
    hit, _ = cache.load("k", notebook_dir=tmp_path, installed={**INSTALLED, "requests": "2"})
    assert hit is not None and hit.lineage == lineage
    miss, why = cache.load("k", notebook_dir=tmp_path, installed={"scikit-learn": "1.6.1"})
    assert miss is None and "scikit-learn 1.5.0 -> 1.6.1" in why
    data.write_text("y\n0\n")
    miss, why = cache.load("k", notebook_dir=tmp_path, installed=INSTALLED)
    assert miss is None and why == "data.csv changed since the last run"


# ---------------------------------------------------------------- trained states


def _kernel_dir(tmp_path: Path, values: dict[str, Any]) -> Path:
    kernel = tmp_path / "kernel"
    snapshot.save(values, sorted(values), str(kernel))
    return kernel


def _executed(plan: Any) -> nbformat.NotebookNode:
    node = notebook(*(code(f"# cell {i}") for i in range(7)))
    for i, cell in enumerate(node.cells):
        cell.metadata["nb2prod"] = {"index": i}
        cell.outputs = [nbformat.v4.new_output("stream", text=f"out {i}\n")]
    return node


def test_a_trained_state_round_trips_and_is_found_only_for_the_same_training(
    tmp_path: Path,
) -> None:
    nb = tmp_path / "nb.ipynb"
    nb.write_text("{}")
    states = TrainedStates(tmp_path / "cache")
    plan = _plan(*BASE)
    found, why = states.find(plan, nb, INSTALLED, False)
    assert found is None and why == "no earlier run of this notebook kept its trained state"
    kernel = _kernel_dir(tmp_path, {"model": 3.0, "scaler": 2.0, "eval_X": [[3.0]]})
    problem = states.store(plan, nb, kernel, _executed(plan), Lineage(), {"numpy": "2.0.0"})
    assert problem is None
    found, why = states.find(plan, nb, INSTALLED, False)
    assert found is not None and why == ""
    restored: dict[str, Any] = {}
    snapshot.restore(restored, str(found.state_file))
    assert restored == {"model": 3.0, "scaler": 2.0, "eval_X": [[3.0]]}
    assert [c.source for c in found.executed_cells()] == ["# cell 3", "# cell 4"]
    edited = list(BASE)
    edited[3] = TRAIN.replace("2.0", "3.0")
    found, why = states.find(_plan(*edited), nb, INSTALLED, False)
    assert found is None and why.startswith("cell 3 (train)") and why.endswith("changed")
    found, why = states.find(plan, nb, {"numpy": "2.1.0"}, False)
    assert found is None and "numpy 2.0.0 -> 2.1.0" in why
    needs_more = list(BASE)
    needs_more[5] = POST.replace("return raw", "return [r + unused for r in raw]")
    found, why = states.find(_plan(*needs_more), nb, INSTALLED, False)
    assert found is None and "`unused`" in why


def test_a_state_that_cannot_be_pickled_says_so_next_time(tmp_path: Path) -> None:
    nb = tmp_path / "nb.ipynb"
    nb.write_text("{}")
    states = TrainedStates(tmp_path / "cache")
    plan = _plan(*BASE)
    kernel = _kernel_dir(tmp_path, {"model": 3.0, "scaler": threading.Lock()})
    problem = states.store(plan, nb, kernel, _executed(plan), Lineage(), {})
    assert problem is not None and "`scaler` could not be pickled" in problem
    found, why = states.find(plan, nb, INSTALLED, False)
    assert found is None and "`scaler` could not be pickled" in why


def test_only_the_newest_states_of_a_notebook_are_kept(tmp_path: Path) -> None:
    nb = tmp_path / "nb.ipynb"
    nb.write_text("{}")
    states = TrainedStates(tmp_path / "cache")
    for seed in range(5):
        edited = list(BASE)
        edited[3] = TRAIN.replace("2.0", f"{seed}.5")
        plan = _plan(*edited)
        states.store(plan, nb, _kernel_dir(tmp_path / str(seed), {"model": seed}), _executed(plan),
                     Lineage(), {})  # fmt: skip
    assert len(states._entries(nb)) == 3


def test_a_reuse_run_shows_the_training_cells_as_the_last_run_left_them() -> None:
    analysis = _analysis(*BASE)
    plan = plan_reuse(analysis, Config(), {})
    stored = [c for c in _executed(plan).cells if c.metadata["nb2prod"]["index"] in (3, 4)]
    replayed = notebook(*(code(f"# new {i}") for i in (0, 1, 2, 5, 6)))
    for i, cell in zip((0, 1, 2, 5, 6), replayed.cells, strict=True):
        cell.metadata["nb2prod"] = {"index": i}
    merged = merge_executed(analysis.notebook.cells, plan.training, stored, replayed)
    assert [c.source for c in merged.cells] == [
        "# new 0", "# new 1", "# new 2", "# cell 3", "# cell 4", "# new 5", "# new 6",
    ]  # fmt: skip
    assert merged.cells[3].metadata["nb2prod"]["reused"] is True
