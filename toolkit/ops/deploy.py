"""deploy/: Kubernetes manifests, a Helm chart and a KServe InferenceService for a release.

Everything is built here as Python data from the release's own facts (:class:`DeployFacts`) and the
``[deploy]`` config, and dumped as YAML with sorted keys, so the same release gives the same bytes.
:func:`deploy_files` returns the tree (relative path -> bytes); the caller writes it through
:class:`~nb2prod.release.writer.Staging` (``package``'s write stage, or ``nb2prod deploy-files``).

The Helm chart is made from the same builders as the plain manifests: where the chart reads a
value from values.yaml, the builder gets a :class:`Ref` instead of the value, and the dumped YAML
gets the Go template expression in its place. With default values, ``helm template`` therefore
renders exactly the plain manifests (tests/test_deploy.py renders it with Helm's own engine).

Sizing (docs/deploy.md):
- startup probe: a budget of max(60 s, 4 x the cold start ``verify`` measured), 30 s assumed when
  nothing was measured; the readiness and liveness probes start only after it succeeds;
- memory: request = measured PSS of the server's processes (512 MiB when not measured), limit =
  request x ``memory_headroom``; both rounded up to 16 MiB. CPU: a request, no limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..adapters.container import SERVICE_PORT, UID
from ..errors import DeployError
from ..notebook.config import DeployConfig
from ..release.manifest import ColdStart, Serving
from ..release.reader import Release, resolve
from ..release.writer import IMAGES_JSONL, Staging, canonical_yaml
from ..runtime.schema import RateLimit, ServiceLevels
from ..version import __version__
from .network import ingress, network_policy
from .observability import observability_files
from .rollout import analysis_template, rollout
from .slo import observed_from

DEPLOY_DIR = "deploy"  # inside a release
README = "README.md"
MARK = "nb2prod deploy files"  # in README.md's first line: a directory deploy-files may replace
TOKEN_DIR = "/var/run/secrets/nb2prod"
TOKEN_KEY = "token"
HOME = "/home/nb2prod"  # the image's home and BENTOML_HOME's parent; writable via an emptyDir
MIB = 1 << 20
DEFAULT_COLD_START_S = 30.0
DEFAULT_MEMORY_BYTES = 512 * MIB
STARTUP_MIN_BUDGET_S = 60
STARTUP_FACTOR = 4
PROBE_PERIOD_S = 5
LABEL_NAME = "app.kubernetes.io/name"
LABEL_TRACK = "nb2prod.io/track"


@dataclass(frozen=True)
class DeployFacts:
    """What a release says about itself that its deployment needs."""

    name: str
    version: str
    bento_tag: str
    auth: str  # "token" or "none"
    contract_sha256: str
    model_sha256: str
    image: str  # the reference to run: by digest (name@sha256:...) when it is known
    # measured by verify (None: not measured): start to the first answer (to /readyz in releases
    # without the phases), and the PSS of the server's processes after answering every example
    cold_start_s: float | None
    memory_bytes: int | None
    cold_start: ColdStart | None = None  # the phases of cold_start_s, when verify measured them
    # the [slo] the Argo Rollouts analysis holds a canary to, and the service's own limits the
    # Ingress's annotations match (service/metadata.json)
    slo: ServiceLevels = ServiceLevels()
    rate_limit: RateLimit | None = None
    max_body_bytes: int | None = None


def facts_from_release(release: Release, image: str | None = None) -> DeployFacts:
    """The facts of a release directory (or a bento's copy of its files).

    ``image`` is pinned by digest when the release recorded a push of it (:func:`pinned_image`);
    with no ``image``, the newest push, else what ``nb2prod containerize`` tags:
    ``localhost/<name>:<version>``. Cold start and memory come from release.json's ``serving``
    record when the release has one."""
    info = release.metadata.release
    image = pinned_image(release, image)[0]
    serving = release.manifest.serving if release.manifest is not None else None
    return DeployFacts(
        name=info.name,
        version=info.version,
        bento_tag=release.bento_tag,
        auth=info.auth,
        contract_sha256=info.contract_sha256,
        model_sha256=info.model_sha256,
        image=image or f"localhost/{info.name}:{info.version}",
        cold_start_s=serving.startup_s if serving else None,
        memory_bytes=serving.memory_bytes if serving else None,
        cold_start=serving.cold_start if serving else None,
        slo=release.monitoring.slo,
        rate_limit=release.metadata.service.rate_limit,
        max_body_bytes=release.metadata.service.max_body_bytes,
    )


def release_tree(
    release: Release,
    config: DeployConfig,
    *,
    serving: Serving,
) -> dict[str, bytes]:
    """deploy/'s Kubernetes, Helm and KServe files for a release being packaged, keyed by their
    path in the release (``deploy/...``), once verify measured cold start and memory. ``release``
    is the staged one (:meth:`Release.staged`: its service/metadata.json is written by then); the
    write stage wrote deploy/'s alerting rules, dashboard and load test, written again here with
    the memory limit (:func:`observability_tree`)."""
    facts = replace(
        facts_from_release(release),
        cold_start_s=serving.startup_s,
        memory_bytes=serving.memory_bytes,
        cold_start=serving.cold_start,
    )
    tree = {f"{DEPLOY_DIR}/{path}": data for path, data in deploy_files(facts, config).items()}
    return {**tree, **observability_tree(release, sizing(facts, config))}


def observability_tree(release: Release, size: Sizing) -> dict[str, bytes]:
    """deploy/'s alerting rules, dashboard and load test (``deploy/...``), with the memory alert
    and the dashboard's memory line at the pod's limit."""
    limit = int(size.memory_limit.removesuffix("Mi")) * MIB
    return observability_files(replace(observed_from(release), memory_limit_bytes=limit))


def pinned_image(release: Release, image: str | None) -> tuple[str | None, str | None]:
    """The image the manifests run, and where its digest came from (None: no digest).

    ``image`` with a digest is kept. Without one, the newest push of the release recorded for
    that reference in images.jsonl (with no ``image``: the newest push at all) gives
    ``NAME@DIGEST``; else ``image`` stays as it is."""
    if image is not None and "@" in image:
        return image, "--image"
    for record in reversed(release.pushed_images):
        if image is None or image in (record.destination, record.pinned):
            return record.pinned, f"{IMAGES_JSONL} (pushed {record.pushed_at})"
    return image, None


@dataclass(frozen=True)
class Ref:
    """In a Helm template, an expression (``.Values.replicas``) where the plain manifest has a
    value. ``block``: a mapping, rendered with toYaml below its key; ``quote``: a string."""

    expr: str
    block: bool = False
    quote: bool = False


@dataclass(frozen=True)
class Knobs:
    """What the Helm chart lets values.yaml change; concrete values in the plain manifests."""

    image: Any
    replicas: Any
    resources: Any
    token_secret: Any
    min_replicas: Any
    max_replicas: Any
    cpu_target: Any
    canary_image: Any
    canary_replicas: Any
    namespace: Any  # None: no namespace in the manifests (kubectl's -n decides)


@dataclass(frozen=True)
class Sizing:
    """Probe budget and resources, with where each number came from (for the files' comments)."""

    startup_failure_threshold: int
    startup_budget_s: int
    memory_request: str
    memory_limit: str
    cold_start_note: str
    memory_note: str


def sizing(facts: DeployFacts, config: DeployConfig) -> Sizing:
    """The startup probe's budget is STARTUP_FACTOR times the measured cold start (process start
    to the first answer), at least STARTUP_MIN_BUDGET_S, in whole probe periods: a cluster node
    is slower than the machine that packaged, and a pod killed while it still starts never does."""
    if facts.cold_start_s is not None:
        cold, cold_note = facts.cold_start_s, f"measured by verify: {facts.cold_start_s:.1f} s"
        if facts.cold_start is not None:
            phases = facts.cold_start
            cold_note += (
                f" = import {phases.import_s:.1f} s + model load {phases.model_load_s:.1f} s + "
                f"first answer {phases.first_answer_s:.1f} s"
            )
    else:
        cold, cold_note = (
            DEFAULT_COLD_START_S,
            f"not measured; {DEFAULT_COLD_START_S:.0f} s assumed",
        )
    budget = max(STARTUP_MIN_BUDGET_S, math.ceil(STARTUP_FACTOR * cold))
    threshold = math.ceil(budget / PROBE_PERIOD_S)
    if facts.memory_bytes is not None:
        memory, memory_note = facts.memory_bytes, f"measured by verify: {_mib(facts.memory_bytes)}"
    else:
        memory = DEFAULT_MEMORY_BYTES
        memory_note = f"not measured; {_mib(DEFAULT_MEMORY_BYTES)} assumed"
    request = _round_mib(memory)
    limit = _round_mib(request * MIB * config.memory_headroom)
    return Sizing(
        startup_failure_threshold=threshold,
        startup_budget_s=threshold * PROBE_PERIOD_S,
        memory_request=f"{request}Mi",
        memory_limit=f"{limit}Mi",
        cold_start_note=cold_note,
        memory_note=memory_note,
    )


def _round_mib(size: float) -> int:
    """Whole MiB, rounded up to a multiple of 16."""
    return 16 * math.ceil(size / MIB / 16)


def _mib(size: int) -> str:
    return f"{size / MIB:.0f} MiB"


def knobs(facts: DeployFacts, config: DeployConfig, size: Sizing) -> Knobs:
    return Knobs(
        image=facts.image,
        replicas=config.replicas,
        resources={
            "limits": {"memory": size.memory_limit},
            "requests": {"cpu": config.cpu, "memory": size.memory_request},
        },
        token_secret=config.token_secret or f"{facts.name}-token",
        min_replicas=config.autoscaling_min,
        max_replicas=config.autoscaling_max,
        cpu_target=config.cpu_target,
        canary_image=facts.image,
        canary_replicas=config.canary.replicas,
        namespace=config.namespace,
    )


CHART_KNOBS = Knobs(
    image=Ref(".Values.image", quote=True),
    replicas=Ref(".Values.replicas"),
    resources=Ref(".Values.resources", block=True),
    token_secret=Ref(".Values.tokenSecret", quote=True),
    min_replicas=Ref(".Values.autoscaling.minReplicas"),
    max_replicas=Ref(".Values.autoscaling.maxReplicas"),
    cpu_target=Ref(".Values.autoscaling.targetCPUUtilizationPercentage"),
    canary_image=Ref(".Values.canary.image", quote=True),
    canary_replicas=Ref(".Values.canary.replicas"),
    namespace=Ref(".Release.Namespace", quote=True),
)


# --- the objects -------------------------------------------------------------------------------


def _metadata(facts: DeployFacts, k: Knobs, name: str, track: str | None = None) -> dict[str, Any]:
    labels = {
        LABEL_NAME: facts.name,
        "app.kubernetes.io/version": facts.version,
        "app.kubernetes.io/managed-by": "nb2prod",
    }
    if track:
        labels[LABEL_TRACK] = track
    meta: dict[str, Any] = {"name": name, "labels": labels}
    if k.namespace is not None:
        meta["namespace"] = k.namespace
    return meta


def _probe(path: str, *, port: Any, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def pod_spec(
    facts: DeployFacts, k: Knobs, size: Sizing, *, image: Any, port: Any
) -> dict[str, Any]:
    """The pod: one non-root container with a read-only root file system, probes, resources,
    and the token as a file from a Secret. Shared by the Deployments and the InferenceService."""
    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},  # kill-switch file, BentoML's sockets
        {"name": "home", "mountPath": HOME},  # BENTOML_HOME, Prometheus multiprocess files
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "home", "emptyDir": {"sizeLimit": "256Mi"}},
    ]
    env = [{"name": "BENTOML_DO_NOT_TRACK", "value": "true"}]
    if facts.auth == "token":
        env.append({"name": "NB2PROD_API_TOKEN_FILE", "value": f"{TOKEN_DIR}/{TOKEN_KEY}"})
        mounts.append({"name": "api-token", "mountPath": TOKEN_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "api-token",
                # optional: false said explicitly: the service must not start without its token
                # (and podman kube play 4.3 needs the field)
                "secret": {"secretName": k.token_secret, "optional": False, "defaultMode": 0o440},
            }
        )
    container = {
        "name": "service",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": SERVICE_PORT, "protocol": "TCP"}],
        "env": env,
        # the startup probe holds the other two off until the model is loaded
        "startupProbe": _probe(
            "/readyz", port=port, period=PROBE_PERIOD_S, failures=size.startup_failure_threshold
        ),
        "readinessProbe": _probe("/readyz", port=port, period=PROBE_PERIOD_S, failures=3),
        "livenessProbe": _probe("/livez", port=port, period=10, failures=3),
        "resources": k.resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    return {
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            "fsGroup": UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": volumes,
    }


def _pod_annotations(facts: DeployFacts) -> dict[str, str]:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(SERVICE_PORT),
        "prometheus.io/path": "/metrics",
        "nb2prod.io/bento-tag": facts.bento_tag,
        "nb2prod.io/contract-sha256": facts.contract_sha256,
        "nb2prod.io/model-sha256": facts.model_sha256,
    }


