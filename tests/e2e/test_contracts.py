"""Contracts end to end: the release gate across versions, `contract diff` and `show` on real
releases, the generated contract tests, enforcement over HTTP, and inference."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from nb2prod.adapters import bento

from tests.conftest import code, notebook, write_notebook
from tests.e2e.conftest import Run, nb2prod

pytestmark = pytest.mark.e2e


def release_notebook(directory: Path, version: str, tag_field: str, extra: str = "") -> Path:
    """A small service whose Input has a `tag` field declared as ``tag_field``."""
    (directory / "nb2prod.toml").write_text(
        f'name = "scorer"\nversion = "{version}"\n[service]\nauth = "none"\n'
    )
    cells = [
        code(
            "#| nb2prod: setup\nfrom typing import Optional\nfrom pydantic import BaseModel, Field"
        ),
        code(
            "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float = Field(ge=0)\n"
            f"    tag: {tag_field}\n{extra}\n\nclass Output(BaseModel):\n    y: float\n"
        ),
        code("#| nb2prod: preprocess\ndef preprocess(inputs):\n    return [[i.x] for i in inputs]"),
        code(
            "#| nb2prod: model\nfrom sklearn.linear_model import LinearRegression\n"
            "model = LinearRegression().fit([[0.0], [1.0]], [0.0, 2.0])"
        ),
        code('#| nb2prod: examples\nexamples = [{"x": 1.0, "tag": "a"}]'),
    ]
    return write_notebook(directory, "scorer.ipynb", notebook(*cells))


def test_breaking_changes_need_a_major_version(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    v1 = nb2prod(
        "package", release_notebook(tmp_path, "1.0.0", "Optional[str] = None"), cwd=tmp_path
    )
    assert v1.code == 0, v1.stdout + v1.stderr

    refused = nb2prod("package", release_notebook(tmp_path, "1.1.0", "str"), cwd=tmp_path)
    assert refused.code == 1
    assert "the contract breaks callers of 1.0.0" in refused.stderr
    assert "Input.tag: optional field made required" in refused.stderr
    assert "2.0.0" in refused.stderr  # the hint names the version to use
    assert not (dist / "scorer-1.1.0").exists()

    v2 = nb2prod("package", release_notebook(tmp_path, "2.0.0", "str"), cwd=tmp_path)
    assert v2.code == 0, v2.stdout + v2.stderr
    saved = json.loads((dist / "scorer-2.0.0" / "contract.diff.json").read_text())
    assert saved["verdict"] == "breaking" and saved["against"]["version"] == "1.0.0"

    diff = nb2prod(
        "contract", "diff", dist / "scorer-1.0.0", dist / "scorer-2.0.0" / "contract.json"
    )
    assert diff.code == 1
    assert "breaking   Input.tag: optional field made required" in diff.stdout

    minor = release_notebook(tmp_path, "2.1.0", "str", extra="    note: Optional[int] = None")
    v21 = nb2prod("package", minor, cwd=tmp_path)
    assert v21.code == 0, v21.stdout + v21.stderr
    assert "compatible against 2.0.0" in v21.stdout
    compatible = nb2prod(
        "contract", "diff", dist / "scorer-2.0.0", dist / "scorer-2.1.0", "--format", "json"
    )
    assert compatible.code == 0
    assert json.loads(compatible.stdout) == {
        "verdict": "compatible",
        "changes": [
            {
                "side": "input",
                "field": "note",
                "change": "optional field added",
                "severity": "compatible",
            }
        ],
    }

    # removing 2.1.0's optional field breaks callers; --allow-breaking releases it as a minor
    refused_again = nb2prod("package", release_notebook(tmp_path, "2.2.0", "str"), cwd=tmp_path)
    assert refused_again.code == 1 and "Input.note: field removed" in refused_again.stderr
    forced = nb2prod(
        "package", release_notebook(tmp_path, "2.2.0", "str"), "--allow-breaking", cwd=tmp_path
    )
    assert forced.code == 0, forced.stdout + forced.stderr
    assert json.loads((dist / "scorer-2.2.0" / "release.json").read_text())["allow_breaking"]
    forced_diff = json.loads((dist / "scorer-2.2.0" / "contract.diff.json").read_text())
    assert forced_diff["verdict"] == "breaking" and forced_diff["allow_breaking"] is True


def test_contract_show_as_table_and_markdown(iris_release: tuple[Path, Run]) -> None:
    release, _ = iris_release
    text = nb2prod("contract", "show", release)
    assert text.code == 0 and "sepal_length" in text.stdout and "Petal width in cm" in text.stdout
    # declared order (the notebook's feature order), not contract.json's sorted keys
    shown = text.stdout
    assert shown.index("sepal_length") < shown.index("sepal_width") < shown.index("petal_length")
    assert shown.index("species") < shown.index("confidence")
    markdown = nb2prod("contract", "show", release / "contract.json", "--format", "markdown")
    assert (
        "| `sepal_length` | number | yes | > 0; <= 10 | Sepal length in cm | `5.1` |"
        in markdown.stdout
    )
    assert (
        '| `species` | string | yes | one of "setosa", "versicolor", "virginica" |'
        in markdown.stdout
    )
    tag = json.loads((release / "release.json").read_text())["bento_tag"]
    assert nb2prod("contract", "show", tag).stdout == text.stdout  # a bento tag works too


def test_the_generated_contract_tests_pass_in_the_release(
    iris_release: tuple[Path, Run], tmp_path: Path
) -> None:
    copy = tmp_path / "release"
    shutil.copytree(iris_release[0], copy)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "service/tests", "-q", "-p", "no:cacheprovider"],
        cwd=copy, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    passed = int(proc.stdout.strip().splitlines()[-1].split()[0])
    # 3 examples x 2, 4 fields x (2 bounds x 2 sides + wrong type), 4 missing fields
    assert passed == 3 * 2 + 4 * (4 + 1) + 4


def test_every_failing_field_is_named_in_a_4xx(iris_release: tuple[Path, Run]) -> None:
    release, _ = iris_release
    tag = json.loads((release / "release.json").read_text())["bento_tag"]
    good = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    with bento.serve(tag, env={"NB2PROD_API_TOKEN": "contracts-token-not-secret"}) as server:
        client = httpx.Client(
            base_url=server.url, headers={"Authorization": "Bearer contracts-token-not-secret"}
        )
        batch = client.post(
            "/v1/predict_batch",
            json={"inputs": [good, {**good, "sepal_width": "wide", "petal_width": 11}]},
        )
        not_json = client.post(
            "/v1/predict", content=b"{oops", headers={"content-type": "application/json"}
        )
        empty = client.post("/v1/predict", json={})
    assert batch.status_code == 400
    assert {tuple(e["loc"]) for e in batch.json()["detail"]} == {
        ("inputs", 1, "sepal_width"),
        ("inputs", 1, "petal_width"),
    }
    assert 400 <= not_json.status_code < 500
    assert empty.status_code == 400 and len(empty.json()["detail"]) == 4
    # the contract's names, not BentoML's InputIODescriptor
    assert empty.json()["error"] == "4 validation error for Input"  # BentoML's wording
    assert batch.json()["error"] == "2 validation error for BatchRequest"
    assert "wide" not in batch.text  # the rejected values are not echoed back


def test_a_notebook_without_a_contract_cell_gets_an_inferred_one(tmp_path: Path) -> None:
    (tmp_path / "nb2prod.toml").write_text(
        'name = "penguins"\n[contract]\ntraining_data = "train_df"\n[service]\nauth = "none"\n'
    )
    cells = [
        code("#| nb2prod: setup\nimport numpy as np"),
        code(
            "#| nb2prod: train\nimport pandas as pd\nrng = np.random.default_rng(0)\n"
            "train_df = pd.DataFrame({'length': rng.uniform(30, 60, 200).round(1),"
            " 'island': rng.choice(['Biscoe', 'Dream'], 200), 'age': rng.integers(1, 20, 200)})\n"
            "train_df.loc[3, 'age'] = None\ny = (train_df['length'] > 45).astype(int)"
        ),
        code(
            "#| nb2prod: preprocess\ndef preprocess(inputs):\n    return np.array([[i.length] for i in inputs])"
        ),
        code(
            "#| nb2prod: model\nfrom sklearn.linear_model import LogisticRegression\n"
            "model = LogisticRegression().fit(train_df[['length']].to_numpy(), y)"
        ),
        code(
            "#| nb2prod: examples\nexamples = [{'length': 40.0, 'island': 'Dream', 'age': 3},"
            " {'length': 55.5, 'island': 'Biscoe', 'age': None}]"
        ),
    ]
    run = nb2prod(
        "package",
        write_notebook(tmp_path, "penguins.ipynb", notebook(*cells)),
        "--out",
        tmp_path / "r",
    )
    assert run.code == 0, run.stdout + run.stderr
    assert "Input and Output were inferred" in run.stdout
    contract = json.loads((tmp_path / "r" / "contract.json").read_text())
    assert contract["inferred"] is True
    assert contract["inferred_from"] == {
        "examples": 2,
        "training_data": "train_df",
        "rows": 200,
        "margin": 0.1,
    }
    props = contract["input"]["properties"]
    assert props["island"]["enum"] == ["Biscoe", "Dream"]
    assert props["length"]["minimum"] < 30.5 and props["length"]["maximum"] > 59.5
    assert (
        props["age"]["anyOf"][1] == {"type": "null"} and "age" not in contract["input"]["required"]
    )
    assert contract["input"]["additionalProperties"] is False
    assert contract["output"]["properties"]["prediction"]["type"] == "integer"
    source = (tmp_path / "r" / "contract.inferred.py").read_text()
    namespace: dict[str, object] = {}
    exec(compile(source, "contract.inferred.py", "exec"), namespace)  # adoptable as a cell
    assert {"Input", "Output"} <= set(namespace)
    assert source in (tmp_path / "r" / "service" / "pipeline.py").read_text()
