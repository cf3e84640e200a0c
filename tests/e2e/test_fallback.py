"""Fallback and resilience against a real `bentoml serve` of a fault-injecting notebook.

The notebook's predict raises for |x| == 13 and sleeps a second for x == 99; its postprocess
reports a low confidence for x == 7; its fallback raises for negative x (to reach the 503 path).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from nb2prod.adapters import bento

from tests.conftest import code, notebook, write_notebook
from tests.e2e.conftest import nb2prod

pytestmark = pytest.mark.e2e
TOKEN = "fault-token-not-secret"
TIMEOUT_MS = 300
HEADERS = {"Authorization": f"Bearer {TOKEN}"}

CELLS = [
    code("#| nb2prod: setup\nimport time\nfrom pydantic import BaseModel"),
    code(
        "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float\n\n"
        "class Output(BaseModel):\n    label: str\n    confidence: float\n"
    ),
    code(
        "#| nb2prod: model\nfrom sklearn.dummy import DummyClassifier\n"
        "model = DummyClassifier(strategy='constant', constant='model').fit([[0.0]], ['model'])"
    ),
    code("#| nb2prod: preprocess\ndef preprocess(inputs):\n    return [[i.x] for i in inputs]"),
    code(
        "#| nb2prod: predict\ndef predict(model, features):\n"
        "    if any(abs(row[0]) == 13 for row in features):\n"
        "        raise ValueError('unlucky input')\n"
        "    if any(row[0] == 99 for row in features):\n"
        "        time.sleep(1.0)\n"
        "    return model.predict(features)"
    ),
    code(
        "#| nb2prod: postprocess\ndef postprocess(raw, inputs):\n"
        "    return [Output(label=str(r), confidence=0.1 if i.x == 7 else 0.9)"
        " for r, i in zip(raw, inputs)]"
    ),
    code(
        "#| nb2prod: fallback\ndef fallback(inp):\n"
        "    if inp.x < 0:\n        raise RuntimeError('no rule for negative x')\n"
        "    return Output(label='rule', confidence=0.0)"
    ),
    code('#| nb2prod: examples\nexamples = [{"x": 1.0}, {"x": 7.0}]'),
]
CONFIG = f"""
name = "faulty"
version = "1.0.0"
[fallback]
timeout_ms = {TIMEOUT_MS}
min_confidence = 0.5
circuit_breaker = {{ failures = 3, reset_s = 2 }}
"""


@pytest.fixture(scope="module")
def faulty_tag(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("faulty")
    (work / "nb2prod.toml").write_text(CONFIG)
    path = write_notebook(work, "faulty.ipynb", notebook(*CELLS))
    run = nb2prod("package", path, "--out", work / "release")
    assert run.code == 0, run.stdout + run.stderr
    return str(json.loads((work / "release" / "release.json").read_text())["bento_tag"])


@pytest.fixture
def server(faulty_tag: str, tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    """A fresh server per test (the circuit breaker keeps state), with its own kill-switch file,
    and one client for all requests (a client per request would time TLS set-up, not the server)."""
    switch = tmp_path / "disabled"
    env = {"NB2PROD_API_TOKEN": TOKEN, "NB2PROD_DISABLE_FILE": str(switch)}
    with (
        bento.serve(faulty_tag, env=env) as running,
        httpx.Client(base_url=running.url, headers=HEADERS, timeout=10) as client,
    ):
        yield client, switch


def predict(client: httpx.Client, x: float) -> httpx.Response:
    return client.post("/v1/predict", json={"x": x})


def test_every_reason_and_its_metric(server: tuple[httpx.Client, Path]) -> None:
    client, switch = server
    assert predict(client, 1).json()["degraded"] is False
    answers = {
        "error": predict(client, 13).json(),
        "timeout": predict(client, 99).json(),
        "low_confidence": predict(client, 7).json(),
    }
    switch.touch()
    answers["disabled"] = predict(client, 1).json()
    for reason, body in answers.items():
        assert body == {
            "output": {"label": "rule", "confidence": 0.0},
            "model_version": "1.0.0",
            "degraded": True,
            "reason": reason,
        }, reason
    switch.unlink()
    assert predict(client, 1).json()["degraded"] is False  # on again, no restart
    metrics = client.get("/metrics").text
    for reason in answers:
        assert f'nb2prod_fallback_total{{reason="{reason}"}} 1.0' in metrics, reason


def test_timeouts_are_answered_within_the_budget_and_do_not_hold_up_others(
    server: tuple[httpx.Client, Path],
) -> None:
    client, _ = server

    def timed(x: float) -> tuple[float, dict]:  # type: ignore[type-arg]
        start = time.perf_counter()
        body = predict(client, x).json()
        return time.perf_counter() - start, body

    # Two slow inputs, one fewer than the circuit breaker's threshold: a third timeout would open
    # the circuit, and on a busy machine a fast request still queued would rightly get
    # "circuit_open" (which is not what this test is about).
    with ThreadPoolExecutor(max_workers=8) as pool:
        slow = [pool.submit(timed, 99) for _ in range(2)]
        fast = [pool.submit(timed, 1) for _ in range(10)]
        slow_results = [f.result() for f in slow]
        fast_results = [f.result() for f in fast]
    for seconds, body in slow_results:
        assert body["reason"] == "timeout"
        assert seconds < (TIMEOUT_MS + 100) / 1000, f"timeout answered after {seconds:.3f} s"
    reasons = [body.get("reason") for _, body in fast_results if body["degraded"]]
    assert reasons == [], f"fast requests were degraded: {reasons}"


def test_the_circuit_opens_and_recovers(server: tuple[httpx.Client, Path]) -> None:
    client, _ = server
    assert [predict(client, 13).json()["reason"] for _ in range(3)] == ["error"] * 3
    assert predict(client, 1).json()["reason"] == "circuit_open"  # a good input is not even tried
    time.sleep(2.2)
    assert predict(client, 1).json()["degraded"] is False  # the trial request closes it
    assert predict(client, 1).json()["degraded"] is False


def test_one_bad_item_does_not_degrade_the_batch(server: tuple[httpx.Client, Path]) -> None:
    client, _ = server
    response = client.post("/v1/predict_batch", json={"inputs": [{"x": 1}, {"x": 13}, {"x": 2}]})
    assert [(r["degraded"], r["reason"]) for r in response.json()["results"]] == [
        (False, None),
        (True, "error"),
        (False, None),
    ]


def test_a_failing_fallback_is_a_503_with_a_reason_not_a_trace(
    server: tuple[httpx.Client, Path],
) -> None:
    client, _ = server
    response = predict(client, -13)
    assert response.status_code == 503
    assert response.json() == {
        "error": "the model could not answer and the fallback failed",
        "reason": "error",
    }
    assert "Traceback" not in response.text


def test_no_5xx_across_mixed_concurrent_requests(server: tuple[httpx.Client, Path]) -> None:
    client, _ = server
    xs = [1.0, 13.0, 7.0, 2.0, 99.0, 3.0] * 50  # 300 requests: good, raising, low, slow
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda x: predict(client, x), xs))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: len(xs)}, statuses
    reasons = Counter(r.json()["reason"] for r in responses)
    assert reasons[None] > 0 and reasons["error"] + reasons["circuit_open"] > 0
    assert set(reasons) <= {None, "error", "timeout", "low_confidence", "circuit_open"}


def test_packaging_without_a_fallback_warns_and_the_service_answers_503(tmp_path: Path) -> None:
    cells = [c for c in CELLS if "nb2prod: fallback" not in c.source]
    (tmp_path / "nb2prod.toml").write_text('name = "nofallback"\n[service]\nauth = "none"\n')
    # without a fallback the low-confidence example could not be answered; keep the clean one
    cells[-1].source = '#| nb2prod: examples\nexamples = [{"x": 1.0}]'
    path = write_notebook(tmp_path, "nofallback.ipynb", notebook(*cells))
    run = nb2prod("package", path, "--out", tmp_path / "release")
    assert run.code == 0, run.stdout + run.stderr
    assert "warning: no `fallback` cell" in run.stdout
    tag = json.loads((tmp_path / "release" / "release.json").read_text())["bento_tag"]
    with bento.serve(tag, env={"NB2PROD_MODEL_DISABLED": "1"}) as running:
        response = httpx.post(f"{running.url}/v1/predict", json={"x": 1.0}, timeout=10)
        log = running.log.read_text(errors="replace")
    assert 'AUTH IS OFF: auth = \\"none\\" in the config' in log  # loud, as a JSON line
    assert response.status_code == 503
    assert response.json() == {
        "error": "the model could not answer and the notebook defines no fallback",
        "reason": "disabled",
    }
