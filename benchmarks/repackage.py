"""A fix never waits for training again: package a notebook whose training takes ~60 s, edit its
postprocess cell, package again (same version, --replace), and print both times by stage.

Target: the re-package's own part (everything but build and verify) under 15 s, plus build and
verify, which any release needs. Not a timed test: run it by hand and put the figures in
docs/reproducibility.md.

Run: .venv/bin/python benchmarks/repackage.py [TRAIN_SECONDS]   (temporary BENTOML_HOME and cache)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook

CELLS = [
    "#| nb2prod: setup\nfrom pydantic import BaseModel",
    "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float\n\n"
    "class Output(BaseModel):\n    y: float\n    label: str\n",
    "#| nb2prod: train\nimport time\nimport numpy as np\n"
    "from sklearn.linear_model import LinearRegression\n"
    "rng = np.random.default_rng(0)\nX = rng.normal(size=(500, 1))\ny = 3 * X[:, 0] + 1\n"
    "for epoch in range(TRAIN_SECONDS):  # stands for a long fit\n    time.sleep(1)\n"
    "fitted = LinearRegression().fit(X, y)\neval_X, eval_y = X[:100], y[:100]",
    "#| nb2prod: model\nmodel = fitted",
    "#| nb2prod: preprocess\ndef preprocess(inputs):\n    return [[i.x] for i in inputs]",
    "#| nb2prod: postprocess\ndef postprocess(raw, inputs):\n"
    "    return [Output(y=float(v), label=LABEL) for v in raw]",
    '#| nb2prod: examples\nexamples = [{"x": 0.5}, {"x": -1.0}]',
]


class Recorder:
    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.details: dict[str, str] = {}

    def started(self, stage: str, detail: str) -> None:
        pass

    def finished(self, stage: str, seconds: float, detail: str) -> None:
        self.stages[stage] = seconds
        self.details[stage] = detail

    def update(self, stage: str, detail: str) -> None:
        pass  # the running cell: not a figure

    def note(self, message: str) -> None:
        pass


def write(path: Path, train_seconds: int, label: str) -> None:
    cells = [c.replace("TRAIN_SECONDS", str(train_seconds)) for c in CELLS]
    cells[5] = cells[5].replace("LABEL", repr(label))
    nbformat.write(new_notebook(cells=[new_code_cell(c) for c in cells]), path)


def main() -> None:
    train_seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    scratch = Path(tempfile.mkdtemp(prefix="nb2prod-bench-"))
    os.environ["BENTOML_HOME"] = str(scratch / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    os.environ["NB2PROD_CACHE_DIR"] = str(scratch / "cache")
    from nb2prod.pipeline.run import PackageRequest, package

    notebook = scratch / "slow.ipynb"
    (scratch / "nb2prod.toml").write_text(
        'name = "slow"\nversion = "1.0.0"\n[evaluation]\ntask = "regression"\n'
    )
    write(notebook, train_seconds, "first")
    runs = []
    for label, replace in (("first", False), ("fixed", True)):
        write(notebook, train_seconds, label)
        recorder = Recorder()
        start = time.perf_counter()
        package(PackageRequest(notebook=notebook, out=scratch / "dist", replace=replace), recorder)
        runs.append((time.perf_counter() - start, recorder))

    print(f"nb2prod package, training {train_seconds} s, then the postprocess cell edited")
    print(f"  {'stage':<10} {'first':>9} {'re-package':>11}")
    for stage in runs[0][1].stages:
        print(
            f"  {stage:<10} {runs[0][1].stages[stage]:7.2f} s {runs[1][1].stages.get(stage, 0):9.2f} s"
        )
    for name, (total, recorder) in zip(("first", "re-package"), runs, strict=True):
        outside = recorder.stages.get("build", 0) + recorder.stages.get("verify", 0)
        print(f"  {name:<10} total {total:7.2f} s = {total - outside:6.2f} s + build and "
              f"verify {outside:6.2f} s")  # fmt: skip
    first, again = runs[0][0], runs[1][0]
    own = again - runs[1][1].stages.get("build", 0) - runs[1][1].stages.get("verify", 0)
    print(f"  ratio first / re-package: {first / again:.1f}x; re-package without build and "
          f"verify: {own:.1f} s (target < 15 s)")  # fmt: skip
    print(f"  execute: {runs[1][1].details.get('execute', '')}")


if __name__ == "__main__":
    main()