def deployment(facts: DeployFacts, k: Knobs, size: Sizing, track: str) -> dict[str, Any]:
    """The stable Deployment, or (track "canary") the new version beside it."""
    canary = track == "canary"
    name = f"{facts.name}-canary" if canary else facts.name
    selector = {LABEL_NAME: facts.name, LABEL_TRACK: track}
    template_meta = _metadata(facts, k, name, track)
    template_meta.pop("name")
    template_meta.pop("namespace", None)
    template_meta["annotations"] = _pod_annotations(facts)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(facts, k, name, track),
        "spec": {
            "replicas": k.canary_replicas if canary else k.replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": template_meta,
                "spec": pod_spec(
                    facts, k, size, image=k.canary_image if canary else k.image, port="http"
                ),
            },
        },
    }


def service(facts: DeployFacts, k: Knobs) -> dict[str, Any]:
    """Selects stable and canary pods alike: traffic splits by their numbers of ready pods."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(facts, k, facts.name),
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_NAME: facts.name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def autoscaler(facts: DeployFacts, k: Knobs) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(facts, k, facts.name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": facts.name},
            "minReplicas": k.min_replicas,
            "maxReplicas": k.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": k.cpu_target},
                    },
                }
            ],
        },
    }


def disruption_budget(facts: DeployFacts, k: Knobs) -> dict[str, Any]:
    # maxUnavailable rather than minAvailable: a one-replica Deployment can still be drained
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(facts, k, facts.name),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {LABEL_NAME: facts.name, LABEL_TRACK: "stable"}},
        },
    }


def kserve_pod(facts: DeployFacts, k: Knobs, size: Sizing) -> dict[str, Any]:
    """The pod as KServe runs it: its one container named and exposed as KServe expects."""
    pod = pod_spec(facts, k, size, image=k.image, port=SERVICE_PORT)
    (container,) = pod["containers"]
    container["name"] = "kserve-container"  # the name KServe expects for a predictor's container
    container["ports"] = [{"containerPort": SERVICE_PORT, "protocol": "TCP"}]
    return pod


def inference_service(facts: DeployFacts, k: Knobs, size: Sizing) -> dict[str, Any]:
    """KServe v1beta1, custom container predictor: the same pod, KServe's autoscaling."""
    pod = kserve_pod(facts, k, size)
    meta = _metadata(facts, k, facts.name)
    meta["annotations"] = _pod_annotations(facts)
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": meta,
        "spec": {
            "predictor": {
                **pod,
                "minReplicas": k.min_replicas,
                "maxReplicas": k.max_replicas,
                "scaleMetric": "cpu",
                "scaleTarget": k.cpu_target,
            }
        },
    }


