"""Hand-laid release files for unit tests: typed, so a schema change breaks here, once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nb2prod.probe.protocol import ProbeExample
from nb2prod.release.manifest import Examples, ReleaseManifest, Serving
from nb2prod.runtime.schema import (
    Batching,
    CircuitBreakerSettings,
    DriftReference,
    FallbackSummary,
    MonitoringPlan,
    OutputMetric,
    ReleaseInfo,
    RuntimeManifest,
    ServiceMetadata,
    ServiceSettings,
)


def service_metadata(
    *,
    name: str = "iris-classifier",
    version: str = "1.0.0",
    auth: str = "token",
    fallback: bool = True,
    min_confidence: float | None = None,
    model_sha256: str = "d" * 64,
    disable_file: str = "/x",
    batching_max_size: int = 64,
    max_batch_rows: int = 1000,
    runtime_files: Mapping[str, str] | None = None,
    owner: str | None = None,
    git_commit: str | None = None,
    files: Mapping[str, str] | None = None,
) -> ServiceMetadata:
    """service/metadata.json of a release (defaults: the iris example's settings)."""
    return ServiceMetadata(
        release=ReleaseInfo(
            name=name, version=version, owner=owner, git_commit=git_commit,
            notebook_sha256="e" * 64, contract_sha256="c" * 64, model_sha256=model_sha256,
            evaluation={}, auth=auth,
            fallback=FallbackSummary(
                available=fallback, timeout_ms=None, min_confidence=min_confidence,
                circuit_breaker=CircuitBreakerSettings(failures=5, reset_s=30.0),
            ),
        ),
        service=ServiceSettings(
            workers=1, batching_max_size=batching_max_size, max_batch_rows=max_batch_rows,
            log_bodies=False, disable_file=disable_file,
        ),
        runtime=RuntimeManifest(nb2prod_version="0.1.0", files=dict(runtime_files or {})),
        files=dict(files or {}),
    )  # fmt: skip


def monitoring_plan(
    *, batching: bool = True, outputs: Mapping[str, OutputMetric] | None = None
) -> MonitoringPlan:
    """service/monitoring.json without a drift reference; ``batching=False``: the contract probe
    saw a batch answer differently from its items (answered item by item)."""
    return MonitoringPlan(
        sensitive=(),
        outputs=dict(outputs or {}),
        drift=DriftReference(window=100, unavailable="none in this test"),
        batching=Batching(
            enabled=batching, why="on" if batching else "off: test", items_alone=not batching
        ),
    )


def release_manifest(
    *,
    files: Mapping[str, str],
    name: str = "iris-classifier",
    version: str = "1.0.0",
    bento_tag: str = "iris-classifier:abcdefghijklmnop",
    python_version: str = "3.11.7",
    serving: Serving | None = None,
) -> ReleaseManifest:
    """release.json of a release whose other files have the sha256s ``files``."""
    return ReleaseManifest(
        name=name, version=version, bento_tag=bento_tag, created_at="2026-11-23T00:00:00+00:00",
        git_commit=None, git_dirty=None, notebook="iris.ipynb", notebook_sha256="e" * 64,
        parameters={}, config=None, gates_enforced=True, python_version=python_version,
        nb2prod_version="0.1.0", bentoml_version=None, cache_key="k", reused=(),
        allow_drift=False, allow_breaking=False, contract_verdict="first",
        model_fingerprint="f", contract_sha256="c" * 64, drift=(), serving=serving,
        files=dict(files),
    )  # fmt: skip


def examples(*pairs: tuple[Mapping[str, Any], Mapping[str, Any]]) -> Examples:
    """examples.json of (input, output) pairs, in order."""
    return Examples(
        generated_by="nb2prod 0.1.0 from iris.ipynb",
        examples=tuple(
            ProbeExample(index=i, input=dict(inp), output=dict(out))
            for i, (inp, out) in enumerate(pairs)
        ),
    )
