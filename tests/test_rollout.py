"""deploy/rollout/: the Argo Rollouts canary and its analysis of the [slo].

The Rollout and the AnalysisTemplate pass Argo Rollouts' own CRD schemas (../shared/schemas/
argo-rollouts/, strict: a field the schema does not name fails, as the API server would drop it),
and the analysis asks exactly what the alerting rules ask, of the canary's pods only. That each
query passes a good release and fails a bad one on a real Prometheus is
tests/e2e/test_observability.py's."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from nb2prod.notebook.config import Config, DeployConfig
from nb2prod.ops.alerts import rule_groups
from nb2prod.ops.deploy import deploy_files
from nb2prod.ops.rollout import HASH_LABEL, checks
from nb2prod.ops.slo import Observed
from nb2prod.runtime.schema import ServiceLevels

from tests.test_deploy import facts, validate

SCHEMAS = Path(__file__).resolve().parents[1].parent / "shared" / "schemas" / "argo-rollouts"
SLO = ServiceLevels(p95_ms=250, p99_ms=800, error_rate=0.02, fallback_rate=0.1)


def crd_schema(file: str) -> Any:
    """A validator of the CRD's schema (made once: checking the schema itself takes seconds)."""
    path = SCHEMAS / file
    if not path.is_file():
        pytest.skip(f"{path} is not there (the schemas beside the project, see its README)")
    crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists the fields of an object."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    found = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in found
        and "additionalProperties" not in found
        and not found.get("x-kubernetes-preserve-unknown-fields")
    ):
        found["additionalProperties"] = False
    return found


@pytest.fixture(scope="module")
def rollout_schema() -> Any:
    return crd_schema("rollout-crd.yaml")


@pytest.fixture(scope="module")
def analysis_schema() -> Any:
    return crd_schema("analysis-template-crd.yaml")


def rollout_docs(config: DeployConfig, **changes: Any) -> dict[str, dict[str, Any]]:
    files = deploy_files(facts(slo=SLO, **changes), config)
    return {
        path: yaml.safe_load(data) for path, data in files.items() if path.startswith("rollout/")
    }


