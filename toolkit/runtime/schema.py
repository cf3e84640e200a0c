"""The JSON files a served release reads, as typed models: model.json, metadata.json, monitoring.json.

Every file nb2prod writes and later reads back is a frozen model (``extra="forbid"``), written
with :func:`dump` and read with :func:`load`. A file written by another version of nb2prod that
does not fit fails with :class:`SchemaMismatch`, naming the file and the field. Only what the
serving runtime itself reads lives here, because every release carries this module: the kernel
probe's protocol is :mod:`nb2prod.probe.protocol`, release.json and examples.json (read by nb2prod,
never by a bento) are :mod:`nb2prod.release.manifest`. Pydantic only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


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


# ---------------------------------------------------------------- model/model.json


class ArtifactManifest(Frozen):
    """One stored piece of fitted state: loaded (sha256 checked) into the pipeline module's
    namespace before the first request, under ``name``."""

    name: str
    file: str  # relative to model/
    format: Literal["skops", "cloudpickle", "joblib"]
    trusted: tuple[str, ...] = ()
    estimators: tuple[str, ...] | None = None  # as ModelManifest's
    why: str
    sha256: str
    size: int  # bytes
    cell: int  # the notebook cell that defines it
    role: str
    read_by: tuple[str, ...]


class ModelManifest(Frozen):
    """How the model is stored: the safest format that round-tripped, and its sha256."""

    file: str
    format: Literal["skops", "cloudpickle", "joblib"]
    trusted: tuple[str, ...] = ()  # skops: the non-default types loading may construct
    # skops: the scikit-learn estimators in the file (trusted by default), recorded so that the
    # service need not import all of scikit-learn to list them; None: not recorded (older)
    estimators: tuple[str, ...] | None = None
    why: str
    sha256: str
    cls: str = Field(alias="class")  # the fitted object's module.qualname
    variable: str
    artifacts: tuple[ArtifactManifest, ...] = ()  # fitted state the service code reads


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
    enabled: bool  # adaptive batching: concurrent /v1/predict requests share a model call
    why: str
    # the contract probe saw a batch answered differently from its items alone: /v1/predict_batch
    # and batch scoring answer each item on its own, so every route gives /v1/predict's answer
    items_alone: bool = False


class ServiceLevels(Frozen):
    """The service level objectives of ``[slo]``: what the alerts, the dashboard and
    ``nb2prod loadtest`` hold the served model to. Every key has a documented default."""

    p95_ms: float = Field(300.0, gt=0)  # 95% of /v1/predict requests answer within this
    p99_ms: float = Field(1000.0, gt=0)  # 99% of them within this
    error_rate: float = Field(0.01, ge=0, lt=1)  # most requests that may fail (5xx, no answer)
    availability: float = Field(0.999, gt=0, le=1)  # least share answered without a 5xx (30 days)
    fallback_rate: float = Field(0.05, ge=0, le=1)  # most requests the fallback may answer
    max_drift_psi: float = Field(0.25, gt=0)  # largest input drift score (PSI) tolerated
    expected_rps: float = Field(10.0, gt=0)  # the load the service is sized for (requests/s)

    @model_validator(mode="after")
    def _p99_not_below_p95(self) -> ServiceLevels:
        if self.p99_ms < self.p95_ms:
            raise ValueError(f"p99_ms ({self.p99_ms:g}) is below p95_ms ({self.p95_ms:g})")
        return self


class MonitoringPlan(Frozen):
    """What the served model is watched with (service/monitoring.json)."""

    sensitive: tuple[str, ...]  # contract fields always redacted from logs, never labels
    outputs: dict[str, OutputMetric]
    drift: DriftReference
    batching: Batching
    # the objectives the service's latency buckets are cut at (an older release has the defaults)
    slo: ServiceLevels = Field(default_factory=lambda: ServiceLevels())


# ---------------------------------------------------------------- service/metadata.json


class CircuitBreakerSettings(Frozen):
    failures: int
    reset_s: float


class FallbackSummary(Frozen):
    available: bool
    timeout_ms: int | None
    min_confidence: float | None
    circuit_breaker: CircuitBreakerSettings


OWNER_ROLES = ("model", "service", "data", "on_call")  # [owners], in the order cards list them


class Owners(Frozen):
    """Who answers for what (``[owners]``): each a team or a person, written as the config gives
    it. The config's single ``owner`` stands for ``model`` when ``model`` is unset."""

    model: str | None = Field(None, min_length=1)  # the model and its quality; retraining
    service: str | None = Field(None, min_length=1)  # the running service and its deployment
    data: str | None = Field(None, min_length=1)  # the training, reference and input data
    on_call: str | None = Field(None, min_length=1)  # who is paged: the alerts' `team` label
    # where RUNBOOK.md is published (the URL of the folder holding it): alerts link
    # <runbook_base_url>/RUNBOOK.md#<alert> instead of the relative RUNBOOK.md#<alert>
    runbook_base_url: str | None = None

    @field_validator("runbook_base_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+(/\S*)?$", value):
            raise ValueError(
                f"{value!r} is not an absolute http:// or https:// URL; write the URL of the "
                "folder RUNBOOK.md is published in, such as "
                '"https://git.example.com/team/models/-/blob/main/churn"'
            )
        return value.rstrip("/") if value is not None else None

    @property
    def team(self) -> str | None:
        """The alerts' ``team`` label: on call, else the service's owner, else the model's."""
        return self.on_call or self.service or self.model

    def roles(self) -> list[tuple[str, str]]:
        """(role, owner) of every role that has one, in :data:`OWNER_ROLES` order."""
        return [(role, who) for role in OWNER_ROLES if (who := getattr(self, role)) is not None]

    def runbook(self, anchor: str) -> str:
        """The link to a RUNBOOK.md section: absolute when a base URL is configured."""
        relative = f"RUNBOOK.md#{anchor}"
        return f"{self.runbook_base_url}/{relative}" if self.runbook_base_url else relative