# the model format the V2 ServingRuntime declares and the InferenceService asks for
V2_FORMAT = "nb2prod"


def v2_runtime(facts: DeployFacts, k: Knobs, size: Sizing) -> dict[str, Any]:
    """KServe v1alpha1 ServingRuntime: this image as a runtime that speaks the Open Inference
    Protocol (V2), so an InferenceService can select it with ``protocolVersion: v2``."""
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": _metadata(facts, k, f"{facts.name}-v2"),
        "spec": {
            "supportedModelFormats": [
                {"name": V2_FORMAT, "version": facts.version, "autoSelect": False}
            ],
            "protocolVersions": ["v2"],
            "multiModel": False,
            "annotations": _pod_annotations(facts),
            "containers": kserve_pod(facts, k, size)["containers"],
        },
    }


def v2_inference_service(facts: DeployFacts, k: Knobs, size: Sizing) -> dict[str, Any]:
    """:func:`inference_service` on :func:`v2_runtime`: the same pod settings (security,
    volumes) and scaling, the container the runtime's, the protocol selected with
    ``protocolVersion: v2``."""
    isvc = inference_service(facts, k, size)
    predictor = isvc["spec"]["predictor"]
    del predictor["containers"]  # the runtime's; the model below names it
    predictor["model"] = {
        "modelFormat": {"name": V2_FORMAT, "version": facts.version},
        "runtime": f"{facts.name}-v2",
        "protocolVersion": "v2",
    }
    return isvc


