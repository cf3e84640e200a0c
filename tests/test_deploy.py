"""deploy/: every manifest passes the real Kubernetes schemas, the Helm chart renders (with Helm's
own engine) to exactly the plain manifests, sizing follows the measured facts, and
`nb2prod deploy-files` writes all files or none."""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from nb2prod.cli import main
from nb2prod.errors import ConfigError
from nb2prod.notebook.config import Config, DeployConfig
from nb2prod.ops.deploy import MIB, DeployFacts, deploy_files, sizing
from nb2prod.ops.observability import observability_files
from nb2prod.ops.slo import observed_from
from nb2prod.release.manifest import Serving
from nb2prod.release.reader import resolve
from nb2prod.release.writer import canonical_json, sha256_bytes
from nb2prod.runtime.schema import OutputMetric, dump

from tests.conftest import tree_snapshot
from tests.factories import examples, monitoring_plan, release_manifest, service_metadata

K8S_VERSION = "1.29.0"  # a version most managed clusters still run; the schemas ship offline
DIGEST = "registry.example/ml/iris-classifier@sha256:" + "ab" * 32
KSERVE_EXTENSION = {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget"}


def facts(**changes: Any) -> DeployFacts:
    base = DeployFacts(
        name="iris-classifier",
        version="1.0.0",
        bento_tag="iris-classifier:abcdefghijklmnop",
        auth="token",
        contract_sha256="c" * 64,
        model_sha256="d" * 64,
        image=DIGEST,
        cold_start_s=8.6,
        memory_bytes=301 * MIB,
    )
    return DeployFacts(**{**vars(base), **changes})


def documents(files: Mapping[str, bytes], *prefixes: str) -> list[dict[str, Any]]:
    found = [
        doc
        for path, data in sorted(files.items())
        if path.endswith(".yaml") and path.startswith(prefixes) and "/templates/" not in path
        for doc in yaml.safe_load_all(data)
        if doc
    ]
    return sorted(found, key=lambda d: (d["kind"], d["metadata"]["name"]))


def validate(doc: Mapping[str, Any]) -> None:
    """The real Kubernetes OpenAPI schemas, strict (unknown fields fail)."""
    kubernetes_validate.validate(dict(doc), K8S_VERSION, strict=True)


def kserve_pod(doc: Mapping[str, Any]) -> dict[str, Any]:
    """KServe's PredictorSpec is a PodSpec plus its own scaling fields: validate the PodSpec
    part against the Kubernetes schema (the KServe CRD itself is not shipped offline)."""
    predictor = dict(doc["spec"]["predictor"])
    assert set(predictor) & KSERVE_EXTENSION == KSERVE_EXTENSION
    spec = {k: v for k, v in predictor.items() if k not in KSERVE_EXTENSION}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}, "spec": spec}


INGRESS = DeployConfig.model_validate(
    {"ingress": {"host": "iris.example.com", "tls_secret": "iris-tls"},
     "network": {"allow_namespaces": ["web"], "allow_pods": {"role": "client"}}}
)  # fmt: skip


@pytest.mark.parametrize(
    "config",
    [DeployConfig(), DeployConfig(namespace="ml-prod", replicas=3, max_replicas=3), INGRESS],
    ids=["defaults", "namespace-no-autoscaling", "ingress"],
)
@pytest.mark.parametrize("auth", ["token", "none"])
def test_every_manifest_passes_the_kubernetes_schemas(config: DeployConfig, auth: str) -> None:
    files = deploy_files(facts(auth=auth), config)
    plain = documents(files, "kubernetes/", "canary/", "rollout/hpa.yaml")
    kinds = sorted(d["kind"] for d in plain)
    expected = ["Deployment", "Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service"]
    if config.autoscaling_max > config.autoscaling_min:
        expected[2:2] = ["HorizontalPodAutoscaler"] * 2  # kubernetes/ and rollout/
    if config.ingress.host:
        expected.insert(-3, "Ingress")
    assert kinds == expected
    for doc in plain:
        validate(doc)
    (isvc,) = documents(files, "kserve/inferenceservice")
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    validate(kserve_pod(isvc))
    v2_isvc, runtime = documents(files, "kserve/v2/")
    validate(v2_pod(v2_isvc, runtime))
    if config.namespace:
        every = [*plain, isvc, v2_isvc, runtime]
        assert {d["metadata"]["namespace"] for d in every} == {config.namespace}


