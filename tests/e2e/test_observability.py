"""SLOs end to end: a real /metrics scrape, a real load test, a real Prometheus firing alerts.

- the iris release, served: its scrape passes ``promtool check metrics``, has every series with
  known labels at 0 before any traffic, and has every metric the dashboard queries;
- ``nb2prod loadtest`` on it (Locust): a summary, a report, and exit 1 when an objective breaks;
- Debian's ``prometheus`` scrapes a served release every second with the release's own rules
  (compressed windows); a slow model, the kill switch and a stopped server make the matching
  alerts fire, read from Prometheus's HTTP API, while the error alert stays quiet;
- the canary analysis of deploy/rollout/ (Argo Rollouts' AnalysisTemplate) asked of the same
  Prometheus scraping a good and a bad copy of the release: every query passes the good one, and
  a slow model, a failing model and a failing fallback each fail the matching query;
- the release's ``[service] rate_limit``: past it, 429 with Retry-After.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from nb2prod.adapters import bento
from nb2prod.adapters.loopback import free_port
from nb2prod.notebook.config import DeployConfig
from nb2prod.ops.alerts import rule_groups
from nb2prod.ops.dashboard import queries
from nb2prod.ops.deploy import deploy_files, facts_from_release
from nb2prod.ops.rollout import HASH_ARG, HASH_LABEL
from nb2prod.ops.slo import Timing, observed_from
from nb2prod.release.reader import resolve
from nb2prod.release.writer import canonical_yaml

from tests.conftest import code, notebook, write_notebook
from tests.e2e.conftest import Run, nb2prod

pytestmark = pytest.mark.e2e
TOKEN = "slo-token-not-secret"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan", "le",
}  # fmt: skip
SYNTHESISED = {"up"}  # series Prometheus makes itself, never in a scrape


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install prometheus)")
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (label matchers, ranges and groupings aside)."""
    text = re.sub(r'"[^"]*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text))
    return {n for n in names if n not in PROMQL_WORDS and not n.startswith("$")}


def scraped_names(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


@pytest.fixture(scope="module")
def iris_served(iris_release: tuple[Path, Run]) -> Iterator[tuple[Path, httpx.Client, str]]:
    release, _ = iris_release
    tag = json.loads((release / "release.json").read_text())["bento_tag"]
    with (
        bento.serve(tag, env={"NB2PROD_API_TOKEN": TOKEN}) as running,
        httpx.Client(base_url=running.url, headers=HEADERS, timeout=10) as client,
    ):
        fresh = client.get("/metrics").text  # before any request
        yield release, client, fresh


def test_known_series_start_at_zero_before_any_traffic(
    iris_served: tuple[Path, httpx.Client, str],
) -> None:
    _, _, fresh = iris_served
    for reason in ("error", "timeout", "low_confidence", "circuit_open", "disabled"):
        assert f'nb2prod_fallback_total{{reason="{reason}"}} 0.0' in fresh, reason
    for species in ("setosa", "versicolor", "virginica", "other"):
        assert f'nb2prod_predictions_total{{field="species",value="{species}"}} 0.0' in fresh
    for outcome in ("ok", "degraded", "invalid", "unauthorized", "unavailable", "error"):
        assert re.search(
            rf'nb2prod_requests_total\{{[^}}]*outcome="{outcome}"[^}}]*\}} 0\.0', fresh
        )
    assert "nb2prod_model_disabled 0.0" in fresh
    # the SLO's thresholds are bucket bounds; a probability gets probability buckets
    assert 'nb2prod_request_duration_seconds_bucket{le="0.3",route="/v1/predict"}' in fresh
    assert 'nb2prod_prediction_confidence_bucket{le="0.1"}' in fresh
    assert 'nb2prod_prediction_confidence_bucket{le="5.0"}' not in fresh  # not latency buckets


def test_the_scrape_passes_promtool_and_has_every_dashboard_metric(
    iris_served: tuple[Path, httpx.Client, str],
) -> None:
    release, client, _ = iris_served
    examples = [e["input"] for e in json.loads((release / "examples.json").read_text())["examples"]]
    for _ in range(8):  # 192 inputs: the drift window publishes a score (100 values, every 50)
        rows = [examples[k % len(examples)] for k in range(24)]
        assert client.post("/v1/predict_batch", json={"inputs": rows}).status_code == 200
    assert client.post("/v1/predict", json=examples[0]).status_code == 200
    assert client.post("/v1/predict", json={**examples[0], "petal_width": -1}).status_code == 400
    scrape = client.get("/metrics").text
    checked = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=scrape, capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.strip() == "" and checked.stderr.strip() == "", "promtool has remarks"

    board = json.loads((release / "deploy" / "grafana-dashboard.json").read_text())
    wanted = set().union(*(metric_names(q) for q in queries(board))) - SYNTHESISED
    assert "nb2prod_request_duration_seconds_bucket" in wanted  # the parser finds names
    assert "nb2prod_prediction_confidence_bucket" in wanted
    missing = wanted - scraped_names(scrape)
    assert not missing, f"the dashboard queries metrics the service does not export: {missing}"


def test_the_scrape_has_the_workers_memory_cpu_starts_and_requests_in_flight(
    iris_served: tuple[Path, httpx.Client, str],
) -> None:
    """Series of the serving worker (BentoML's multiprocess mode: one per pid), plausible."""
    release, client, fresh = iris_served
    assert client.post("/v1/predict", json=json.loads((release / "examples.json").read_text())
                       ["examples"][0]["input"]).status_code == 200  # fmt: skip
    time.sleep(1.5)  # CPU time moves on
    scrape = client.get("/metrics").text

    def series(text: str, name: str) -> dict[str, float]:
        return {
            labels: float(number)
            for labels, number in re.findall(rf"^{name}(\{{[^}}]*\}})? (\S+)$", text, re.M)
        }

    memory = series(scrape, "nb2prod_process_resident_memory_bytes")
    assert len(memory) == 1 and re.fullmatch(r'\{pid="\d+"\}', next(iter(memory)))  # 1 worker
    assert 50 << 20 < next(iter(memory.values())) < 4 << 30  # a worker with the model loaded
    started = series(scrape, "nb2prod_process_start_time_seconds")
    assert started.keys() == memory.keys()  # the same worker
    assert time.time() - 600 < next(iter(started.values())) <= time.time()
    assert series(scrape, "nb2prod_worker_starts_total") == {"": 1.0}  # no restart
    cpu_before = series(fresh, "nb2prod_process_cpu_seconds_total")[""]
    cpu = series(scrape, "nb2prod_process_cpu_seconds_total")[""]
    assert 0 < cpu_before <= cpu < 600  # loading the model took CPU; a scrape refreshes it
    assert series(scrape, "nb2prod_requests_in_flight") == {"": 0.0}  # the scrape is not one


def test_the_release_carries_its_slo_and_observability_files(
    iris_release: tuple[Path, Run],
) -> None:
    release, _ = iris_release
    listed = json.loads((release / "release.json").read_text())["files"]
    for name in ("prometheus-rules.yaml", "prometheus-rule.yaml", "grafana-dashboard.json",
                 "locustfile.py", "loadtest.json"):  # fmt: skip
        assert f"deploy/{name}" in listed, name
    monitoring = json.loads((release / "service" / "monitoring.json").read_text())
    assert monitoring["slo"]["p95_ms"] == 300.0
    card = (release / "MODEL_CARD.md").read_text()
    assert "## Service level objectives" in card and "300 ms / 1000 ms" in card
    checked = subprocess.run(
        [tool("promtool"), "check", "rules", str(release / "deploy" / "prometheus-rules.yaml")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # [owners] on_call is every alert's team; runbook links below [owners] runbook_base_url;
    # the memory alert at 90% of the limit deploy/ gives the pod (from what verify measured)
    rules = yaml.safe_load((release / "deploy" / "prometheus-rules.yaml").read_text())
    rules = rules["groups"][0]["rules"]
    assert {r["labels"]["team"] for r in rules} == {"ml-oncall"}
    base = "https://git.example.com/ds/iris-classifier/-/blob/main/release/RUNBOOK.md#"
    assert all(r["annotations"]["runbook_url"].startswith(base) for r in rules)
    (memory,) = [r for r in rules if r["alert"] == "Nb2prodMemoryNearLimit"]
    limit = json.loads((release / "release.json").read_text())["serving"]["memory_bytes"]
    threshold = int(memory["expr"].rsplit(">", 1)[1])
    assert limit < threshold < 2 * limit  # 0.9 x (measured x 1.5, rounded up to 16 MiB)


def test_loadtest_reports_against_the_slo_and_fails_a_broken_one(
    iris_release: tuple[Path, Run], tmp_path: Path
) -> None:
    release, _ = iris_release
    run = nb2prod(
        "loadtest", release, "--users", "2", "--rate", "10", "--duration", "4",
        "--out", tmp_path / "calm", timeout=180,
    )  # fmt: skip
    assert run.code == 0, run.stdout + run.stderr
    assert re.search(r"\d+\.\d s +\d+ requests", run.stdout)  # live progress lines
    assert "p95" in run.stdout and "SLO met" in run.stdout
    print(run.stdout)
    summary = json.loads((tmp_path / "calm" / "report.json").read_text())
    assert summary["ok"] is True and summary["requests"] >= 20
    assert summary["shares"]["error"] == 0
    assert {c["key"] for c in summary["checks"]} >= {"p95_ms", "p99_ms", "error_rate",
                                                      "fallback_rate", "requests_per_s"}  # fmt: skip
    assert summary["timeline"] and summary["inputs"] == {"examples": 3, "generated": 50}
    html = (tmp_path / "calm" / "report.html").read_text()
    assert "SLO met" in html and "data:image/png;base64," in html
    # the load that was run can be run again by hand against a deployed URL
    assert (tmp_path / "calm" / "locustfile.py").read_bytes() == (
        release / "deploy" / "locustfile.py"
    ).read_bytes()

    # far more requests/s than one worker on this machine answers: the throughput check breaks
    broken = nb2prod(
        "loadtest", release, "--users", "4", "--rate", "20000", "--duration", "3",
        "--out", tmp_path / "broken", timeout=180,
    )  # fmt: skip
    assert broken.code == 1, broken.stdout + broken.stderr
    assert "SLO BROKEN" in broken.stdout and "FAIL requests/s" in broken.stdout


# ---------------------------------------------------------------- a real Prometheus

SLOW_CELLS = [
    code(
        "#| nb2prod: setup\nimport os\nimport time\nfrom typing import Literal\n"
        "from pydantic import BaseModel"
    ),  # fmt: skip
    code(
        "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float\n\n"
        "class Output(BaseModel):\n    label: Literal['low', 'high']\n"
    ),
    code("#| nb2prod: preprocess\ndef preprocess(inputs):\n    return [[i.x] for i in inputs]"),
    code(
        "#| nb2prod: model\nfrom sklearn.dummy import DummyClassifier\n"
        "model = DummyClassifier(strategy='constant', constant='high').fit([[0.0], [1.0]], "
        "['low', 'high'])"
    ),
    code(
        "#| nb2prod: predict\ndef predict(model, features):\n"
        "    # a fault the test injects: while this file exists, the model is slow\n"
        "    slow = os.environ.get('SLOW_MODEL_FILE')\n"
        "    if slow and os.path.exists(slow):\n"
        "        time.sleep(float(open(slow).read()))\n"
        "    broken = os.environ.get('FAIL_MODEL_FILE')  # ... and while this one exists, it raises\n"
        "    if broken and os.path.exists(broken):\n"
        "        raise RuntimeError('the model is broken')\n"
        "    return model.predict(features)"
    ),
    code(
        "#| nb2prod: fallback\ndef fallback(inp):\n"
        "    broken = os.environ.get('FAIL_FALLBACK_FILE')\n"
        "    if broken and os.path.exists(broken):\n"
        "        raise RuntimeError('the fallback is broken')\n"
        "    return Output(label='low')"
    ),
    code("#| nb2prod: examples\nexamples = [{'x': 0.5}, {'x': 2.0}]"),
]


LIMIT_RPS = 10  # requests/s and burst, per token: the traffic below stays under 5 a second


@pytest.fixture(scope="module")
def slow_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("slow")
    (work / "nb2prod.toml").write_text(
        'name = "slowpoke"\nversion = "1.0.0"\n'
        # p99 well above what a loaded machine's worst answer takes (the canary analysis' good copy)
        "[slo]\np99_ms = 2000\n"
        # the rate limit of the 429 test, per bearer token
        f'[service]\nrate_limit = {{requests_per_s = {LIMIT_RPS}, burst = {LIMIT_RPS}, key = "token"}}\n'
    )
    path = write_notebook(work, "slowpoke.ipynb", notebook(*SLOW_CELLS))
    run = nb2prod("package", path, "--out", work / "release")
    assert run.code == 0, run.stdout + run.stderr
    return work / "release"


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Prometheus on a free loopback port; write its config to the path it yields, then
    reload with SIGHUP."""
    binary = tool("prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}}))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                tmp_path / "prometheus.log"
            ).read_text()
            time.sleep(0.2)
        yield url, config
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def firing(url: str) -> list[dict]:  # type: ignore[type-arg]
    alerts = httpx.get(f"{url}/api/v1/alerts", timeout=5).json()["data"]["alerts"]
    return [a for a in alerts if a["state"] == "firing"]


def wait_for(url: str, name: str, timeout_s: float = 45, **labels: str) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for alert in firing(url):
            found = alert["labels"]
            if found["alertname"] == name and all(found.get(k) == v for k, v in labels.items()):
                return alert
        time.sleep(0.5)
    raise AssertionError(f"{name} {labels} did not fire in {timeout_s:.0f} s; firing: "
                         f"{[a['labels'] for a in firing(url)]}")  # fmt: skip


def test_a_real_prometheus_fires_the_matching_alerts(
    slow_release: Path, prometheus: tuple[str, Path], tmp_path: Path
) -> None:
    url, config = prometheus
    # a memory limit any served worker is above (32 MiB): the memory alert on the real series
    observed = replace(observed_from(resolve(str(slow_release))), memory_limit_bytes=32 << 20)
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(canonical_yaml(rule_groups(observed, Timing.compressed()), "# compressed\n"))
    slow, switch = tmp_path / "slow", tmp_path / "disabled"
    tag = json.loads((slow_release / "release.json").read_text())["bento_tag"]
    env = {"NB2PROD_API_TOKEN": TOKEN, "SLOW_MODEL_FILE": str(slow),
           "NB2PROD_DISABLE_FILE": str(switch)}  # fmt: skip
    fired: list[str] = []
    stop = threading.Event()
    with bento.serve(tag, env=env) as server:
        port = server.url.rsplit(":", 1)[1]
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": observed.name,
                                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
        }))  # fmt: skip
        assert httpx.post(f"{url}/-/reload", timeout=10).status_code == 200

        def traffic() -> None:
            with httpx.Client(base_url=server.url, headers=HEADERS, timeout=10) as client:
                while not stop.is_set():
                    client.post("/v1/predict", json={"x": 1.0})
                    time.sleep(0.2)  # under LIMIT_RPS

        sender = threading.Thread(target=traffic, daemon=True)
        sender.start()
        try:
            # a slow model: every answer takes 0.5 s against a p95 objective of 300 ms
            slow.write_text("0.5")
            alert = wait_for(url, "Nb2prodLatencySLOBurn", objective="p95", burn="fast")
            fired.append(f"{alert['labels']['alertname']} {alert['labels']}")
            # the model answers "high" to everyone (a stuck model)
            alert = wait_for(url, "Nb2prodPredictionsCollapsed", field="label")
            fired.append(f"{alert['labels']['alertname']} {alert['labels']}")
            slow.unlink()
            # the kill switch: the gauge turns 1 at the next scrape, without any request
            switch.touch()
            alert = wait_for(url, "Nb2prodModelSwitchedOff")
            fired.append(f"{alert['labels']['alertname']} {alert['labels']}")
            # the workers' resident memory, summed per replica, against the limit
            alert = wait_for(url, "Nb2prodMemoryNearLimit", instance=f"127.0.0.1:{port}")
            fired.append(f"{alert['labels']['alertname']} {alert['labels']}")
            quiet = {a["labels"]["alertname"] for a in firing(url)}
            # fallback answers are 200s and the kill switch's fallbacks are its own alert
            assert not quiet & {"Nb2prodErrorRateHigh", "Nb2prodErrorBudgetBurn",
                                "Nb2prodFallbackRateHigh", "Nb2prodNotReady"}, quiet  # fmt: skip
            # every dashboard query is valid PromQL on this Prometheus and finds data
            board = json.loads((slow_release / "deploy" / "grafana-dashboard.json").read_text())
            for query in queries(board):
                promql = (query.replace("$job", observed.name)
                          .replace("$__rate_interval", "10s").replace("$__range", "1m"))  # fmt: skip
                answer = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5)
                assert answer.status_code == 200, (promql, answer.text)
        finally:
            stop.set()
            sender.join(timeout=15)
    # the service is gone: its scrape fails
    alert = wait_for(url, "Nb2prodNotReady")
    fired.append(f"{alert['labels']['alertname']} {alert['labels']}")
    print("alerts that fired:\n" + "\n".join(fired))


# ---------------------------------------------------------------- the canary analysis


def argo_condition(condition: str, values: list[float]) -> bool:
    """An Argo Rollouts success/failureCondition of the forms the AnalysisTemplate uses, evaluated
    as Argo does for a Prometheus vector: ``result`` is the list of its values."""
    assert re.fullmatch(r"[\w\s\[\]().<>=&|]+", condition), condition
    python = condition.replace("&&", " and ").replace("||", " or ")
    return bool(eval(python, {"__builtins__": {}}, {"len": len, "result": values}))


def measure(url: str, query: str) -> list[float]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5)
    assert answer.status_code == 200, (query, answer.text)
    return [float(sample["value"][1]) for sample in answer.json()["data"]["result"]]


def test_the_canary_analysis_passes_a_good_release_and_fails_a_bad_one(
    slow_release: Path, prometheus: tuple[str, Path], tmp_path: Path
) -> None:
    url, config = prometheus
    release = resolve(str(slow_release))
    name = release.metadata.release.name
    # the AnalysisTemplate deploy/rollout/ gets for this release, over a window this test can wait
    canary = DeployConfig.model_validate({"canary": {"analysis_window_s": 10}})
    template = yaml.safe_load(
        deploy_files(facts_from_release(release), canary)["rollout/analysis-template.yaml"]
    )
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    assert sorted(metrics) == ["error-ratio", "fallback-share", "latency-p95", "latency-p99"]

    def verdicts(pod_hash: str) -> dict[str, str]:
        """Each metric's measurement of the pods with this hash, as Argo Rollouts reads it."""
        found = {}
        for metric_name, metric in metrics.items():
            query = metric["provider"]["prometheus"]["query"]
            values = measure(url, query.replace(f"{{{{args.{HASH_ARG}}}}}", pod_hash))
            if argo_condition(metric["failureCondition"], values):
                found[metric_name] = "failed"
            elif argo_condition(metric["successCondition"], values):
                found[metric_name] = "successful"
            else:
                found[metric_name] = "inconclusive"
        return found

    tag = json.loads((slow_release / "release.json").read_text())["bento_tag"]
    slow, broken, no_fallback = tmp_path / "slow", tmp_path / "broken", tmp_path / "no-fallback"
    bad_env = {"NB2PROD_API_TOKEN": TOKEN, "SLOW_MODEL_FILE": str(slow),
               "FAIL_MODEL_FILE": str(broken), "FAIL_FALLBACK_FILE": str(no_fallback)}  # fmt: skip
    stop = threading.Event()
    with (
        bento.serve(tag, env={"NB2PROD_API_TOKEN": TOKEN}) as good,
        bento.serve(tag, env=bad_env) as bad,
    ):
        targets = [(good, "good"), (bad, "bad")]
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": name, "static_configs": [
                {"targets": [server.url.removeprefix("http://")], "labels": {HASH_LABEL: pod_hash}}
                for server, pod_hash in targets
            ]}],
        }))  # fmt: skip
        assert httpx.post(f"{url}/-/reload", timeout=10).status_code == 200

        def traffic(server: bento.Server) -> None:
            with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client:
                while not stop.is_set():
                    client.post("/v1/predict", json={"x": 1.0})
                    time.sleep(0.2)  # under LIMIT_RPS

        senders = [threading.Thread(target=traffic, args=(s,), daemon=True) for s, _ in targets]
        for sender in senders:
            sender.start()
        seen: list[str] = []
        try:
            # before any fault both copies pass every check
            wait_verdicts(verdicts, "bad", {m: "successful" for m in metrics})
            for fault, files, failing in (
                ("slow (2.5 s an answer)", [slow], {"latency-p95", "latency-p99"}),
                ("the model raises", [broken], {"fallback-share"}),
                ("the model and the fallback raise", [broken, no_fallback], {"error-ratio"}),
            ):
                for file in (slow, broken, no_fallback):
                    file.unlink(missing_ok=True)
                for file in files:
                    file.write_text("2.5")  # the slow file's seconds; the others only exist
                found = wait_verdicts(verdicts, "bad", {m: "failed" for m in failing})
                seen.append(f"{fault}: {found}")
                good_found = verdicts("good")
                assert set(good_found.values()) == {"successful"}, (fault, good_found)
        finally:
            stop.set()
            for sender in senders:
                sender.join(timeout=30)
    print("the analysis of the bad copy:\n" + "\n".join(seen))


