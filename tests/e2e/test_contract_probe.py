"""The contract probe with a real kernel: inputs the contract admits that the pipeline cannot
answer stop the release (gate `robustness`), named with the one shrunk to the fields that make it
fail and the cell that raised;
a lowered gate releases it and the report says what failed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import code, notebook, write_notebook
from tests.e2e.conftest import nb2prod

pytestmark = pytest.mark.e2e

# an optional category the preprocessing cannot handle when it is null: the contract admits it
CELLS = [
    code(
        "#| nb2prod: setup\nfrom typing import Literal, Optional\nimport numpy as np\n"
        "from pydantic import BaseModel, Field"
    ),
    code(
        "#| nb2prod: contract\nclass Input(BaseModel):\n    tenure_months: int = Field(ge=0, le=120)\n"
        "    plan: Optional[Literal['basic', 'pro']] = None\n\n"
        "class Output(BaseModel):\n    churn: float\n"
    ),
    code(
        "#| nb2prod: preprocess\nPLANS = {'basic': 0.0, 'pro': 1.0}\n\n"
        "def preprocess(inputs):\n"
        "    return np.array([[i.tenure_months, PLANS[i.plan]] for i in inputs])"
    ),
    code(
        "#| nb2prod: model\nfrom sklearn.linear_model import LinearRegression\n"
        "model = LinearRegression().fit([[1, 0.0], [24, 1.0], [60, 0.0]], [0.9, 0.2, 0.1])"
    ),
    code("#| nb2prod: examples\nexamples = [{'tenure_months': 3, 'plan': 'basic'}]"),
]


def test_inputs_the_pipeline_cannot_answer_stop_the_release_unless_the_gate_is_lowered(
    tmp_path: Path,
) -> None:
    (tmp_path / "nb2prod.toml").write_text('name = "churn"\n[service]\nauth = "none"\n')
    path = write_notebook(tmp_path, "churn.ipynb", notebook(*CELLS))
    refused = nb2prod("package", path, "--out", tmp_path / "r", cwd=tmp_path)
    assert refused.code == 1
    row = next(li for li in refused.stderr.splitlines() if li.startswith("robustness "))
    assert row.split()[-3:] == [">=", "1", "FAIL"]
    # shrunk to the field the failure needs, the others as in the example: `plan` left out
    assert (
        "shrunk to the fields that make it fail: Input.plan left out (the other fields as in "
        "examples[0]) makes KeyError: None (in cell 2 (preprocess) "
        "`PLANS = {'basic': 0.0, 'pro': 1.0}`, line 5:" in refused.stderr
    )
    assert "handle a missing `plan` in preprocess, or make `plan` required" in refused.stderr
    assert "lower [gates] robustness" in refused.stderr and not (tmp_path / "r").exists()

    (tmp_path / "nb2prod.toml").write_text(
        'name = "churn"\n[service]\nauth = "none"\n[gates]\nrobustness = ">= 0.25"\n'
    )
    released = nb2prod("package", path, "--out", tmp_path / "r", cwd=tmp_path)
    assert released.code == 0, released.stdout + released.stderr
    probe = json.loads((tmp_path / "r" / "evaluation" / "report.json").read_text())["robustness"]
    assert 0.25 <= probe["share"] < 1 and probe["exceptions"] == {
        "KeyError": probe["tested"] - probe["answered"]
    }
    assert probe["smallest_failure"]["cell"].startswith("cell 2 (preprocess)")
    assert probe["batch_agrees"] is True  # a batch with a failing item is retried one by one
    markdown = (tmp_path / "r" / "evaluation" / "report.md").read_text()
    assert "## Contract probe" in markdown
    assert 'Smallest input that got no answer: `{"tenure_months": 3}`: KeyError: None' in markdown
    assert "Cause: Input.plan left out (the other fields as in examples[0])" in markdown
    assert "| robustness | " in markdown and " | >= 0.25 | pass |" in markdown
    html = (tmp_path / "r" / "evaluation" / "report.html").read_text()
    assert "<h2>Contract probe</h2>" in html and "Smallest input that got no answer" in html
