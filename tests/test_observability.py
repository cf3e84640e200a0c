"""deploy/ observability files: alerting rules, PrometheusRule, Grafana dashboard, load test.

The files of an iris-like release are compared with tests/golden/observability (rewrite with
``pytest --update-goldens``); promtool checks the rules and runs the checked-in unit tests of
tests/prometheus/rules.test.yaml against the golden rules (synthetic series: each alert fires
when it should and stays quiet when it should not).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from nb2prod.adapters.locust import LOCUSTFILE
from nb2prod.errors import ConfigError
from nb2prod.notebook.config import Config, load_config
from nb2prod.ops.alerts import rule_groups
from nb2prod.ops.dashboard import dashboard, queries
from nb2prod.ops.loadplan import contract_inputs, loadtest_settings
from nb2prod.ops.observability import (
    GRAFANA_DASHBOARD,
    LOCUSTFILE_PATH,
    PROMETHEUS_RULES,
    observability_files,
)
from nb2prod.ops.slo import Observed, Timing, duration
from nb2prod.runtime.schema import Owners, ServiceLevels

from tests.golden import compare_tree

ROOT = Path(__file__).resolve().parent
PROMETHEUS_TESTS = ROOT / "prometheus" / "rules.test.yaml"
GOLDEN_RULES = ROOT / "golden" / "observability" / PROMETHEUS_RULES

IRIS_INPUT = {
    "additionalProperties": False,
    "properties": {
        name: {"exclusiveMinimum": 0, "maximum": 10, "type": "number"}
        for name in ("sepal_length", "sepal_width", "petal_length", "petal_width")
    },
    "required": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
    "type": "object",
}
IRIS = Observed(
    name="iris-classifier",
    version="1.0.0",
    slo=ServiceLevels(),
    classes={"species": ("setosa", "versicolor", "virginica")},
    numeric=("confidence",),
    drift_fields=("petal_length", "petal_width", "sepal_length", "sepal_width"),
    input_schema=IRIS_INPUT,
    examples=(
        {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
        {"sepal_length": 6.0, "sepal_width": 2.9, "petal_length": 4.5, "petal_width": 1.5},
    ),
    owners=Owners(
        model="Data Science <ds@example.com>", on_call="ml-oncall",
        runbook_base_url="https://git.example.com/ds/iris/-/blob/main",
    ),
    memory_limit_bytes=768 << 20,  # deploy/'s limit for 512 MiB measured, headroom 1.5
)  # fmt: skip


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return found


def test_the_files_match_the_goldens(request: pytest.FixtureRequest) -> None:
    files = observability_files(IRIS)
    assert files[LOCUSTFILE_PATH] == LOCUSTFILE.read_bytes()  # copied as it is
    assert observability_files(IRIS) == files  # the same release, the same bytes
    compare_tree(
        {k: v for k, v in files.items() if k != LOCUSTFILE_PATH},
        "observability",
        update=request.config.getoption("--update-goldens"),
    )


def test_promtool_accepts_the_rules_and_the_operator_object(tmp_path: Path) -> None:
    tool = promtool()
    files = observability_files(IRIS)
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(files[PROMETHEUS_RULES])
    checked = subprocess.run([tool, "check", "rules", str(rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 14 rules found" in checked.stdout
    operator = yaml.safe_load(files["deploy/prometheus-rule.yaml"])
    assert operator["kind"] == "PrometheusRule"
    assert operator["spec"] == yaml.safe_load(files[PROMETHEUS_RULES])


def test_promtool_unit_tests_prove_every_alert_fires_and_stays_quiet() -> None:
    tool = promtool()
    run = subprocess.run(
        [tool, "test", "rules", str(PROMETHEUS_TESTS)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    tested = yaml.safe_load(PROMETHEUS_TESTS.read_text())
    named = {
        case["alertname"]
        for test in tested["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")  # a case where the alert fires
    }
    quiet = {
        case["alertname"]
        for test in tested["tests"]
        for case in test.get("alert_rule_test", [])
        if not case.get("exp_alerts")
    }
    alerts = {r["alert"] for r in rule_groups(IRIS)["groups"][0]["rules"]}
    assert named == alerts, f"alerts never shown to fire: {alerts - named}"
    assert quiet == alerts, f"alerts never shown to stay quiet: {alerts - quiet}"


def test_the_checked_in_promtool_tests_break_when_a_threshold_moves(tmp_path: Path) -> None:
    """The unit tests are not vacuous: rules with a looser error objective fail them."""
    tool = promtool()
    loose = Observed(**{**IRIS.__dict__, "slo": ServiceLevels(error_rate=0.5)})
    (tmp_path / "rules").mkdir()
    target = tmp_path / "rules" / "prometheus-rules.yaml"
    target.write_bytes(observability_files(loose)[PROMETHEUS_RULES])
    tests = PROMETHEUS_TESTS.read_text().replace(
        str(Path("..") / "golden" / "observability" / PROMETHEUS_RULES),
        str(target),
    )
    assert str(target) in tests
    (tmp_path / "rules.test.yaml").write_text(tests)
    run = subprocess.run(
        [tool, "test", "rules", str(tmp_path / "rules.test.yaml")], capture_output=True, text=True
    )
    assert run.returncode != 0
    assert "Nb2prodErrorRateHigh" in run.stdout + run.stderr


def test_alerts_follow_the_slo_and_the_latency_buckets() -> None:
    slo = ServiceLevels(p95_ms=150, p99_ms=2500, fallback_rate=0.2, max_drift_psi=0.1)
    rules = rule_groups(Observed(**{**IRIS.__dict__, "slo": slo}))["groups"][0]["rules"]
    by_name: dict[str, list[str]] = {}
    for rule in rules:
        by_name.setdefault(rule["alert"], []).append(rule["expr"])
    latency = "\n".join(by_name["Nb2prodLatencySLOBurn"])
    # the bucket bounds exactly as prometheus_client writes them (the service adds them)
    assert 'le="0.15"' in latency and 'le="2.5"' in latency
    assert "> 0.2" in by_name["Nb2prodFallbackRateHigh"][0]
    assert 'reason!="disabled"' in by_name["Nb2prodFallbackRateHigh"][0]
    assert "> 0.1" in by_name["Nb2prodInputDrift"][0]
    # only fields with two labels or more can collapse
    one_label = Observed(**{**IRIS.__dict__, "classes": {"version": ("v1",)}})
    names = {r["alert"] for r in rule_groups(one_label)["groups"][0]["rules"]}
    assert "Nb2prodPredictionsCollapsed" not in names
    # availability 1 leaves no budget: no burn alert, the error rate alert stays
    strict = Observed(**{**IRIS.__dict__, "slo": ServiceLevels(availability=1)})
    names = {r["alert"] for r in rule_groups(strict)["groups"][0]["rules"]}
    assert "Nb2prodErrorBudgetBurn" not in names and "Nb2prodErrorRateHigh" in names


def test_compressed_timing_keeps_every_alert_and_shortens_windows() -> None:
    quick = rule_groups(IRIS, Timing.compressed())["groups"][0]["rules"]
    normal = rule_groups(IRIS)["groups"][0]["rules"]
    assert [r["alert"] for r in quick] == [r["alert"] for r in normal]
    assert all(r.get("for", "0s").endswith("s") for r in quick)
    assert duration(3600) == "1h" and duration(300) == "5m" and duration(90) == "90s"


def test_the_dashboard_draws_the_slo_and_every_output() -> None:
    board = dashboard(IRIS)
    json.dumps(board)  # plain JSON
    titles = [p["title"] for p in board["panels"]]
    for wanted in (
        "Ready replicas",
        "Model switched off",
        "Requests/s by outcome",
        "Latency of /v1/predict against the SLO",
        "Error share (5xx) by reason against the SLO",
        "Fallback share by reason against the SLO",
        "Output.species: share of each label",
        "Output.confidence: distribution",
        "Input drift (PSI) by field against the limit",
        "Batch size (inputs per model call)",
    ):
        assert wanted in titles, wanted
    latency = next(p for p in board["panels"] if p["title"].startswith("Latency"))
    lines = [s["value"] for s in latency["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert lines == [None, 0.3, 1.0]  # the p95 and p99 objectives, in seconds
    assert all('job="$job"' in q or 'job=\\"$job\\"' in q for q in queries(board))
    ids = [p["id"] for p in board["panels"]]
    assert ids == sorted(set(ids))
    assert all(p["gridPos"]["x"] + p["gridPos"]["w"] <= 24 for p in board["panels"])
    assert json.loads(observability_files(IRIS)[GRAFANA_DASHBOARD]) == board


def test_loadtest_inputs_come_from_the_contract_and_the_examples() -> None:
    settings = loadtest_settings(IRIS)
    assert settings["slo"]["p95_ms"] == 300.0
    assert settings["examples"] == [dict(e) for e in IRIS.examples]
    generated = settings["generated"]
    assert len(generated) == 50 and len({json.dumps(g) for g in generated}) == 50
    for value in generated:
        assert set(value) == set(IRIS_INPUT["properties"])
        assert all(0 < v <= 10 for v in value.values())
    assert contract_inputs(IRIS_INPUT, list(settings["examples"]), 50, 0) == generated  # seeded


def test_contract_inputs_keep_patterns_to_the_examples() -> None:
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string", "pattern": "^[^@ ]+@[^@ ]+$"},
            "country": {"$ref": "#/$defs/Country"},
            "age": {"anyOf": [{"type": "integer", "minimum": 18, "maximum": 99}, {"type": "null"}]},
            "vip": {"type": "boolean"},
        },
        "required": ["email", "country"],
        "$defs": {"Country": {"enum": ["de", "fr"], "type": "string"}},
    }
    made = contract_inputs(schema, [{"email": "a@example.org", "country": "de"}], 20, 1)
    assert made and all(m["email"] == "a@example.org" for m in made)
    assert {m["country"] for m in made} <= {"de", "fr"}
    assert all(18 <= m["age"] <= 99 for m in made if "age" in m)


def test_slo_config_has_documented_defaults_and_checks_its_values(tmp_path: Path) -> None:
    assert Config().slo == ServiceLevels(
        p95_ms=300, p99_ms=1000, error_rate=0.01, availability=0.999, fallback_rate=0.05,
        max_drift_psi=0.25, expected_rps=10,
    )  # fmt: skip
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text("{}")
    (tmp_path / "nb2prod.toml").write_text("[slo]\np95_ms = 250\nerror_rate = 0.02\n")
    slo = load_config(notebook).config.slo
    assert (slo.p95_ms, slo.error_rate, slo.p99_ms) == (250, 0.02, 1000)
    for text, message in (
        ("[slo]\np95 = 250\n", "unknown key 'slo.p95'"),
        ("[slo]\np95_ms = 900\np99_ms = 500\n", "p99_ms (500) is below p95_ms (900)"),
        ("[slo]\nerror_rate = 2\n", "'slo.error_rate'"),
    ):
        (tmp_path / "nb2prod.toml").write_text(text)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_config(notebook)


def test_the_metrics_know_every_fallback_reason_of_the_api() -> None:
    from typing import get_args

    from nb2prod.runtime import app, telemetry

    assert set(telemetry.FALLBACK_REASONS) == set(get_args(app.Reason))
    answers = {(status, outcome) for status, outcome, _ in telemetry.KNOWN_ANSWERS}
    assert ("200", "degraded") in answers and ("503", "unavailable") in answers
