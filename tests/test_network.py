"""deploy/'s network security: the NetworkPolicy, the Ingress with TLS, its rate-limit annotations.

Every object passes `kubernetes-validate --strict` (tests/test_deploy.py's `validate`), and the
Helm chart renders them as the plain manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from nb2prod.notebook.config import Config, DeployConfig
from nb2prod.ops.deploy import deploy_files
from nb2prod.runtime.schema import RateLimit

from tests.test_deploy import documents, facts, render_chart, validate

NS_LABEL = "kubernetes.io/metadata.name"


def config(**deploy: Any) -> DeployConfig:
    return Config.model_validate({"deploy": deploy}).deploy


def doc(files: dict[str, bytes], path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(files[path])
    validate(loaded)
    return loaded


def test_by_default_only_the_own_namespace_and_prometheus_reach_the_service_port() -> None:
    policy = doc(deploy_files(facts(), DeployConfig()), "kubernetes/networkpolicy.yaml")
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "iris-classifier"}}
    assert spec["policyTypes"] == ["Ingress"]  # egress is not restricted
    callers, scrape = spec["ingress"]
    assert callers == {"from": [{"podSelector": {}}], "ports": [{"port": 3000, "protocol": "TCP"}]}
    assert scrape == {
        "from": [{"namespaceSelector": {"matchLabels": {NS_LABEL: "monitoring"}}}],
        "ports": [{"port": 3000, "protocol": "TCP"}],
    }


def test_the_configured_namespaces_and_pods_and_the_ingress_controller_are_let_in() -> None:
    chosen = config(
        namespace="ml-prod",
        network={"allow_namespaces": ["web", "batch"], "allow_pods": {"role": "client"},
                 "prometheus_namespace": "observability"},
        ingress={"host": "iris.example.com", "controller_namespace": "edge"},
    )  # fmt: skip
    policy = doc(deploy_files(facts(), chosen), "kubernetes/networkpolicy.yaml")
    assert policy["metadata"]["namespace"] == "ml-prod"
    callers, scrape = policy["spec"]["ingress"]
    assert callers["from"] == [
        {"namespaceSelector": {"matchLabels": {NS_LABEL: "web"}}},
        {"namespaceSelector": {"matchLabels": {NS_LABEL: "batch"}}},
        {"podSelector": {"matchLabels": {"role": "client"}}},  # not the whole own namespace
        {"namespaceSelector": {"matchLabels": {NS_LABEL: "edge"}}},
    ]
    assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {NS_LABEL: "observability"}}}]


def test_the_policy_can_be_left_out() -> None:
    files = deploy_files(facts(), config(network={"policy": False}))
    assert not [p for p in files if "networkpolicy" in p]


def test_no_ingress_without_a_host() -> None:
    assert not [p for p in deploy_files(facts(), DeployConfig()) if "ingress" in p]


def test_the_ingress_terminates_tls_and_matches_the_services_limits() -> None:
    limited = facts(rate_limit=RateLimit(requests_per_s=2.5, burst=10), max_body_bytes=4_161_536)
    files = deploy_files(
        limited, config(ingress={"host": "iris.example.com", "tls_secret": "iris-tls"})
    )
    ingress = doc(files, "kubernetes/ingress.yaml")
    assert ingress["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/limit-rps": "3",  # whole requests/s, rounded up
        "nginx.ingress.kubernetes.io/limit-burst-multiplier": "4",  # 10 / 3, rounded up
        "nginx.ingress.kubernetes.io/proxy-body-size": "4161536",
        "nginx.ingress.kubernetes.io/force-ssl-redirect": "true",
    }
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"hosts": ["iris.example.com"], "secretName": "iris-tls"}]
    (rule,) = spec["rules"]
    assert rule["host"] == "iris.example.com"
    (path,) = rule["http"]["paths"]
    assert path["backend"] == {"service": {"name": "iris-classifier", "port": {"name": "http"}}}
    service = doc(files, "kubernetes/service.yaml")
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]  # the port it names exists
    readme = files["README.md"].decode()
    assert "Ingress for iris.example.com (TLS)" in readme
    assert "-f kubernetes/ingress.yaml" in readme


def test_without_tls_or_limits_the_ingress_has_no_such_annotations() -> None:
    files = deploy_files(facts(), config(ingress={"host": "iris.example.com"}))
    ingress = doc(files, "kubernetes/ingress.yaml")
    assert "tls" not in ingress["spec"]
    assert "annotations" not in ingress["metadata"]


@pytest.mark.parametrize(
    ("deploy", "message"),
    [
        ({"network": {"allow_namespaces": ["Web_NS"]}}, "namespace name"),
        ({"network": {"allow_pods": {"role": "a b"}}}, "not a Kubernetes label"),
        ({"network": {"prometheus_namespace": "-x"}}, "namespace name"),
        ({"ingress": {"host": "https://iris.example.com"}}, "DNS name"),
        ({"ingress": {"host": "iris.example.com", "tls_secret": "Iris_TLS"}}, "Kubernetes name"),
        ({"ingress": {"hots": "iris.example.com"}}, "hots"),
    ],
)
def test_network_and_ingress_keys_are_checked(deploy: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config.model_validate({"deploy": deploy})


@pytest.fixture(scope="module")
def helm() -> Any:
    return pytest.importorskip("helm_python", reason="helm-python-sdk is in the dev extra")


def test_the_chart_renders_the_policy_and_the_ingress_as_the_plain_manifests(
    helm: Any, tmp_path: Path
) -> None:
    chosen = config(namespace="ml-prod", ingress={"host": "iris.example.com", "tls_secret": "t"})
    files = deploy_files(facts(rate_limit=RateLimit(requests_per_s=5, burst=5)), chosen)
    rendered = render_chart(helm, files, tmp_path, {}, "ml-prod")
    assert {d["kind"] for d in rendered} >= {"NetworkPolicy", "Ingress"}
    assert rendered == documents(files, "kubernetes/")