CONFIGS = {
    "defaults": DeployConfig(),
    "tuned": DeployConfig.model_validate(
        {
            "namespace": "ml-prod",
            "replicas": 4,
            "max_replicas": 4,
            "canary": {
                "weights": [10, 25, 75],
                "pause_s": 0,
                "analysis_count": 5,
                "analysis_interval_s": 30,
                "analysis_window_s": 120,
                "prometheus": "http://prometheus.observability.svc:9090",
            },
        }
    ),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_rollout_and_analysis_template_pass_argo_rollouts_crd_schemas(
    name: str, rollout_schema: Any, analysis_schema: Any
) -> None:
    docs = rollout_docs(CONFIGS[name])
    rollout_schema.validate(docs["rollout/rollout.yaml"])
    analysis_schema.validate(docs["rollout/analysis-template.yaml"])
    if "rollout/hpa.yaml" in docs:  # the autoscaler aimed at the Rollout: a plain Kubernetes one
        validate(docs["rollout/hpa.yaml"])
        assert docs["rollout/hpa.yaml"]["spec"]["scaleTargetRef"]["kind"] == "Rollout"
    assert ("rollout/hpa.yaml" in docs) == (name == "defaults")


def test_a_broken_rollout_or_template_fails_the_schemas(
    rollout_schema: Any, analysis_schema: Any
) -> None:
    docs = rollout_docs(DeployConfig())
    rollout, template = docs["rollout/rollout.yaml"], docs["rollout/analysis-template.yaml"]
    misspelt = copy.deepcopy(rollout)
    misspelt["spec"]["strategy"]["canary"]["steps"][0] = {"setWieght": 20}
    wrong_type = copy.deepcopy(rollout)
    wrong_type["spec"]["strategy"]["canary"]["steps"][0] = {"setWeight": "twenty"}
    pod_typo = copy.deepcopy(rollout)
    pod_typo["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    for broken in (misspelt, wrong_type, pod_typo):
        with pytest.raises(jsonschema.ValidationError):
            rollout_schema.validate(broken)
    no_provider = copy.deepcopy(template)
    no_provider["spec"]["metrics"][0]["provider"] = {"prometheus": {"adress": "http://x"}}
    with pytest.raises(jsonschema.ValidationError):
        analysis_schema.validate(no_provider)


def test_the_rollout_runs_the_deployments_pods_with_canary_steps_and_analysis() -> None:
    files = deploy_files(facts(slo=SLO), CONFIGS["tuned"])
    deployment = yaml.safe_load(files["kubernetes/deployment.yaml"])
    rollout = yaml.safe_load(files["rollout/rollout.yaml"])
    assert (rollout["apiVersion"], rollout["kind"]) == ("argoproj.io/v1alpha1", "Rollout")
    assert rollout["metadata"] == deployment["metadata"]
    assert rollout["spec"]["template"] == deployment["spec"]["template"]
    assert rollout["spec"]["selector"] == deployment["spec"]["selector"]
    assert rollout["spec"]["replicas"] == 4
    steps = rollout["spec"]["strategy"]["canary"]["steps"]
    weights = [s["setWeight"] for s in steps if "setWeight" in s]
    assert weights == [10, 25, 75]
    assert not [s for s in steps if "pause" in s]  # pause_s = 0
    analyses = [s["analysis"] for s in steps if "analysis" in s]
    assert len(analyses) == 3
    for analysis in analyses:
        assert analysis["templates"] == [{"templateName": "iris-classifier-slo"}]
        assert analysis["args"] == [
            {"name": "canary-hash", "valueFrom": {"podTemplateHashValue": "Latest"}}
        ]
    default = yaml.safe_load(deploy_files(facts(), DeployConfig())["rollout/rollout.yaml"])
    default_steps = default["spec"]["strategy"]["canary"]["steps"]
    assert [next(iter(s)) for s in default_steps] == ["setWeight", "pause", "analysis"] * 2
    assert default_steps[1] == {"pause": {"duration": "5m"}}


def test_the_analysis_asks_what_the_alerts_ask_of_the_canary_pods_only() -> None:
    template = rollout_docs(DeployConfig())["rollout/analysis-template.yaml"]
    metrics = {m["name"]: m for m in template["spec"]["metrics"]}
    assert sorted(metrics) == ["error-ratio", "fallback-share", "latency-p95", "latency-p99"]
    # the alerting rules of the same [slo], over the same window, for the whole job
    observed = Observed("iris-classifier", "1.0.0", SLO, {}, (), ())
    exprs = [rule["expr"] for rule in rule_groups(observed)["groups"][0]["rules"]]
    canary = f',{HASH_LABEL}="{{{{args.canary-hash}}}}"'
    for name, limit in (("error-ratio", "0.02"), ("latency-p95", "0.05"),
                        ("latency-p99", "0.01"), ("fallback-share", "0.1")):  # fmt: skip
        metric = metrics[name]
        query = metric["provider"]["prometheus"]["query"]
        assert query.count(canary) == 2, query  # numerator and denominator: the canary's pods
        whole_job = query.replace(canary, "")
        assert any(whole_job in expr for expr in exprs), f"{name}: not an alert's expression"
        assert metric["successCondition"] == f"len(result) > 0 && result[0] <= {limit}"
        assert metric["failureCondition"] == f"len(result) > 0 && result[0] > {limit}"
        assert metric["failureLimit"] == 0 and metric["count"] == 3 and metric["interval"] == "1m"
        assert metric["provider"]["prometheus"]["address"] == (
            "http://prometheus-operated.monitoring.svc:9090"
        )
    assert 'le="0.25"' in metrics["latency-p95"]["provider"]["prometheus"]["query"]
    assert 'le="0.8"' in metrics["latency-p99"]["provider"]["prometheus"]["query"]
    assert template["spec"]["args"] == [{"name": "canary-hash"}]


def test_the_analysis_window_follows_the_config() -> None:
    (error, *_) = checks("svc", SLO, 120, pod_hash="abc")
    assert "[2m]" in error.query and 'rollouts_pod_template_hash="abc"' in error.query
    template = rollout_docs(CONFIGS["tuned"])["rollout/analysis-template.yaml"]
    for metric in template["spec"]["metrics"]:
        assert "[2m]" in metric["provider"]["prometheus"]["query"]
        assert (metric["count"], metric["interval"]) == (5, "30s")


@pytest.mark.parametrize(
    ("canary", "message"),
    [
        ({"weights": []}, "percentages from 1 to 99"),
        ({"weights": [50, 20]}, "ascending"),
        ({"weights": [20, 100]}, "from 1 to 99"),
        ({"prometheus": "prometheus:9090"}, "http"),
        ({"analysis_count": 0}, "greater than or equal to 1"),
    ],
)
def test_canary_config_is_checked(canary: Mapping[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config.model_validate({"deploy": {"canary": canary}})
