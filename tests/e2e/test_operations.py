"""What ops teams get from a served release: auth, request ids, metrics, JSON logs, redaction, drift.

One notebook with a sensitive field (an e-mail address) and a DataFrame of training data that
becomes the drift reference, packaged once and served by real `bentoml serve` on loopback.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from nb2prod.adapters import bento

from tests.conftest import code, notebook, write_notebook
from tests.e2e.conftest import Run, nb2prod

pytestmark = pytest.mark.e2e
TOKEN = "ops-token-not-secret"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
SECRET_VALID = "alice.secret@corp.example"
SECRET_INVALID = "NOT-AN-EMAIL-s3cr3t-9931"

CELLS = [
    code(
        "#| nb2prod: setup\nfrom typing import Literal\nimport numpy as np\nimport pandas as pd\n"
        "from pydantic import BaseModel, Field"
    ),
    code(
        "#| nb2prod: contract\n"
        "class Input(BaseModel):\n"
        "    amount: float = Field(ge=0, le=10000)\n"
        "    country: Literal['de', 'fr', 'it']\n"
        "    email: str = Field(pattern=r'^[^@ ]+@[^@ ]+$', json_schema_extra={'sensitive': True})\n\n"
        "class Output(BaseModel):\n"
        "    approved: bool\n"
        "    confidence: float = Field(ge=0, le=1)\n"
    ),
    code(
        "rng = np.random.default_rng(0)\n"
        "train = pd.DataFrame({\n"
        "    'amount': rng.gamma(2.0, 25.0, 600).round(2),\n"
        "    'country': rng.choice(['de', 'fr', 'it'], 600, p=[0.5, 0.3, 0.2]),\n"
        "    'email': [f'user{i}@example.org' for i in range(600)],\n"
        "})\n"
        "target = (train.amount < 60).astype(int)",
        "nb2prod:train",
    ),
    code(
        "#| nb2prod: preprocess\ndef preprocess(inputs):\n"
        "    return np.array([[i.amount, i.country == 'de'] for i in inputs], dtype=float)"
    ),
    code(
        "#| nb2prod: model\nfrom sklearn.linear_model import LogisticRegression\n"
        "model = LogisticRegression().fit(preprocess([Input(amount=a, country=c, email='x@y') "
        "for a, c in zip(train.amount, train.country)]), target)"
    ),
    code(
        "#| nb2prod: predict\ndef predict(model, features):\n    return model.predict_proba(features)"
    ),
    code(
        "#| nb2prod: postprocess\ndef postprocess(raw, inputs):\n"
        "    return [Output(approved=bool(p[1] >= 0.5), confidence=round(float(max(p)), 6)) for p in raw]"
    ),
    code(
        "#| nb2prod: examples\nexamples = [\n"
        "    {'amount': 20.0, 'country': 'de', 'email': 'a@example.org'},\n"
        "    {'amount': 150.0, 'country': 'it', 'email': 'b@example.org'},\n]"
    ),
]
CONFIG = """
name = "loans"
version = "1.0.0"
[service]
log_bodies = true
[monitoring]
reference = "train"
window = 200
"""


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("ops")
    (work / "nb2prod.toml").write_text(CONFIG)
    path = write_notebook(work, "loans.ipynb", notebook(*CELLS))
    run = nb2prod("package", path, "--out", work / "release")
    assert run.code == 0, run.stdout + run.stderr
    assert "drift reference train (600 rows, 2 fields)" in run.stdout
    return work / "release"


@pytest.fixture
def server(release: Path) -> Iterator[tuple[httpx.Client, bento.Server]]:
    tag = json.loads((release / "release.json").read_text())["bento_tag"]
    with (
        bento.serve(tag, env={"NB2PROD_API_TOKEN": TOKEN}) as running,
        httpx.Client(base_url=running.url, headers=HEADERS, timeout=10) as client,
    ):
        yield client, running


def sample(metric: str, text: str, **labels: str) -> float:
    """The sum of the Prometheus samples with these labels (series start at 0), 0 when absent."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(metric + "{") and not line.startswith(metric + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def log_lines(server: bento.Server) -> list[dict]:  # type: ignore[type-arg]
    return [
        json.loads(line)
        for line in server.log.read_text(errors="replace").splitlines()
        if line.startswith("{")
    ]


def logged(server: bento.Server, *request_ids: str) -> dict[str, dict]:  # type: ignore[type-arg]
    """The access lines of these requests: written just after the response, so poll briefly."""
    deadline = time.monotonic() + 5
    while True:
        lines = {
            line.get("request_id"): line
            for line in log_lines(server)
            if line.get("logger") == "nb2prod.access"
        }
        if all(r in lines for r in request_ids) or time.monotonic() > deadline:
            return lines


def body(amount: float, country: str = "de", email: str = "c@example.org") -> dict:  # type: ignore[type-arg]
    return {"amount": amount, "country": country, "email": email}


def test_the_sensitive_field_is_marked_in_the_contract(release: Path) -> None:
    contract = json.loads((release / "contract.json").read_text())
    assert contract["input"]["properties"]["email"]["sensitive"] is True
    monitoring = json.loads((release / "service" / "monitoring.json").read_text())
    assert monitoring["sensitive"] == ["email"]
    assert set(monitoring["drift"]["fields"]) == {"amount", "country"}
    assert "free text" in monitoring["drift"]["skipped"]["email"]


def test_auth_and_request_ids(server: tuple[httpx.Client, bento.Server]) -> None:
    client, running = server
    anonymous = httpx.post(f"{running.url}/v1/predict", json=body(10))
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert re.fullmatch(r"[0-9a-f]{32}", anonymous.headers["x-request-id"])
    wrong = httpx.post(
        f"{running.url}/v1/metadata", headers={"Authorization": "Bearer nope"}, json={}
    )
    assert wrong.status_code == 401
    assert httpx.get(f"{running.url}/readyz").status_code == 200  # health stays open
    answered = client.post("/v1/predict", json=body(10), headers={"X-Request-ID": "trace-42"})
    assert answered.status_code == 200
    assert answered.headers["x-request-id"] == "trace-42"
    assert answered.json()["output"]["approved"] is True
    lines = logged(running, "trace-42", anonymous.headers["x-request-id"])
    assert lines["trace-42"]["status"] == 200
    assert lines["trace-42"]["route"] == "/v1/predict"
    assert lines["trace-42"]["model_version"] == "1.0.0"
    assert lines["trace-42"]["outcome"] == "ok"
    assert lines[anonymous.headers["x-request-id"]]["outcome"] == "unauthorized"


def test_metrics_are_there_and_move_with_traffic(
    server: tuple[httpx.Client, bento.Server], release: Path
) -> None:
    client, _ = server
    before = client.get("/metrics").text
    for amount in (10, 20, 500):
        assert client.post("/v1/predict", json=body(amount)).status_code == 200
    assert (
        client.post("/v1/predict_batch", json={"inputs": [body(5), body(900)]}).status_code == 200
    )
    assert client.post("/v1/predict", json=body(-1)).status_code == 400
    after = client.get("/metrics").text

    def moved(name: str, **labels: str) -> float:
        return sample(name, after, **labels) - sample(name, before, **labels)

    assert moved("nb2prod_requests_total", route="/v1/predict", status="200", outcome="ok") == 3
    assert moved("nb2prod_requests_total", route="/v1/predict_batch", status="200") == 1
    assert (
        moved("nb2prod_requests_total", route="/v1/predict", status="400", outcome="invalid") == 1
    )
    assert moved("nb2prod_validation_failures_total", route="/v1/predict", field="amount") == 1
    for stage in ("preprocess", "predict", "postprocess"):
        assert moved("nb2prod_stage_duration_seconds_count", stage=stage) >= 2, stage
    assert moved("nb2prod_request_duration_seconds_count", route="/v1/predict") == 4
    assert moved("nb2prod_predictions_total", field="approved", value="true") == 3
    assert moved("nb2prod_predictions_total", field="approved", value="false") == 2
    assert moved("nb2prod_prediction_confidence_count") == 5
    contract_sha = json.loads((release / "contract.json").read_text())["sha256"]
    assert sample("nb2prod_release_info", after, name="loans", contract_sha256=contract_sha) == 1


def test_a_sensitive_value_never_reaches_the_logs(
    server: tuple[httpx.Client, bento.Server],
) -> None:
    client, running = server
    accepted = client.post("/v1/predict", json=body(10, email=SECRET_VALID))
    assert accepted.status_code == 200
    rejected = client.post("/v1/predict", json=body(10, email=SECRET_INVALID))
    assert rejected.status_code == 400
    assert "email" in rejected.text and SECRET_INVALID not in rejected.text
    batch = client.post("/v1/predict_batch", json={"inputs": [body(1, email=SECRET_INVALID)]})
    assert batch.status_code == 400
    lines = logged(running, accepted.headers["x-request-id"], rejected.headers["x-request-id"])
    log = running.log.read_text(errors="replace")
    assert SECRET_VALID not in log
    assert SECRET_INVALID not in log
    entry = lines[accepted.headers["x-request-id"]]
    assert entry["request_body"] == {"amount": 10, "country": "de", "email": "[REDACTED]"}
    assert entry["response_body"]["output"]["approved"] is True  # bodies are on in this config
    refused = lines[rejected.headers["x-request-id"]]
    assert refused["outcome"] == "invalid" and refused["invalid_fields"] == ["email"]
    assert refused["request_body"]["email"] == "[REDACTED]"


def test_redaction_ignores_the_case_and_spaces_of_keys(
    server: tuple[httpx.Client, bento.Server],
) -> None:
    """A body that misspells the sensitive key is refused, and still logged (log_bodies = true):
    its value is redacted all the same."""
    client, running = server
    secret = "carol.s3cret-key-case@corp.example"
    sent = {"amount": 10, "country": "de", " EMAIL ": secret, "inputs": [{"Email": secret}]}
    refused = client.post("/v1/predict", json=sent, headers={"X-Request-ID": "key-case"})
    assert refused.status_code == 400
    line = logged(running, "key-case")["key-case"]
    assert line["request_body"][" EMAIL "] == "[REDACTED]"
    assert line["request_body"]["inputs"] == [{"Email": "[REDACTED]"}]
    assert secret not in running.log.read_text(errors="replace")


def test_the_drift_gauge_rises_with_skewed_inputs(
    server: tuple[httpx.Client, bento.Server],
) -> None:
    client, _ = server
    rng = np.random.default_rng(7)  # the training distribution, fresh draws
    amounts = rng.gamma(2.0, 25.0, 200).round(2)
    countries = rng.choice(["de", "fr", "it"], 200, p=[0.5, 0.3, 0.2])
    rows = [body(float(a), str(c)) for a, c in zip(amounts, countries, strict=True)]
    for start in range(0, 200, 20):
        assert (
            client.post("/v1/predict_batch", json={"inputs": rows[start : start + 20]}).status_code
            == 200
        )
    calm = client.get("/metrics").text
    for _ in range(25):
        skewed = [body(5000.0 + 10 * k, "it") for k in range(8)]
        assert client.post("/v1/predict_batch", json={"inputs": skewed}).status_code == 200
    drifted = client.get("/metrics").text
    assert sample("nb2prod_input_drift_observations", drifted, field="amount") == 200
    assert sample("nb2prod_input_drift_psi", calm, field="amount") < 0.25
    assert sample("nb2prod_input_drift_psi", calm, field="country") < 0.1
    assert sample("nb2prod_input_drift_psi", drifted, field="amount") > 1.0
    assert sample("nb2prod_input_drift_psi", drifted, field="country") > 0.25


def test_iris_drift_reference_comes_from_its_evaluation_array(
    iris_release: tuple[Path, Run],
) -> None:
    release, run = iris_release
    monitoring = json.loads((release / "service" / "monitoring.json").read_text())
    assert monitoring["drift"]["source"] == "eval_X" and monitoring["drift"]["rows"] == 45
    assert set(monitoring["drift"]["fields"]) == {
        "sepal_length", "sepal_width", "petal_length", "petal_width",
    }  # fmt: skip
    assert monitoring["batching"]["enabled"] is True
    assert "drift reference eval_X (45 rows, 4 fields)" in run.stdout


BATCH_SIZE_NOISE = [
    code("#| nb2prod: setup\nfrom pydantic import BaseModel"),
    code(
        "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float\n\n"
        "class Output(BaseModel):\n    y: float\n"
    ),
    code("#| nb2prod: preprocess\ndef preprocess(inputs):\n    return [i.x for i in inputs]"),
    code("#| nb2prod: model\nmodel = None"),
    # like BLAS kernels that block differently by batch size: the last bits depend on the batch
    code(
        "#| nb2prod: predict\ndef predict(model, features):\n"
        "    return [f + 1e-12 * len(features) for f in features]"
    ),
    code(
        "#| nb2prod: postprocess\ndef postprocess(raw, inputs):\n"
        "    return [Output(y=r) for r in raw]"
    ),
    code('#| nb2prod: examples\nexamples = [{"x": 1.0}, {"x": 3.0}]'),
]


def test_batching_stays_off_when_a_batch_answers_differently(tmp_path: Path) -> None:
    # verify passes (1e-9 relative tolerance), but batching could change answers: it stays off
    (tmp_path / "nb2prod.toml").write_text('name = "noisy"\n[service]\nauth = "none"\n')
    path = write_notebook(tmp_path, "noisy.ipynb", notebook(*BATCH_SIZE_NOISE))
    run = nb2prod("package", path, "--out", tmp_path / "release")
    assert run.code == 0, run.stdout + run.stderr
    monitoring = json.loads((tmp_path / "release" / "service" / "monitoring.json").read_text())
    batching = monitoring["batching"]
    assert batching["enabled"] is False
    # the first input of the first batch, its field, both answers and the difference are named
    assert batching["why"].startswith(
        'off: a single/batch difference: input {"x": 1.0} gets Output.y = 1.000000000001 alone'
    )
    # preprocess gives the same features both ways: the fix is the tolerance, not preprocess
    assert (
        "(difference 1.5e-11); [service] batching_tolerance = 0. Fix: preprocess gives the same "
        "features alone and in a batch: the model's arithmetic differs by 1.5e-11"
    ) in batching["why"]
    assert batching["why"].endswith("allow it with [service] batching_tolerance (e.g. 1e-9)")
    assert batching["why"] in run.stdout
    assert batching["items_alone"] is True
    report = json.loads((tmp_path / "release" / "evaluation" / "report.json").read_text())
    assert report["robustness"]["first_difference"]["field"] == "y"
    # the batch route answers each item on its own: exactly what /v1/predict answers
    tag = json.loads((tmp_path / "release" / "release.json").read_text())["bento_tag"]
    inputs = [{"x": 1.0}, {"x": 2.0}, {"x": 3.0}]
    with bento.serve(tag) as server:
        alone = [httpx.post(f"{server.url}/v1/predict", json=i).json()["output"] for i in inputs]
        batch = httpx.post(f"{server.url}/v1/predict_batch", json={"inputs": inputs}).json()
    assert [r["output"] for r in batch["results"]] == alone
    tolerant = tmp_path / "tolerant"
    tolerant.mkdir()
    (tolerant / "nb2prod.toml").write_text(
        'name = "noisy"\n[service]\nauth = "none"\nbatching_tolerance = 1e-9\n'
    )
    path = write_notebook(tolerant, "noisy.ipynb", notebook(*BATCH_SIZE_NOISE))
    run = nb2prod("package", path, "--out", tolerant / "release")
    assert run.code == 0, run.stdout + run.stderr
    monitoring = json.loads((tolerant / "release" / "service" / "monitoring.json").read_text())
    assert monitoring["batching"]["enabled"] is True
    assert "within [service] batching_tolerance = 1e-09" in monitoring["batching"]["why"]
    assert "no drift scores" in run.stdout  # no eval_X in this notebook: drift is skipped


def test_a_named_reference_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "nb2prod.toml").write_text('[monitoring]\nreference = "nope"\n')
    path = write_notebook(tmp_path, "noisy.ipynb", notebook(*BATCH_SIZE_NOISE))
    run = nb2prod("package", path, "--out", tmp_path / "release")
    assert run.code == 1
    assert "[monitoring] reference = 'nope', but the notebook left no such variable" in run.stderr
    assert not (tmp_path / "release").exists()
