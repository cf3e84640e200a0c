"""Notebooks as data scientists write them: fitted preprocessing state read by service code, and a
multi-output regressor whose one Output field is a list, with no postprocess cell."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import httpx
import nbformat
import pytest
from nb2prod.adapters import bento

from tests.conftest import code, notebook, write_notebook
from tests.e2e.conftest import Run, nb2prod

pytestmark = pytest.mark.e2e

TRAIN = (
    "#| nb2prod: train\nfrom sklearn.preprocessing import OneHotEncoder, StandardScaler\n"
    "rng = np.random.default_rng(0)\n"
    "df = pd.DataFrame({'x': rng.uniform(0, 10, 300), 'region': rng.choice(['north', 'south'], 300)})\n"
    "Y = np.c_[3 * df['x'], -df['x']] + rng.normal(0, 0.1, (300, 2))\n"
    "scaler = StandardScaler().fit(df[['x']])\n"
    "encoder = OneHotEncoder(handle_unknown='ignore').fit(df[['region']])\n"
    "defaults = {'region': df['region'].mode()[0]}\n"
)


def cells(train: str = TRAIN, output: str = "list[float]") -> list[nbformat.NotebookNode]:
    return [
        code(
            "#| nb2prod: setup\nfrom typing import Optional\nimport numpy as np\nimport pandas as pd\n"
            "from pydantic import BaseModel"
        ),
        code(
            "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float\n"
            f"    region: Optional[str] = None\n\nclass Output(BaseModel):\n    y: {output}"
        ),
        code(train),
        code(
            "#| nb2prod: preprocess\ndef preprocess(inputs):\n"
            "    frame = pd.DataFrame([{'x': i.x, 'region': i.region or defaults['region']}"
            " for i in inputs])\n"
            "    return np.c_[scaler.transform(frame[['x']]),"
            " encoder.transform(frame[['region']]).toarray()]"
        ),
        code(
            "#| nb2prod: model\nfrom sklearn.linear_model import Ridge\n"
            "model = Ridge().fit(np.c_[scaler.transform(df[['x']]),"
            " encoder.transform(df[['region']]).toarray()], Y)"
        ),
        code("#| nb2prod: examples\nexamples = [{'x': 1.0, 'region': 'north'}, {'x': 7.5}]"),
    ]


CONFIG = 'name = "fitted"\n[service]\nauth = "none"\n'


def package(
    tmp_path: Path, notebook_cells: list[nbformat.NotebookNode], config: str = CONFIG
) -> tuple[Path, Run]:
    (tmp_path / "nb2prod.toml").write_text(config)
    path = write_notebook(tmp_path, "fitted.ipynb", notebook(*notebook_cells))
    return tmp_path / "r", nb2prod("package", path, "--out", tmp_path / "r", cwd=tmp_path)


def test_fitted_state_is_exported_hashed_listed_and_served(tmp_path: Path) -> None:
    release, run = package(tmp_path, cells())
    assert run.code == 0, run.stdout + run.stderr
    assert (
        "fitted state: cell 2 (train) defines `scaler`, read by preprocess (cell 3): exported"
        in run.stdout
    )
    manifest = json.loads((release / "model" / "model.json").read_text())
    assert [a["name"] for a in manifest["artifacts"]] == ["defaults", "encoder", "scaler"]
    files = json.loads((release / "release.json").read_text())["files"]
    for artifact in manifest["artifacts"]:
        data = (release / "model" / artifact["file"]).read_bytes()
        assert (
            hashlib.sha256(data).hexdigest()
            == artifact["sha256"]
            == files[f"model/{artifact['file']}"]
        )
        assert artifact["read_by"] == ["preprocess (cell 3)"] and artifact["role"] == "train"
    assert (
        "defines `encoder`, read by preprocess (cell 3): exported"
        in (release / "MODEL_CARD.md").read_text()
    )
    shown = nb2prod("contract", "show", release)
    assert "Fitted state exported with the model" in shown.stdout and "`scaler`" in shown.stdout

    tag = json.loads((release / "release.json").read_text())["bento_tag"]
    new = [{"x": 2.5, "region": "south"}, {"x": 9.0}, {"x": 0.5, "region": "elsewhere"}]
    with bento.serve(tag) as server:
        single = [httpx.post(f"{server.url}/v1/predict", json=i).json() for i in new]
        batch = httpx.post(f"{server.url}/v1/predict_batch", json={"inputs": new}).json()
    assert [r["output"] for r in batch["results"]] == [s["output"] for s in single]
    for inp, answer in zip(new, single, strict=True):
        y = answer["output"]["y"]
        assert len(y) == 2 and y[0] == pytest.approx(3 * inp["x"], abs=0.5)
        assert answer["degraded"] is False

    # batch scoring loads the same fitted state and answers as the service does
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(i) + "\n" for i in new))
    scored = nb2prod("score", release, rows, tmp_path / "scores.jsonl", cwd=tmp_path)
    assert scored.code == 0, scored.stdout + scored.stderr
    lines = (tmp_path / "scores.jsonl").read_text().splitlines()
    ys = [json.loads(line)["y"] for line in lines]  # a list column is carried as its JSON text
    assert [json.loads(y) if isinstance(y, str) else y for y in ys] == [
        s["output"]["y"] for s in single
    ]


def test_training_data_read_by_the_service_is_refused_with_its_shape(tmp_path: Path) -> None:
    train = TRAIN + "history = df\n"
    notebook_cells = cells(train)
    notebook_cells[3] = code(
        "#| nb2prod: preprocess\ndef preprocess(inputs):\n"
        "    frame = pd.DataFrame([{'x': i.x, 'region': i.region or history['region'].mode()[0]}"
        " for i in inputs])\n"
        "    return np.c_[scaler.transform(frame[['x']]),"
        " encoder.transform(frame[['region']]).toarray()]"
    )
    release, run = package(tmp_path, notebook_cells, CONFIG + "[artifacts]\nmax_rows = 100\n")
    assert run.code == 1
    assert "error: `history` (from cell 2 (train) `from sklearn.preprocessing" in run.stderr
    assert "read by preprocess (cell 3)) is a DataFrame of 300 rows x 2 columns (" in run.stderr
    assert "which looks like training data (over [artifacts] max_rows = 100)" in run.stderr
    assert '[artifacts] allow = ["history"]' in run.stderr
    assert not release.exists()


def test_a_prediction_that_does_not_fit_output_names_the_cell_and_field(tmp_path: Path) -> None:
    release, run = package(tmp_path, cells(output="float"))
    assert run.code == 1
    assert (
        "error: nb2prod's default predict (`model.predict(features)`) gives predictions that do "
        "not fit Output.y: each item is an array of shape (2,), which cannot fill Output.y (float)"
        in run.stderr
    )
    assert "list[float]" in run.stderr and "pipeline.py line" not in run.stderr
    assert not release.exists()
