"""A release that holds against hostile clients (issue #23), against real `bentoml serve`.

The session's packaged iris release, served on loopback; each test sends what an attacker or a
careless client sends and measures what the server does: metric series and scrape size, the
workers' memory and the time to an answer, the status and its body.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from nb2prod.adapters import bento

from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e
TOKEN = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ITEM = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
# what answers without a token (docs/security.md); the static file stands for /static_content/*
OPEN = {
    "/", "/docs.json", "/schema.json", "/healthz", "/livez", "/readyz", "/metrics",
    "/static_content/swagger-ui.css",
}  # fmt: skip


def tag_of(release: Path) -> str:
    return str(json.loads((release / "release.json").read_text())["bento_tag"])


@pytest.fixture(scope="module")
def server(iris_release: tuple[Path, Run]) -> Iterator[bento.Server]:
    with bento.serve(tag_of(iris_release[0]), env={"NB2PROD_API_TOKEN": TOKEN}) as running:
        yield running


@pytest.fixture
def client(server: bento.Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def samples(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


class PeakMemory:
    """The largest RSS of the server's processes while the block runs (sampled every 10 ms)."""

    def __init__(self, pid: int) -> None:
        self.processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        self.before = self.rss()
        self.peak = self.before
        self._done = threading.Event()

    def rss(self) -> int:
        return max(p.memory_info().rss for p in self.processes)

    def __enter__(self) -> PeakMemory:
        def sample() -> None:
            while not self._done.is_set():
                self.peak = max(self.peak, self.rss())
                time.sleep(0.01)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.05)
        self._done.set()
        self._thread.join()

    @property
    def grew_mib(self) -> float:
        return (self.peak - self.before) / 2**20


def test_a_huge_batch_is_refused_before_it_is_read(
    server: bento.Server, client: httpx.Client
) -> None:
    body = json.dumps({"inputs": [ITEM] * 1_000_000}).encode()  # 84 MB
    with PeakMemory(server.pid) as memory:
        start = time.monotonic()
        response = client.post(
            "/v1/predict_batch", content=body, headers={**AUTH, "content-type": "application/json"}
        )
        seconds = time.monotonic() - start
    assert response.status_code == 413, response.text[:300]
    assert "max_body_bytes" in response.json()["error"]
    assert seconds < 3.0 and memory.grew_mib < 30, (seconds, memory.grew_mib)
    print(f"84 MB batch: 413 in {seconds:.2f} s, RSS +{memory.grew_mib:.0f} MiB")


def test_a_streamed_body_over_the_limit_is_cut_off(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer
        yield b'{"inputs": ['
        for _ in range(200):
            yield (json.dumps(ITEM) + ",").encode() * 500
        yield json.dumps(ITEM).encode() + b"]}"

    response = client.post(
        "/v1/predict_batch", content=chunks(), headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "max_body_bytes" in response.json()["error"]


def test_a_batch_over_max_batch_rows_is_refused_before_its_items_are_validated(
    server: bento.Server, client: httpx.Client
) -> None:
    body = json.dumps({"inputs": [{}] * 1_000_000}).encode()  # 4 MB: under the body limit
    with PeakMemory(server.pid) as memory:
        start = time.monotonic()
        response = client.post(
            "/v1/predict_batch", content=body, headers={**AUTH, "content-type": "application/json"}
        )
        seconds = time.monotonic() - start
    assert response.status_code == 400
    assert response.json()["detail"][0]["loc"] == ["inputs"]
    assert seconds < 1.0 and memory.grew_mib < 30, (seconds, memory.grew_mib)
    print(f"1,000,000 empty items (4 MB): 400 in {seconds:.2f} s, RSS +{memory.grew_mib:.0f} MiB")
    full = client.post("/v1/predict_batch", json={"inputs": [ITEM] * 1000}, headers=AUTH)
    assert full.status_code == 200 and len(full.json()["results"]) == 1000


@pytest.mark.parametrize("value", ["0_5", "5.1", True, None, [1.0]])
def test_json_types_are_strict(client: httpx.Client, value: object) -> None:
    response = client.post("/v1/predict", json={**ITEM, "petal_length": value}, headers=AUTH)
    assert response.status_code == 400, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["petal_length"]]
    batch = client.post(
        "/v1/predict_batch", json={"inputs": [ITEM, {**ITEM, "petal_length": value}]}, headers=AUTH
    )
    assert batch.status_code == 400
    assert [e["loc"] for e in batch.json()["detail"]] == [["inputs", 1, "petal_length"]]


def test_an_integer_is_a_number(client: httpx.Client) -> None:
    response = client.post("/v1/predict", json={**ITEM, "petal_length": 5}, headers=AUTH)
    assert response.status_code == 200
