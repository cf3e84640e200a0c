"""A release that holds against hostile clients (issue #23), against real `bentoml serve`.

The session's packaged iris release, served on loopback; each test sends what an attacker or a
careless client sends and measures what the server does: metric series and scrape size, the
workers' memory and the time to an answer, the status and its body.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from nb2prod.adapters import bento
from nb2prod.errors import ServeError

from tests.e2e.conftest import Run, nb2prod

pytestmark = pytest.mark.e2e
TOKEN = secrets.token_urlsafe(24)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ITEM = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
# what answers without a token (docs/security.md); the static file stands for /static_content/*
OPEN = {
    "/", "/docs.json", "/schema.json", "/healthz", "/livez", "/readyz", "/metrics",
    "/static_content/swagger-ui.css", "/v2/health/live", "/v2/health/ready",
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


def test_random_paths_do_not_grow_the_metrics(server: bento.Server, client: httpx.Client) -> None:
    def scrape() -> str:
        return client.get("/metrics").text

    for path in ("/warm-up", "/v1/warm-up", "/static_content/warm-up"):  # each label exists once
        client.get(path, headers=AUTH)
    assert client.post("/v1/predict", json=ITEM, headers=AUTH).status_code == 200
    before = scrape()
    with PeakMemory(server.pid) as memory:
        for i in range(3000):
            prefix = ("", "/v1", "/static_content", "/v1/predict")[i % 4]
            status = client.get(f"{prefix}/{secrets.token_hex(8)}?q={i}", headers=AUTH).status_code
            assert status in (404, 405), status
    after = scrape()
    print(
        f"3000 random paths: {len(samples(before))} -> {len(samples(after))} samples, "
        f"/metrics {len(before)} -> {len(after)} bytes, RSS +{memory.grew_mib:.0f} MiB"
    )
    assert len(samples(after)) == len(samples(before))  # not one new series
    assert len(after) < len(before) + 2048  # only the counters' digits
    assert memory.grew_mib < 30
    endpoints = set(re.findall(r'bentoml_service_request_total\{endpoint="([^"]*)"', after))
    assert endpoints <= {*OPEN - {"/static_content/swagger-ui.css"}, "/static_content/{path}",
                         "/v1/predict", "/v1/predict_batch", "/v1/metadata", "/{unmatched}"}  # fmt: skip
    assert {"/v1/predict", "/{unmatched}"} <= endpoints
    # the routes themselves still see the path they were sent
    assert client.get("/static_content/swagger-ui.css").status_code == 200
    assert client.post("/v1/predict", json=ITEM, headers=AUTH).json()["degraded"] is False


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


def test_the_bearer_scheme_is_case_insensitive(client: httpx.Client) -> None:
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        headers = {"Authorization": f"{scheme}  {TOKEN}"}
        assert client.get("/v1/metadata", headers=headers).status_code == 200, scheme
    for wrong in (f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN[:-1]}", "Bearer"):
        assert client.get("/v1/metadata", headers={"Authorization": wrong}).status_code == 401


ROUTES = """
import json, sys
import bentoml
from starlette.routing import Mount

def walk(routes, prefix=""):
    for route in routes:
        if isinstance(route, Mount) and not getattr(route, "routes", None):
            yield prefix + route.path + "/{path}", ["GET"]
        elif isinstance(route, Mount):
            yield from walk(route.routes, prefix + route.path)
        else:
            yield prefix + route.path, sorted(route.methods or ["GET"])