def wait_verdicts(
    verdicts: Any, pod_hash: str, wanted: dict[str, str], timeout_s: float = 60
) -> dict[str, str]:
    deadline = time.monotonic() + timeout_s
    while True:
        found = verdicts(pod_hash)
        if all(found[m] == v for m, v in wanted.items()):
            return found  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"{pod_hash}: wanted {wanted}, measured {found}"
        time.sleep(1)


# ---------------------------------------------------------------- the rate limit


def test_past_its_rate_limit_the_service_answers_429_with_retry_after(slow_release: Path) -> None:
    tag = json.loads((slow_release / "release.json").read_text())["bento_tag"]
    with bento.serve(tag, env={"NB2PROD_API_TOKEN": TOKEN}) as server:

        def burst(headers: dict[str, str], paths: list[str]) -> list[httpx.Response]:
            with (
                httpx.Client(base_url=server.url, headers=headers, timeout=30) as client,
                ThreadPoolExecutor(8) as pool,
            ):
                return list(pool.map(client.get, paths))

        # an open route among the API calls: never limited, even while the client is past its limit
        opened = ["/livez"]
        paths = [p for _ in range(4 * LIMIT_RPS) for p in ("/v1/metadata", "/v1/metadata", *opened)]
        answers = burst(HEADERS, paths)
        codes = [a.status_code for p, a in zip(paths, answers, strict=True) if p == "/v1/metadata"]
        assert set(codes) == {200, 429}, codes
        assert codes.count(200) >= LIMIT_RPS  # the burst passes
        assert {a.status_code for p, a in zip(paths, answers, strict=True) if p in opened} == {200}
        limited = next(a for a in answers if a.status_code == 429)
        assert limited.headers["retry-after"] == "1"
        assert "[service] rate_limit" in limited.json()["error"]
        # another client (another token: refused, but by auth, not by the limit)
        other = burst({"Authorization": "Bearer another-client-token-0123"}, ["/v1/metadata"] * 4)
        assert [a.status_code for a in other] == [401] * 4
        with httpx.Client(base_url=server.url, headers=HEADERS, timeout=30) as client:
            assert client.get("/readyz").status_code == 200
            assert re.search(r'nb2prod_requests_total\{[^}]*status="429"[^}]*\} [1-9]',
                             client.get("/metrics").text)  # fmt: skip
            time.sleep(int(limited.headers["retry-after"]))
            assert client.get("/v1/metadata").status_code == 200  # after Retry-After: answered