def v2_pod(isvc: Mapping[str, Any], runtime: Mapping[str, Any]) -> dict[str, Any]:
    """The pod KServe makes of the V2 pair: the runtime's containers in the predictor's PodSpec."""
    predictor = dict(isvc["spec"]["predictor"])
    predictor.pop("model")
    spec = {k: v for k, v in predictor.items() if k not in KSERVE_EXTENSION}
    assert "containers" not in spec  # the runtime's, as KServe merges them
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"},
            "spec": {**spec, "containers": runtime["spec"]["containers"]}}  # fmt: skip


def test_the_v2_inference_service_selects_the_open_inference_protocol() -> None:
    files = deploy_files(facts(), DeployConfig())
    isvc, runtime = documents(files, "kserve/v2/")
    assert (runtime["apiVersion"], runtime["kind"]) == (
        "serving.kserve.io/v1alpha1",
        "ServingRuntime",
    )
    model = isvc["spec"]["predictor"]["model"]
    assert model["protocolVersion"] == "v2" == runtime["spec"]["protocolVersions"][0]
    assert model["runtime"] == runtime["metadata"]["name"]
    (supported,) = runtime["spec"]["supportedModelFormats"]
    assert model["modelFormat"] == {"name": supported["name"], "version": supported["version"]}
    (container,) = runtime["spec"]["containers"]
    assert (
        container["image"] == DIGEST and container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    )
    # the same hardened pod as every other manifest
    custom = documents(files, "kserve/inferenceservice")[0]["spec"]["predictor"]
    assert isvc["spec"]["predictor"]["securityContext"] == custom["securityContext"]
    assert isvc["spec"]["predictor"]["volumes"] == custom["volumes"]


