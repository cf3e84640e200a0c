"""Schemathesis against the served iris bento: generated bodies for every /v1 and /v2 route.

Its checks: no 5xx, every response matches the schema /docs.json declares for its status, and no
status the document does not declare. Hundreds of cases (coverage phase plus fuzzing).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from nb2prod.adapters import bento

from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e
TOKEN = "fuzz-token-not-secret"


def test_schemathesis_finds_no_server_error_or_schema_violation(
    iris_release: tuple[Path, Run], tmp_path: Path
) -> None:
    release, _ = iris_release
    tag = json.loads((release / "release.json").read_text())["bento_tag"]
    schemathesis = Path(sys.executable).parent / "st"
    with bento.serve(tag, env={"NB2PROD_API_TOKEN": TOKEN}) as running:
        proc = subprocess.run(
            [
                str(schemathesis), "run", f"{running.url}/docs.json",
                "--header", f"Authorization: Bearer {TOKEN}",
                "--include-path-regex", "^/v[12]/",
                "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance",
                "--phases", "coverage,fuzzing",
                "--max-examples", "150",
                "--seed", "20261123",
                "--no-color",
            ],  # fmt: skip
            capture_output=True, text=True, cwd=tmp_path, timeout=600, check=False,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    generated = [line for line in proc.stdout.splitlines() if "generated" in line]
    assert generated, proc.stdout[-3000:]
    cases = int(generated[-1].split()[0])
    assert cases >= 300, generated[-1]  # "a few hundred generated cases"


def test_the_release_documents_openapi_3_1_with_the_notebooks_examples(
    iris_release: tuple[Path, Run],
) -> None:
    from openapi_spec_validator import validate

    release, _ = iris_release
    document = json.loads((release / "openapi.json").read_text())
    assert document["openapi"] == "3.1.0"
    validate(document)
    examples = json.loads((release / "examples.json").read_text())["examples"]
    version = json.loads((release / "release.json").read_text())["version"]
    post = document["paths"]["/v1/predict"]["post"]
    sent = post["requestBody"]["content"]["application/json"]["examples"]
    answered = post["responses"]["200"]["content"]["application/json"]["examples"]
    assert [v["value"] for v in sent.values()] == [e["input"] for e in examples]
    assert [v["value"] for v in answered.values()] == [
        {"output": e["output"], "model_version": version, "degraded": False, "reason": None}
        for e in examples
    ]
    batch = document["paths"]["/v1/predict_batch"]["post"]["requestBody"]["content"]
    assert batch["application/json"]["examples"]["batch"]["value"]["inputs"] == [
        e["input"] for e in examples[:3]
    ]