# --- files ---------------------------------------------------------------------------------------


def deploy_files(facts: DeployFacts, config: DeployConfig) -> dict[str, bytes]:
    """The deploy/ tree: relative path (below deploy/) -> bytes."""
    size = sizing(facts, config)
    plain = knobs(facts, config, size)
    chart = replace(
        CHART_KNOBS, namespace=None if config.namespace is None else CHART_KNOBS.namespace
    )
    autoscaling = config.autoscaling_max > config.autoscaling_min
    header = _header(facts, size)
    files: dict[str, bytes] = {README: _readme(facts, config, plain, size, autoscaling).encode()}

    root = f"helm/{facts.name}"
    # each object once: as a plain manifest (None: not this release) and as a chart template
    # (rendered when the condition on values.yaml holds; None: always)
    objects: list[tuple[str | None, str, Callable[[Knobs], dict[str, Any]], str | None]] = [
        ("kubernetes/deployment.yaml", "deployment", lambda k: deployment(facts, k, size, "stable"), None),
        ("kubernetes/service.yaml", "service", lambda k: service(facts, k), None),
        ("kubernetes/pdb.yaml", "pdb", lambda k: disruption_budget(facts, k), None),
        ("kubernetes/hpa.yaml" if autoscaling else None, "hpa", lambda k: autoscaler(facts, k), ".Values.autoscaling.enabled"),
        ("canary/deployment.yaml", "canary", lambda k: deployment(facts, k, size, "canary"), ".Values.canary.enabled"),
    ]  # fmt: skip
    for path, template, build, condition in objects:
        if path is not None:
            files[path] = canonical_yaml(build(plain), header)
        rendered = helm_template(header, build(chart), condition)
        files[f"{root}/templates/{template}.yaml"] = rendered.encode()
    files.update(guarded_files(facts, config, plain, chart, header, root))
    files.update(rollout_files(facts, config, plain, size, header, autoscaling))
    files[f"{root}/Chart.yaml"] = canonical_yaml(chart_metadata(facts), header)
    files[f"{root}/values.yaml"] = canonical_yaml(chart_values(plain, autoscaling), header)
    files["kserve/inferenceservice.yaml"] = canonical_yaml(
        inference_service(facts, plain, size), header
    )
    files["kserve/v2/servingruntime.yaml"] = canonical_yaml(v2_runtime(facts, plain, size), header)
    files["kserve/v2/inferenceservice.yaml"] = canonical_yaml(
        v2_inference_service(facts, plain, size), header
    )
    return dict(sorted(files.items()))


