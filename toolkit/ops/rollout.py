"""deploy/rollout/: an Argo Rollouts canary that promotes or rolls back itself against the ``[slo]``.

The ``Rollout`` runs the same pods as deploy/kubernetes/deployment.yaml (the Deployment's spec, its
strategy replaced by canary steps: a weight, a pause, an analysis, for each ``[deploy.canary]
weights``). The ``AnalysisTemplate`` asks Prometheus the questions the alerting rules ask
(:mod:`nb2prod.ops.alerts`: the same functions write both queries), about the canary's pods only:
the 5xx share, the share slower than each latency objective, and the fallback's share. A
measurement over its ``[slo]`` limit fails the analysis, and Argo Rollouts aborts the rollout: the
canary is scaled away and the stable pods take all traffic again, without a person.

The canary's series are told apart by the label Argo gives its pods, ``rollouts-pod-template-hash``,
which the scrape must keep as ``rollouts_pod_template_hash`` (docs/deploy.md shows the relabelling).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from ..notebook.config import CanaryConfig
from ..runtime.schema import ServiceLevels
from .alerts import error_share, fallback_share, latency_objectives, number, slow_share
from .slo import duration

API_VERSION = "argoproj.io/v1alpha1"
HASH_LABEL = "rollouts_pod_template_hash"  # the pods' rollouts-pod-template-hash, as scraped
HASH_ARG = "canary-hash"


@dataclass(frozen=True)
class Check:
    """One question of the analysis: a PromQL query whose value must stay at or below ``limit``."""

    name: str
    query: str
    limit: float
    what: str

    @property
    def success(self) -> str:
        """Argo Rollouts' successCondition; no data or NaN (no request) is neither: inconclusive."""
        return f"len(result) > 0 && result[0] <= {number(self.limit)}"

    @property
    def failure(self) -> str:
        return f"len(result) > 0 && result[0] > {number(self.limit)}"


def checks(
    name: str, slo: ServiceLevels, window: int, pod_hash: str = f"{{{{args.{HASH_ARG}}}}}"
) -> list[Check]:
    """The analysis of the pods whose template hash is ``pod_hash`` (Argo fills it in)."""
    selector = f'job="{name}",{HASH_LABEL}="{pod_hash}"'
    found = [
        Check(
            "error-ratio", error_share(selector, window), slo.error_rate,
            f"5xx answers at most {slo.error_rate:.2%} of prediction requests",
        ),
    ]  # fmt: skip
    for objective, ms, budget, le in latency_objectives(slo):
        found.append(
            Check(
                f"latency-{objective}",
                slow_share(selector, le, window),
                budget,
                f"at most {budget:.0%} of /v1/predict requests slower than {ms:g} ms",
            )  # fmt: skip
        )
    found.append(
        Check(
            "fallback-share",
            fallback_share(selector, window),
            slo.fallback_rate,
            f"the fallback answers at most {slo.fallback_rate:.0%} of requests",
        )  # fmt: skip
    )
    return found


def template_name(name: str) -> str:
    return f"{name}-slo"


def analysis_template(
    name: str, slo: ServiceLevels, canary: CanaryConfig, metadata: dict[str, Any]
) -> dict[str, Any]:
    """The ``AnalysisTemplate`` of the ``[slo]``: every check measured ``analysis_count`` times;
    one failed measurement fails the analysis (failureLimit 0)."""
    metrics = [
        {
            "name": check.name,
            "interval": duration(canary.analysis_interval_s),
            "count": canary.analysis_count,
            "failureLimit": 0,
            "successCondition": check.success,
            "failureCondition": check.failure,
            "provider": {"prometheus": {"address": canary.prometheus, "query": check.query}},
        }
        for check in checks(name, slo, canary.analysis_window_s)
    ]
    return {
        "apiVersion": API_VERSION,
        "kind": "AnalysisTemplate",
        "metadata": {**metadata, "name": template_name(name)},
        "spec": {"args": [{"name": HASH_ARG}], "metrics": metrics},
    }


def rollout(deployment: dict[str, Any], name: str, canary: CanaryConfig) -> dict[str, Any]:
    """The Deployment as an Argo Rollouts ``Rollout``: its pods, canary steps for a strategy."""
    analysis = {
        "templates": [{"templateName": template_name(name)}],
        "args": [{"name": HASH_ARG, "valueFrom": {"podTemplateHashValue": "Latest"}}],
    }
    steps: list[dict[str, Any]] = []
    for weight in canary.weights:
        steps.append({"setWeight": weight})
        if canary.pause_s:
            steps.append({"pause": {"duration": duration(canary.pause_s)}})
        steps.append({"analysis": copy.deepcopy(analysis)})
    spec = {k: v for k, v in copy.deepcopy(deployment["spec"]).items() if k != "strategy"}
    spec["strategy"] = {"canary": {"maxSurge": 1, "maxUnavailable": 0, "steps": steps}}
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "metadata": copy.deepcopy(deployment["metadata"]),
        "spec": spec,
    }
