"""The JSON files a release carries, as typed models: one schema shared by host, kernel and service.

Every file nb2prod writes and later reads back is one of these frozen models (``extra="forbid"``),
written with :func:`dump` and read with :func:`load`. A file written by another version of
nb2prod that does not fit fails with :class:`SchemaMismatch`, naming the file and the field.
Pydantic only: this module is part of the serving runtime that every release carries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


M = TypeVar("M", bound=Frozen)


class SchemaMismatch(ValueError):
    """A release file does not have the shape this version of nb2prod writes."""

    def __init__(self, path: Path | str, error: ValidationError | ValueError) -> None:
        if isinstance(error, ValidationError):
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            detail = f"field `{where}`: {first['msg']}"
        else:
            detail = str(error)
        super().__init__(
            f"{path}: {detail} (written by another nb2prod version, or edited by hand?)"
        )
        self.path = str(path)


def load(model: type[M], path: Path) -> M:
    """``path`` parsed as ``model``; :class:`SchemaMismatch` names the file and the field."""
    try:
        return model.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise SchemaMismatch(path, exc) from None


def dump(value: Frozen) -> dict[str, Any]:
    """The JSON data of ``value`` (by alias), ready for a sorted, indented file."""
    data: dict[str, Any] = json.loads(value.model_dump_json(by_alias=True))
    return data


# ---------------------------------------------------------------- release.json


class Replaced(Frozen):
    """The release a ``--replace`` overwrote: enough to tell what was lost."""

    release_sha256: str  # sha256 of its release.json
    bento_tag: str
    notebook_sha256: str
    created_at: str


class ReleaseManifest(Frozen):
    """release.json: what the release is, what made it, and the sha256 of every other file."""

    name: str
    version: str
    bento_tag: str
    created_at: str
    git_commit: str | None
    git_dirty: bool | None
    notebook: str
    notebook_sha256: str
    parameters: dict[str, Any]
    config: str | None  # where the configuration came from
    gates_enforced: bool
    python_version: str
    nb2prod_version: str
    bentoml_version: str | None
    cache_key: str
    reused: tuple[str, ...]  # stages taken from the run cache
    allow_drift: bool
    allow_breaking: bool
    contract_verdict: str
    model_fingerprint: str  # what the model is, whatever bytes its serializer wrote this time
    contract_sha256: str
    drift: tuple[dict[str, Any], ...]
    replaced: Replaced | None = None
    files: dict[str, str]  # relative path -> sha256


# ---------------------------------------------------------------- model/model.json


class ModelManifest(Frozen):
    """How the model is stored: the safest format that round-tripped, and its sha256."""

    file: str
    format: Literal["skops", "cloudpickle", "joblib"]
    trusted: tuple[str, ...] = ()  # skops: the non-default types loading may construct
    why: str
    sha256: str
    cls: str = Field(alias="class")  # the fitted object's module.qualname
    variable: str


# ---------------------------------------------------------------- service/monitoring.json


class OutputMetric(Frozen):
    """How /metrics shows one Output field: counted by value, or in a histogram."""

    kind: Literal["categorical", "numeric"]
    values: tuple[str, ...] = ()  # categorical: the labels known in advance
    buckets: tuple[float, ...] | None = None  # numeric: None means the default buckets


class FieldReference(Frozen):
    """The reference distribution of one Input field, for drift scores."""

    kind: Literal["numeric", "categorical"]
    edges: tuple[float, ...] = ()  # numeric: quantile bin edges
    categories: tuple[str, ...] = ()  # categorical: the values seen
    expected: tuple[float, ...]  # share of the reference in each bin / category


class DriftReference(Frozen):
    """Per Input field reference statistics, or why there are none."""

    window: int
    source: str | None = None
    rows: int = 0
    fields: dict[str, FieldReference] = Field(default_factory=dict)
    skipped: dict[str, str] = Field(default_factory=dict)
    unavailable: str | None = None


class Batching(Frozen):
    enabled: bool
    why: str


class MonitoringPlan(Frozen):
    """What the served model is watched with (service/monitoring.json)."""

    sensitive: tuple[str, ...]  # contract fields always redacted from logs, never labels
    outputs: dict[str, OutputMetric]
    drift: DriftReference
    batching: Batching


# ---------------------------------------------------------------- service/metadata.json


class CircuitBreakerSettings(Frozen):
    failures: int
    reset_s: float


class FallbackSummary(Frozen):
    available: bool
    timeout_ms: int | None
    min_confidence: float | None
    circuit_breaker: CircuitBreakerSettings


class ReleaseInfo(Frozen):
    """What ``GET /v1/metadata`` answers (with the bento tag added by the server)."""

    name: str
    version: str
    owner: str | None
    git_commit: str | None
    notebook_sha256: str
    contract_sha256: str
    model_sha256: str
    evaluation: dict[str, Any]  # the evaluation summary (evaluation/report.json has the rest)
    auth: Literal["token", "none"]
    fallback: FallbackSummary


class ServiceSettings(Frozen):
    """The release-specific switches of the generated service."""

    workers: int
    batching_max_size: int
    max_batch_rows: int
    log_bodies: bool
    disable_file: str  # the kill-switch file, unless NB2PROD_DISABLE_FILE says otherwise


class RuntimeManifest(Frozen):
    """The copy of nb2prod's serving runtime in ``service/runtime/``: version and file hashes."""

    nb2prod_version: str
    files: dict[str, str]  # path relative to service/runtime -> sha256


class ServiceMetadata(Frozen):
    """service/metadata.json: everything the service reads at start besides the model."""

    release: ReleaseInfo
    service: ServiceSettings
    runtime: RuntimeManifest