def guarded_files(
    facts: DeployFacts, config: DeployConfig, plain: Knobs, chart: Knobs, header: str, root: str
) -> dict[str, bytes]:
    """The NetworkPolicy and (with ``[deploy.ingress] host``) the Ingress, plain and in the
    chart (nb2prod.ops.network)."""
    objects: list[tuple[str, str, Callable[[Knobs], dict[str, Any]]]] = []
    if config.network.policy:
        objects.append(("networkpolicy", "networkpolicy", lambda k: network_policy(
            _metadata(facts, k, facts.name), {LABEL_NAME: facts.name}, SERVICE_PORT,
            config.network, config.ingress,
        )))  # fmt: skip
    if config.ingress.host is not None:
        objects.append(("ingress", "ingress", lambda k: ingress(
            _metadata(facts, k, facts.name), facts.name, config.ingress, facts.rate_limit,
            facts.max_body_bytes,
        )))  # fmt: skip
    files: dict[str, bytes] = {}
    for name, template, build in objects:
        files[f"kubernetes/{name}.yaml"] = canonical_yaml(build(plain), header)
        files[f"{root}/templates/{template}.yaml"] = helm_template(
            header, build(chart), None
        ).encode()
    return files


def rollout_files(
    facts: DeployFacts, config: DeployConfig, k: Knobs, size: Sizing, header: str, autoscaling: bool
) -> dict[str, bytes]:
    """deploy/rollout/: the stable Deployment as an Argo Rollouts canary, its analysis of the
    ``[slo]`` (nb2prod.ops.rollout), and the autoscaler aimed at the Rollout."""
    stable = deployment(facts, k, size, "stable")
    meta = _metadata(facts, k, facts.name)
    files = {
        "rollout/rollout.yaml": canonical_yaml(rollout(stable, facts.name, config.canary), header),
        "rollout/analysis-template.yaml": canonical_yaml(
            analysis_template(facts.name, facts.slo, config.canary, meta), header
        ),
    }
    if autoscaling:
        hpa = autoscaler(facts, k)
        hpa["spec"]["scaleTargetRef"] = {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": facts.name,
        }  # fmt: skip
        files["rollout/hpa.yaml"] = canonical_yaml(hpa, header)
    return files