app = bentoml.load(sys.argv[1]).to_asgi(is_main=True)
print(json.dumps(sorted(walk(app.routes))))
"""


def test_exactly_the_documented_routes_answer_without_a_token(
    iris_release: tuple[Path, Run], client: httpx.Client
) -> None:
    """Every route of the served app (listed from BentoML's own app), plus paths that are no
    route, asked without a token: those that answer are the documented open set, no more."""
    listed = subprocess.run(
        [sys.executable, "-c", ROUTES, tag_of(iris_release[0])],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    routes = json.loads(listed.stdout.splitlines()[-1])
    v2_health = {"/v2/health/live", "/v2/health/ready"}  # inside the /v2 mount, listed below
    assert {path for path, _ in routes} == {
        *OPEN - {"/static_content/swagger-ui.css"} - v2_health, "/static_content/{path}",
        "/v1/predict", "/v1/predict_batch", "/v1/{path}", "/v2/{path}",
    }  # fmt: skip
    # the /v1 mount (runtime/v1.py) is one ASGI app, asked at each of its routes
    v1_routes = [("/v1/metadata", ["GET"])]
    name = json.loads((iris_release[0] / "release.json").read_text())["name"]
    v2_routes = [*((p, ["GET"]) for p in sorted(v2_health)), (f"/v2/models/{name}", ["GET"]),
                 (f"/v2/models/{name}/ready", ["GET"]), (f"/v2/models/{name}/infer", ["POST"])]  # fmt: skip
    asked: dict[str, int] = {}
    mounts = ("/v1/{path}", "/v2/{path}")
    for path, methods in [*(r for r in routes if r[0] not in mounts), *v1_routes, *v2_routes]:
        path = path.replace("/static_content/{path}", "/static_content/swagger-ui.css")
        for method in methods:
            if method != "HEAD":
                body = {"json": ITEM} if method == "POST" else {}
                asked[path] = client.request(method, path, **body).status_code  # type: ignore[arg-type]
    for path in ("/nope", "/v1", "/v1/", "/v1/nope", "//v1/predict", "/V1/predict", "/docs.json/"):
        asked[path] = client.get(path).status_code
    answered = {path for path, status in asked.items() if status != 401}
    assert answered == OPEN, asked


def test_a_short_token_is_refused_at_start(
    iris_release: tuple[Path, Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    short = {"NB2PROD_API_TOKEN": "fifteen-chars-x"}
    with pytest.raises(ServeError) as err, bento.serve(tag_of(iris_release[0]), env=short):
        pass
    assert "shorter than 16" in err.value.message
    monkeypatch.setenv("NB2PROD_API_TOKEN", "fifteen-chars-x")
    run = nb2prod("serve", iris_release[0])  # said before BentoML starts
    assert run.code == 1 and "has 15 characters; refusing to start" in run.stderr


@pytest.mark.parametrize("kind", ["name too long", "no such directory"])
def test_a_kill_switch_file_that_cannot_be_checked(
    iris_release: tuple[Path, Run], tmp_path: Path, kind: str
) -> None:
    """A path stat() cannot check stops the start with one clear line (not a crash loop); a
    missing directory only means the switch is not set."""
    path = "/tmp/" + "x" * 300 if kind == "name too long" else str(tmp_path / "gone" / "off")
    env = {"NB2PROD_API_TOKEN": TOKEN, "NB2PROD_DISABLE_FILE": path}
    start = time.monotonic()
    if kind == "no such directory":
        with bento.serve(tag_of(iris_release[0]), env=env) as running:
            answer = httpx.post(f"{running.url}/v1/predict", json=ITEM, headers=AUTH).json()
        assert answer["degraded"] is False
        return
    with (
        pytest.raises(ServeError) as err,
        bento.serve(tag_of(iris_release[0]), env=env, ready_timeout_s=90),
    ):
        pass
    assert "exited" in err.value.message, err.value.message[-2000:]
    assert "kill-switch file" in err.value.message and "File name too long" in err.value.message
    seconds = time.monotonic() - start
    print(f"kill-switch path too long: serve exited in {seconds:.1f} s")
    assert seconds < 60


def test_every_series_the_dashboard_queries_exists_on_a_fresh_service(
    iris_release: tuple[Path, Run],
) -> None:
    release = iris_release[0]
    dashboard = (release / "deploy" / "grafana-dashboard.json").read_text()
    queried = set(re.findall(r"\b(nb2prod_[a-z0-9_]+)", dashboard))
    assert len(queried) >= 10, queried
    with bento.serve(tag_of(release), env={"NB2PROD_API_TOKEN": TOKEN}) as fresh:
        scraped = httpx.get(f"{fresh.url}/metrics").text
    exported = {line.split("{")[0].split(" ")[0] for line in samples(scraped)}
    assert queried - exported == set()