class ReleaseInfo(Frozen):
    """What ``GET /v1/metadata`` answers (with the bento tag added by the server)."""

    name: str
    version: str
    owner: str | None  # the config's `owner`, as it was given (owners.model when that is unset)
    git_commit: str | None
    notebook_sha256: str
    contract_sha256: str
    model_sha256: str
    evaluation: dict[str, Any]  # the evaluation summary (evaluation/report.json has the rest)
    auth: Literal["token", "none"]
    fallback: FallbackSummary
    # [owners], with `owner` as the model's owner when [owners] model is unset (empty in a
    # release made before [owners])
    owners: Owners = Field(default_factory=lambda: Owners())


class RateLimit(Frozen):
    """``[service] rate_limit``: a token bucket per client (runtime/limits.py RateLimit)."""

    requests_per_s: float = Field(gt=0)  # the bucket refills at this rate
    burst: int = Field(ge=1)  # and holds at most this many requests
    # who a client is: "address" (the connection's peer), "forwarded" (the last address in
    # X-Forwarded-For, as a proxy in front of the service appends it; the peer without one) or
    # "token" (the bearer token; the address for requests without one)
    key: Literal["address", "forwarded", "token"] = "address"


class ServiceSettings(Frozen):
    """The release-specific switches of the generated service."""

    workers: int
    batching_max_size: int
    max_batch_rows: int
    log_bodies: bool
    disable_file: str  # the kill-switch file, unless NB2PROD_DISABLE_FILE says otherwise
    # largest request body in bytes (413 above it); None in releases made before the limit
    max_body_bytes: int | None = None
    # how request bodies' JSON types are read; releases made before "strict" were "lax"
    input_types: Literal["strict", "lax"] = "lax"
    rate_limit: RateLimit | None = None  # None: no limit (and in releases made before it)


class RuntimeManifest(Frozen):
    """The copy of nb2prod's serving runtime in ``service/runtime/``: version and file hashes."""

    nb2prod_version: str
    files: dict[str, str]  # path relative to service/runtime -> sha256


class ServiceMetadata(Frozen):
    """service/metadata.json: everything the service reads at start besides the model."""

    release: ReleaseInfo
    service: ServiceSettings
    runtime: RuntimeManifest
    # sha256 of every other file the bento carries (service code, monitoring.json, model, contract,
    # examples, evaluation), relative to the release directory; the runtime's are in `runtime`.
    # Checked before any worker starts, and by `nb2prod verify`/`serve` against release.json.
    files: dict[str, str] = {}

    def carried(self) -> dict[str, str]:
        """sha256 of every file the bento carries but metadata.json itself, relative to the
        release root: ``files`` and the runtime copy."""
        return {**self.files, **{f"service/runtime/{k}": v for k, v in self.runtime.files.items()}}