def chart_metadata(facts: DeployFacts) -> dict[str, Any]:
    return {
        "apiVersion": "v2",
        "name": facts.name,
        "description": f"{facts.name} {facts.version}, packaged by nb2prod (bento {facts.bento_tag})",
        "type": "application",
        "version": facts.version,
        "appVersion": facts.version,
    }


def chart_values(k: Knobs, autoscaling: bool) -> dict[str, Any]:
    return {
        "image": k.image,
        "replicas": k.replicas,
        "resources": k.resources,
        "tokenSecret": k.token_secret,
        "autoscaling": {
            "enabled": autoscaling,
            "minReplicas": k.min_replicas,
            "maxReplicas": k.max_replicas,
            "targetCPUUtilizationPercentage": k.cpu_target,
        },
        "canary": {"enabled": False, "image": k.canary_image, "replicas": k.canary_replicas},
    }


def _header(facts: DeployFacts, size: Sizing) -> str:
    return (
        f"# generated by nb2prod {__version__} for {facts.name} {facts.version} "
        f"(bento {facts.bento_tag}); see docs/deploy.md\n"
        f"# startup probe budget {size.startup_budget_s} s (cold start {size.cold_start_note}); "
        f"memory request {size.memory_request} ({size.memory_note}), limit {size.memory_limit}\n"
    )


_SENTINEL = re.compile(r"__nb2prod_ref_(\d+)__")


def helm_template(header: str, data: Any, condition: str | None) -> str:
    """``data`` as a Go template: each :class:`Ref` becomes its expression."""
    refs: list[Ref] = []

    def swap(node: Any) -> Any:
        if isinstance(node, Ref):
            refs.append(node)
            return f"__nb2prod_ref_{len(refs) - 1}__"
        if isinstance(node, dict):
            return {key: swap(value) for key, value in node.items()}
        if isinstance(node, list):
            return [swap(item) for item in node]
        return node

    lines = []
    for line in canonical_yaml(swap(data)).decode().splitlines():
        match = _SENTINEL.search(line)
        ref = refs[int(match.group(1))] if match else None
        if ref is not None and ref.block:
            indent = len(line) - len(line.lstrip())
            key = line.split(":", 1)[0]
            lines.append(f"{key}:")
            lines.append(f"{' ' * (indent + 2)}{{{{- toYaml {ref.expr} | nindent {indent + 2} }}}}")
            continue
        lines.append(_SENTINEL.sub(lambda m: _expression(refs[int(m.group(1))]), line))
    body = "\n".join(lines) + "\n"
    if condition:
        body = f"{{{{- if {condition} }}}}\n{body}{{{{- end }}}}\n"
    return header + body


def _expression(ref: Ref) -> str:
    return "{{ " + ref.expr + (" | quote" if ref.quote else "") + " }}"


