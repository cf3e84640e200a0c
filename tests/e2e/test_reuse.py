"""Re-packaging with a real kernel: the data a notebook reads is part of every reuse key, and a fix
to a cell that cannot change the model reuses the trained state instead of training again.

One tiny notebook, packaged once per module; each test changes one thing and re-packages the
same version with --replace. The train cell appends a line to counter.txt each time it runs, so
a test can tell whether training ran again."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from tests.conftest import code, notebook, write_notebook
from tests.e2e.conftest import Run, nb2prod

pytestmark = pytest.mark.e2e

CELLS = [
    "#| nb2prod: setup\nfrom pydantic import BaseModel",
    "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float\n\n"
    "class Output(BaseModel):\n    y: float\n    note: str\n",
    "#| nb2prod: train\nimport csv\nwith open('counter.txt', 'a') as f:\n    f.write('trained\\n')\n"
    "rows = list(csv.DictReader(open('data.csv')))\n"
    "mean = sum(float(r['label']) for r in rows) / len(rows)",
    "#| nb2prod: model\nfrom sklearn.dummy import DummyRegressor\n"
    "model = DummyRegressor(strategy='constant', constant=mean).fit([[0.0]], [mean])",
    "#| nb2prod: preprocess\ndef preprocess(inputs):\n    return [[i.x] for i in inputs]",
    "#| nb2prod: postprocess\ndef postprocess(raw, inputs):\n"
    "    return [Output(y=float(v), note='first') for v in raw]",
    '#| nb2prod: examples\nexamples = [{"x": 1.0}]',
]
TRAIN, POSTPROCESS = 2, 5


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cells = list(CELLS)
        (root / "nb2prod.toml").write_text('name = "lineage-demo"\nversion = "1.0.0"\n')
        (root / "data.csv").write_text("x,label\n1,1\n2,1\n3,1\n4,0\n")
        self.write()

    @property
    def release(self) -> Path:
        return self.root / "dist" / "lineage-demo-1.0.0"

    def write(self) -> None:
        write_notebook(self.root, "demo.ipynb", notebook(*(code(c) for c in self.cells)))

    def package(self, *args: str) -> Run:
        run = nb2prod("package", self.root / "demo.ipynb", "--out", self.release, *args,
                      cwd=self.root)  # fmt: skip
        assert run.code == 0, run.stdout + run.stderr
        return run

    def trainings(self) -> int:
        return (self.root / "counter.txt").read_text().count("trained")

    def answer(self) -> dict[str, object]:
        examples = json.loads((self.release / "examples.json").read_text())["examples"]
        output: dict[str, object] = examples[0]["output"]  # verify: the bento answers the same
        return output

    def release_json(self) -> dict[str, object]:
        data: dict[str, object] = json.loads((self.release / "release.json").read_text())
        return data


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    found = Project(tmp_path_factory.mktemp("lineage"))
    found.package()
    assert found.trainings() == 1
    lineage = found.release_json()["lineage"]
    assert isinstance(lineage, dict)
    assert [f["path"] for f in lineage["files"]] == ["data.csv"], lineage
    assert "- `data.csv`, 24 bytes, sha256" in (found.release / "MODEL_CARD.md").read_text()
    return found


def _execute_line(run: Run) -> str:
    return next(line for line in run.stdout.splitlines() if line.startswith("✓ execute"))


def test_changed_data_re_executes_and_changes_the_model(project: Project) -> None:
    before = project.trainings()
    old = project.answer()["y"]
    (project.root / "data.csv").write_text("x,label\n1,0\n2,0\n3,0\n4,1\n")  # labels flipped
    run = project.package("--replace")
    assert "nothing to do" not in run.stdout
    assert "data.csv changed since the last run" in _execute_line(run), run.stdout
    assert project.trainings() == before + 1
    assert project.answer()["y"] != old and project.answer()["y"] == 0.25


def test_a_postprocess_fix_reuses_the_trained_state(project: Project) -> None:
    project.package("--replace")  # whatever ran before, the trained state of this notebook
    before = project.trainings()
    project.cells[POSTPROCESS] = project.cells[POSTPROCESS].replace("'first'", "'fixed'")
    project.write()
    run = project.package("--replace")
    line = _execute_line(run)
    assert "reused the trained state of the last run (cells 2-3 unchanged)" in line, run.stdout
    assert "postprocess" in line
    assert project.trainings() == before  # the train cell did not run again
    assert project.answer()["note"] == "fixed"
    assert project.release_json()["reused"] == ["trained state"]
    executed = nbformat.read(project.release / "notebook.executed.ipynb", as_version=4)
    assert any("counter.txt" in c.source for c in executed.cells)  # the training cells are shown


def test_a_train_cell_change_re_executes_everything(project: Project) -> None:
    before = project.trainings()
    project.cells[TRAIN] = project.cells[TRAIN].replace("/ len(rows)", "/ len(rows) + 1")
    project.write()
    run = project.package("--replace")
    line = _execute_line(run)
    assert "ran every cell: cell 2 (train)" in line and "changed" in line, run.stdout
    assert project.trainings() == before + 1


def test_a_fix_after_the_probe_failed_does_not_train_again(project: Project) -> None:
    """Every cell ran, then the probe refused the examples' answers: the training is kept."""
    before = project.trainings()
    project.cells[TRAIN] = project.cells[TRAIN].replace("+ 1", "+ 3")  # trains once more, below
    project.cells[POSTPROCESS] = project.cells[POSTPROCESS].replace(
        "Output(y=float(v), note='fixed')", "Output(y=float(v), note=None)"
    )  # an Output the contract refuses: the probe stops the run
    project.write()
    failed = nb2prod("package", project.root / "demo.ipynb", "--out", project.release,
                     "--replace", cwd=project.root)  # fmt: skip
    assert failed.code == 1, failed.stdout
    assert project.trainings() == before + 1
    project.cells[POSTPROCESS] = project.cells[POSTPROCESS].replace("note=None", "note='again'")
    project.write()
    run = project.package("--replace")
    assert "reused the trained state of the last run" in _execute_line(run), run.stdout
    assert project.trainings() == before + 1  # the failed run's training was kept
    assert project.answer()["note"] == "again"


def test_a_fix_after_a_failed_gate_does_not_train_again(project: Project) -> None:
    """The trained state is kept right after execute: a run that fails afterwards (here a gate)
    leaves it for the fix. Last in the module: it changes the config."""
    config = project.root / "nb2prod.toml"
    kept = config.read_text()
    before = project.trainings()
    project.cells[TRAIN] = project.cells[TRAIN].replace("+ 3", "+ 2")  # trains once more, below
    project.cells.append("#| nb2prod: evaluate\nmetrics = {'score': 0.5}")
    project.write()
    config.write_text(kept + "\n[gates]\nscore = '>= 0.9'\n")
    failed = nb2prod("package", project.root / "demo.ipynb", "--out", project.release,
                     "--replace", cwd=project.root)  # fmt: skip
    assert failed.code == 1 and "score" in failed.stdout + failed.stderr, failed.stdout
    assert project.trainings() == before + 1
    config.write_text(kept + "\n[gates]\nscore = '>= 0.4'\n")  # the fix: a gate, not training
    run = project.package("--replace")
    assert "reused the trained state of the last run" in _execute_line(run), run.stdout
    assert project.trainings() == before + 1  # the failed run's training was kept
