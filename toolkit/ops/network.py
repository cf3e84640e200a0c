"""deploy/'s network security: a NetworkPolicy for the service's pods and an optional Ingress.

The NetworkPolicy lets in only the service port (the container's; /metrics is served on it too),
from the pods and namespaces ``[deploy.network]`` names (the release's own namespace when it
names none), the ingress controller's namespace when there is an Ingress, and Prometheus's
namespace. The Ingress (``[deploy.ingress] host``) terminates TLS with a Secret when
``tls_secret`` is set, and carries ingress-nginx annotations matching the service's own limits:
``[service] rate_limit`` per client address, ``max_body_bytes``.
"""

from __future__ import annotations

import math
from typing import Any

from ..notebook.config import IngressConfig, NetworkConfig
from ..runtime.schema import RateLimit

NAMESPACE_LABEL = "kubernetes.io/metadata.name"  # every namespace has it (Kubernetes >= 1.21)
NGINX = "nginx.ingress.kubernetes.io"


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: name}}}


def network_policy(
    metadata: dict[str, Any],
    pods: dict[str, str],
    port: int,
    network: NetworkConfig,
    ingress: IngressConfig,
) -> dict[str, Any]:
    """Ingress to ``pods`` (a label selector) only on ``port``, only from who is configured."""
    peers: list[dict[str, Any]] = [_namespace(ns) for ns in network.allow_namespaces]
    if network.allow_pods:
        peers.append({"podSelector": {"matchLabels": dict(network.allow_pods)}})
    if not peers:
        peers.append({"podSelector": {}})  # every pod of the release's own namespace
    if ingress.host is not None and ingress.controller_namespace not in network.allow_namespaces:
        peers.append(_namespace(ingress.controller_namespace))
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": pods},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": peers, "ports": [{"port": port, "protocol": "TCP"}]},
                {
                    "from": [_namespace(network.prometheus_namespace)],
                    "ports": [{"port": port, "protocol": "TCP"}],
                },
            ],
        },
    }


def ingress_annotations(
    config: IngressConfig, rate_limit: RateLimit | None, max_body_bytes: int | None
) -> dict[str, str]:
    """ingress-nginx's: its per-client-address limit as close to the service's as it has
    (whole requests/s, burst as a multiple of it), the body limit, and HTTPS only with TLS."""
    found: dict[str, str] = {}
    if rate_limit is not None:
        rps = max(1, math.ceil(rate_limit.requests_per_s))
        found[f"{NGINX}/limit-rps"] = str(rps)
        found[f"{NGINX}/limit-burst-multiplier"] = str(max(1, math.ceil(rate_limit.burst / rps)))
    if max_body_bytes is not None:
        found[f"{NGINX}/proxy-body-size"] = str(max_body_bytes)
    if config.tls_secret is not None:
        found[f"{NGINX}/force-ssl-redirect"] = "true"
    return found


def ingress(
    metadata: dict[str, Any],
    service: str,
    config: IngressConfig,
    rate_limit: RateLimit | None,
    max_body_bytes: int | None,
) -> dict[str, Any]:
    """An Ingress for ``config.host`` to the Service's http port."""
    assert config.host is not None
    spec: dict[str, Any] = {
        "ingressClassName": config.class_name,
        "rules": [
            {
                "host": config.host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service, "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ],
    }
    if config.tls_secret is not None:
        spec["tls"] = [{"hosts": [config.host], "secretName": config.tls_secret}]
    annotations = ingress_annotations(config, rate_limit, max_body_bytes)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {**metadata, **({"annotations": annotations} if annotations else {})},
        "spec": spec,
    }