def _readme(
    facts: DeployFacts, config: DeployConfig, k: Knobs, size: Sizing, autoscaling: bool
) -> str:
    ns = f" -n {config.namespace}" if config.namespace else ""
    secret = k.token_secret
    token = (
        f'kubectl{ns} create secret generic {secret} --from-literal={TOKEN_KEY}="$(openssl rand -hex 32)"\n'
        if facts.auth == "token"
        else '# auth = "none": no token Secret\n'
    )
    scaling = (
        f"HorizontalPodAutoscaler: {config.autoscaling_min} to {config.autoscaling_max} pods at "
        f"{config.cpu_target}% CPU"
        if autoscaling
        else f"{config.replicas} pods, no autoscaling (min_replicas = max_replicas)"
    )
    return f"""<!-- {MARK}: generated by nb2prod {__version__} for {facts.name} {facts.version} -->
# Deploying {facts.name} {facts.version}

Image: `{facts.image}`. Bento: `{facts.bento_tag}`. {scaling}.
Startup probe budget {size.startup_budget_s} s (cold start {size.cold_start_note}).
Pod memory request {size.memory_request} ({size.memory_note}), limit {size.memory_limit}.

| path | what |
| --- | --- |
| `kubernetes/` | Deployment (track stable), Service, PodDisruptionBudget{", HorizontalPodAutoscaler" if autoscaling else ""}{_network_objects(config)} |
| `canary/deployment.yaml` | this version as a canary beside the stable Deployment, behind the same Service |
| `rollout/` | instead of the Deployment{" and its autoscaler" if autoscaling else ""}: an Argo Rollouts canary ({_steps(config)}) that the `[slo]` analysis promotes or rolls back |
| `helm/{facts.name}/` | the same objects as a Helm chart (values: image, replicas, resources, tokenSecret, autoscaling, canary) |
| `kserve/inferenceservice.yaml` | a KServe InferenceService with this image as a custom predictor (every route: /v1 and /v2) |
| `kserve/v2/` | the Open Inference Protocol the KServe way: a ServingRuntime `{facts.name}-v2` with `protocolVersions: [v2]`, and an InferenceService selecting it with `protocolVersion: v2` (apply both instead of the one above) |
| `prometheus-rules.yaml`, `prometheus-rule.yaml` | the `[slo]` alerting rules, plain and as a Prometheus Operator PrometheusRule |
| `grafana-dashboard.json` | the Grafana dashboard of the service's metrics against the `[slo]` |
| `locustfile.py`, `loadtest.json` | the same load as `nb2prod loadtest`, for a deployed URL |

```console
$ {token.strip()}
$ kubectl{ns} apply -f kubernetes/
$ kubectl{ns} rollout status deployment/{facts.name}
```

With Argo Rollouts, the canary promotes or rolls back itself:

```console
$ kubectl{ns} apply -f rollout/ {" ".join(f"-f kubernetes/{n}.yaml" for n in _beside_rollout(config))}
$ kubectl argo rollouts{ns} get rollout {facts.name} --watch
```

Canary, promotion and rollback: see nb2prod's docs/deploy.md.
"""


def _network_objects(config: DeployConfig) -> str:
    found = ["NetworkPolicy"] if config.network.policy else []
    if config.ingress.host is not None:
        found.append(
            f"Ingress for {config.ingress.host}" + (" (TLS)" if config.ingress.tls_secret else "")
        )
    return "".join(f", {name}" for name in found)


def _steps(config: DeployConfig) -> str:
    return ", ".join(f"{w}%" for w in config.canary.weights) + ", then 100%"


def _beside_rollout(config: DeployConfig) -> list[str]:
    """What rollout/ is applied with: kubernetes/ but the Deployment and its autoscaler."""
    found = ["service", "pdb"]
    if config.network.policy:
        found.append("networkpolicy")
    if config.ingress.host is not None:
        found.append("ingress")
    return found


@dataclass(frozen=True)
class Written:
    """What ``nb2prod deploy-files`` wrote."""

    directory: Path
    facts: DeployFacts
    files: tuple[str, ...]
    sizing: Sizing
    digest_from: str | None = None  # where the image's digest came from (None: not pinned)


def write_deploy_files(
    target: str, *, image: str | None, out: Path | None, config: DeployConfig
) -> Written:
    """deploy/ for an existing release (or bento), written to ``out`` (default
    ``deploy-<name>-<version>``) through Staging: all files or, on failure, none. ``out`` is
    replaced only when it is empty or an earlier output of this command."""
    release = resolve(target)
    release.check_integrity()
    pinned, digest_from = pinned_image(release, image)
    facts = facts_from_release(release, pinned)
    destination = out or Path(f"deploy-{facts.name}-{facts.version}")
    _check_replaceable(destination)
    # the alerting rules, dashboard and load test a release's deploy/ has (nb2prod.ops.observability)
    observed = {
        path.removeprefix(f"{DEPLOY_DIR}/"): data
        for path, data in observability_tree(release, sizing(facts, config)).items()
    }
    files = dict(sorted({**deploy_files(facts, config), **observed}.items()))
    with Staging(destination) as staging:
        staging.write_tree(files)
        written = staging.commit()
    return Written(written, facts, tuple(files), sizing(facts, config), digest_from)


def _check_replaceable(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise DeployError(f"--out {out}: exists and is not a directory")
    readme = out / README
    ours = readme.is_file() and MARK in readme.read_text(encoding="utf-8", errors="replace")[:200]
    if any(out.iterdir()) and not ours:
        raise DeployError(
            f"--out {out}: exists, is not empty and was not written by nb2prod deploy-files",
            hint="Give a new directory; nb2prod replaces only its own earlier output.",
        )