def test_a_broken_manifest_fails_the_validation() -> None:
    """The check above can fail: a misspelt field, a wrong type and a missing selector."""
    files = deploy_files(facts(), DeployConfig())
    (deployment,) = [d for d in documents(files, "kubernetes/") if d["kind"] == "Deployment"]
    misspelt = copy.deepcopy(deployment)
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "two"
    no_selector = copy.deepcopy(deployment)
    del no_selector["spec"]["selector"]
    for broken in (misspelt, wrong_type, no_selector):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(broken)
    isvc_pod = kserve_pod(documents(files, "kserve/")[0])
    isvc_pod["spec"]["containers"][0]["resources"] = {"limits": {"memory": ["768Mi"]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(isvc_pod)


def test_the_pod_is_hardened_probed_and_reads_its_token_from_a_secret() -> None:
    files = deploy_files(facts(), DeployConfig(token_secret="iris-api-token"))
    (stable,) = [
        d
        for d in documents(files, "kubernetes/")
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "iris-classifier"
    ]
    pod = stable["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == DIGEST
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    assert pod["spec"]["automountServiceAccountToken"] is False
    env = {e["name"]: e["value"] for e in container["env"]}
    token_file = env["NB2PROD_API_TOKEN_FILE"]
    (mount,) = [m for m in container["volumeMounts"] if token_file.startswith(m["mountPath"])]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "iris-api-token"
    assert "NB2PROD_API_TOKEN" not in env  # never the token itself
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/tmp", "/home/nb2prod"}  # everything else is read-only


def test_without_auth_there_is_no_token_secret() -> None:
    files = deploy_files(facts(auth="none"), DeployConfig())
    text = b"".join(files.values()).decode()
    assert "NB2PROD_API_TOKEN_FILE" not in text and "secretName" not in text
    assert "create secret" not in files["README.md"].decode()


def test_service_selects_stable_and_canary_and_the_canary_is_weighted_by_replicas() -> None:
    files = deploy_files(facts(), DeployConfig(replicas=4, canary={"replicas": 1}))  # type: ignore[arg-type]
    (svc,) = [d for d in documents(files, "kubernetes/") if d["kind"] == "Service"]
    (canary,) = documents(files, "canary/")
    stable = yaml.safe_load(files["kubernetes/deployment.yaml"].split(b"\n", 2)[2])
    selector = svc["spec"]["selector"]
    for deployment in (stable, canary):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert canary["metadata"]["name"] == "iris-classifier-canary"
    assert (stable["spec"]["replicas"], canary["spec"]["replicas"]) == (4, 1)
    # the two Deployments never select each other's pods
    assert stable["spec"]["selector"] != canary["spec"]["selector"]


@pytest.mark.parametrize(
    ("cold_start_s", "memory", "threshold", "requested", "limit"),
    [
        (8.6, 301 * MIB, 12, "304Mi", "464Mi"),  # budget: the 60 s floor
        (40.0, 1000 * MIB, 32, "1008Mi", "1520Mi"),  # budget 4 x 40 s
        (None, None, 24, "512Mi", "768Mi"),  # defaults: 30 s assumed -> 120 s; 512 MiB
    ],
)
def test_sizing_follows_the_measured_cold_start_and_memory(
    cold_start_s: float | None, memory: int | None, threshold: int, requested: str, limit: str
) -> None:
    size = sizing(facts(cold_start_s=cold_start_s, memory_bytes=memory), DeployConfig())
    assert (size.startup_failure_threshold, size.memory_request, size.memory_limit) == (
        threshold,
        requested,
        limit,
    )
    assert ("measured" if cold_start_s else "assumed") in size.cold_start_note
    headroom = sizing(facts(memory_bytes=memory), DeployConfig(memory_headroom=2.0))
    assert headroom.memory_limit == f"{2 * int(requested.removesuffix('Mi'))}Mi"


# --- Helm ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm() -> Any:
    return pytest.importorskip(
        "helm_python", reason="helm-python-sdk (Helm's Go engine) is in the dev extra"
    )


def render_chart(
    helm: Any, files: Mapping[str, bytes], tmp: Path, values: Any, ns: str
) -> list[Any]:
    for path, data in files.items():
        (tmp / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp / path).write_bytes(data)
    (chart_dir,) = (tmp / "helm").iterdir()
    with helm.Chart.load(str(chart_dir)) as chart:
        rendered = chart.render(values, name="iris", namespace=ns)
    docs = [doc for text in rendered.values() for doc in yaml.safe_load_all(text) if doc]
    return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))


@pytest.mark.parametrize(
    "config",
    [DeployConfig(), DeployConfig(namespace="ml-prod", min_replicas=2, max_replicas=2)],
    ids=["defaults", "namespace-no-autoscaling"],
)
def test_helm_template_with_default_values_equals_the_plain_manifests(
    helm: Any, config: DeployConfig, tmp_path: Path
) -> None:
    files = deploy_files(facts(), config)
    ns = config.namespace or "default"
    assert render_chart(helm, files, tmp_path / "a", {}, ns) == documents(files, "kubernetes/")
    with_canary = render_chart(helm, files, tmp_path / "b", {"canary": {"enabled": True}}, ns)
    assert with_canary == documents(files, "kubernetes/", "canary/")


def test_helm_values_change_what_they_name(helm: Any, tmp_path: Path) -> None:
    files = deploy_files(facts(), DeployConfig())
    values = {
        "image": "registry.example/iris@sha256:" + "ef" * 32,
        "replicas": 5,
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
        "tokenSecret": "other-secret",
        "autoscaling": {"enabled": False},
    }
    docs = render_chart(helm, files, tmp_path, values, "default")
    assert "HorizontalPodAutoscaler" not in {d["kind"] for d in docs}
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == values["image"]
    # Helm merges maps: the limit stays, the requests are replaced
    assert pod["containers"][0]["resources"] == {
        "limits": {"memory": "464Mi"},
        "requests": {"cpu": "1", "memory": "1Gi"},
    }
    assert deployment["spec"]["replicas"] == 5
    assert {v["name"]: v for v in pod["volumes"]}["api-token"]["secret"]["secretName"] == (
        "other-secret"
    )
    for doc in docs:
        validate(doc)


def test_the_files_are_byte_identical_for_the_same_facts() -> None:
    assert deploy_files(facts(), DeployConfig()) == deploy_files(facts(), DeployConfig())


# --- config --------------------------------------------------------------------------------------


def test_deploy_config_keys_are_checked() -> None:
    with pytest.raises(ValueError, match="min_replicas"):
        Config.model_validate({"deploy": {"min_replicas": 5, "max_replicas": 2}})
    with pytest.raises(ValueError, match="Kubernetes name"):
        Config.model_validate({"deploy": {"namespace": "ML_Prod"}})
    with pytest.raises(ValueError, match="CPU quantity"):
        Config.model_validate({"deploy": {"cpu": "half"}})


def test_an_unknown_deploy_key_is_an_error_naming_it(tmp_path: Path) -> None:
    from nb2prod.notebook.config import load_config_file

    path = tmp_path / "nb2prod.toml"
    path.write_text("[deploy]\nreplica = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'deploy.replica'"):
        load_config_file(path)


# --- nb2prod deploy-files ------------------------------------------------------------------------


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A release directory with what deploy-files reads (and release.json's hashes of it)."""
    root = tmp_path / "dist" / "iris-classifier-1.0.0"
    (root / "service").mkdir(parents=True)
    metadata = dump(service_metadata(disable_file="/tmp/nb2prod-iris-classifier.disabled"))
    example = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
    species = ("setosa", "versicolor", "virginica")
    files = {
        "service/metadata.json": canonical_json(metadata),
        # what deploy/'s alerting rules, dashboard and load test are made from
        "service/monitoring.json": canonical_json(
            dump(
                monitoring_plan(
                    outputs={"species": OutputMetric(kind="categorical", values=species)}
                )
            )
        ),
        "contract.json": canonical_json(
            {
                "input": {"type": "object", "properties": {k: {"type": "number"} for k in example}},
                "output": {"type": "object", "properties": {"species": {"type": "string"}}},
                "sha256": "c" * 64,
            }
        ),
        "examples.json": canonical_json(dump(examples((example, {"species": "setosa"})))),
    }
    for path, data in files.items():
        (root / path).write_bytes(data)
    manifest = release_manifest(
        files={path: sha256_bytes(data) for path, data in files.items()},
        serving=Serving(cold_start_s=20.0, memory_bytes=400 * MIB),
    )
    (root / "release.json").write_bytes(canonical_json(dump(manifest)))
    return root


def run(*args: str | Path) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_deploy_files_writes_the_tree_for_a_release(release: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy"
    result = run("deploy-files", release, "--image", DIGEST, "--out", out)
    assert result.exit_code == 0, result.output
    assert "wrote 26 files" in result.output and "not pinned" not in result.output
    assert "80 s budget (cold start measured by verify: 20.0 s)" in result.output
    assert "request 400Mi, limit 608Mi" in result.output
    written = tree_snapshot(out)
    facts_ = facts(cold_start_s=20.0, memory_bytes=400 * MIB)
    # the Kubernetes, Helm and KServe files, and the alerting rules, dashboard and load test an
    # older release did not have (made from its monitoring.json, contract and examples, with
    # the memory alert at the pod's limit)
    limited = replace(observed_from(resolve(str(release))), memory_limit_bytes=608 * MIB)
    assert written == {
        **deploy_files(facts_, DeployConfig()),
        **{
            path.removeprefix("deploy/"): data
            for path, data in observability_files(limited).items()
        },
    }
    assert b"species" in written["prometheus-rules.yaml"]  # its predictions may collapse
    # 90% of the 608 MiB limit the pod gets from the 400 MiB verify measured
    assert f"> {round(0.9 * 608 * MIB)}\n".encode() in written["prometheus-rules.yaml"]
    assert not list(tmp_path.glob("deploy.partial-*"))


def test_deploy_files_reads_deploy_from_a_config_and_says_when_unpinned(
    release: Path, tmp_path: Path
) -> None:
    config = tmp_path / "nb2prod.toml"
    config.write_text('[deploy]\nnamespace = "ml"\nreplicas = 3\n')
    result = run("deploy-files", release, "--out", tmp_path / "d", "--config", config)
    assert result.exit_code == 0, result.output
    assert "not pinned by digest" in result.output
    deployment = yaml.safe_load((tmp_path / "d" / "kubernetes" / "deployment.yaml").read_text())
    assert deployment["metadata"]["namespace"] == "ml"
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "localhost/iris-classifier:1.0.0"
    )


def test_deploy_files_replaces_its_own_output_but_nothing_else(
    release: Path, tmp_path: Path
) -> None:
    out = tmp_path / "d"
    assert run("deploy-files", release, "--out", out).exit_code == 0
    (out / "kubernetes" / "stale.yaml").write_text("old\n")
    assert run("deploy-files", release, "--out", out, "--image", DIGEST).exit_code == 0
    assert not (out / "kubernetes" / "stale.yaml").exists()
    assert DIGEST in (out / "kubernetes" / "deployment.yaml").read_text()

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine\n")
    result = CliRunner().invoke(main, ["deploy-files", str(release), "--out", str(precious)])
    assert result.exit_code == 1
    assert "not written by nb2prod deploy-files" in result.output
    assert tree_snapshot(precious) == {"notes.txt": b"mine\n"}


def test_deploy_files_refuses_a_modified_release_and_writes_nothing(
    release: Path, tmp_path: Path
) -> None:
    metadata = json.loads((release / "service" / "metadata.json").read_text())
    metadata["release"]["version"] = "9.9.9"
    (release / "service" / "metadata.json").write_text(json.dumps(metadata))
    out = tmp_path / "d"
    result = CliRunner().invoke(main, ["deploy-files", str(release), "--out", str(out)])
    assert result.exit_code == 1
    assert "sha256 differs" in result.output
    assert not out.exists() and not list(tmp_path.glob("d.partial-*"))


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    shutil.rmtree(tmp_path / "deploy-iris-classifier-1.0.0", ignore_errors=True)


def test_deploy_files_default_directory(release: Path, cwd: Path) -> None:
    assert run("deploy-files", release).exit_code == 0
    assert (cwd / "deploy-iris-classifier-1.0.0" / "kubernetes" / "deployment.yaml").is_file()


def test_release_tree_is_deploy_files_under_deploy_with_the_measured_numbers(
    release: Path,
) -> None:
    """What package's write stage calls after verify: the staging directory has no
    release.json yet, the measured numbers come from the verify report."""
    from nb2prod.ops.deploy import release_tree
    from nb2prod.release.reader import Release

    (release / "release.json").unlink()
    tree = release_tree(
        Release.staged(release, "iris-classifier:abcdefghijklmnop"),
        DeployConfig(),
        serving=Serving(cold_start_s=5.0, memory_bytes=250 * MIB),
    )
    expected = deploy_files(
        facts(image="localhost/iris-classifier:1.0.0", cold_start_s=5.0, memory_bytes=250 * MIB),
        DeployConfig(),
    )
    # and deploy/'s alerting rules and dashboard again, now with the pod's memory limit (384Mi)
    staged = Release.staged(release, "iris-classifier:abcdefghijklmnop")
    limited = replace(observed_from(staged), memory_limit_bytes=384 * MIB)
    assert tree == {
        **{f"deploy/{path}": data for path, data in expected.items()},
        **observability_files(limited),
    }
    assert b"Nb2prodMemoryNearLimit" in tree["deploy/prometheus-rules.yaml"]
