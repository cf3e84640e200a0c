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

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


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


class Serving(Frozen):
    """What ``verify`` measured of the served release (sizes deploy/'s probes and memory)."""

    cold_start_s: float | None  # start of `bentoml serve` to /readyz answering
    memory_bytes: int | None  # PSS of the server's processes after answering every example


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
    serving: Serving | None = None  # None in releases made before nb2prod measured it
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
    # largest request body in bytes (413 above it); None in releases made before the limit
    max_body_bytes: int | None = None
    # how request bodies' JSON types are read; releases made before "strict" were "lax"
    input_types: Literal["strict", "lax"] = "lax"


class RuntimeManifest(Frozen):
    """The copy of nb2prod's serving runtime in ``service/runtime/``: version and file hashes."""

    nb2prod_version: str
    files: dict[str, str]  # path relative to service/runtime -> sha256


class ServiceMetadata(Frozen):
    """service/metadata.json: everything the service reads at start besides the model."""

    release: ReleaseInfo
    service: ServiceSettings
    runtime: RuntimeManifest


# ---------------------------------------------------------------- the kernel probe (package time)
# nb2prod.probe runs inside the notebook's kernel after the notebook: the host hands it a
# ProbePlan (serialised into the one injected cell) and reads back a ProbeResult (probe.json)
# or a ProbeFailure (probe-failure.json) from the plan's out_dir. Not files of a release.


class InferPlan(Frozen):
    """No contract cell: Input is inferred from the examples and, if named, the training data."""

    training_data: str | None  # [contract] training_data
    margin: float
    max_categories: int


class EvaluationPlan(Frozen):
    """[evaluation]: the held-out variables the notebook leaves, and how to score them."""

    eval_x: str
    eval_y: str
    slices: tuple[str, ...] = ()
    task: Literal["auto", "classification", "regression"] = "auto"
    output_field: str | None = None  # the Output field compared with eval_y; default: the first


class ReferencePlan(Frozen):
    """Which variable holds the drift reference ([monitoring] reference or a default)."""

    variable: str
    explicit: bool  # named by [monitoring] reference: a problem with it is an error
    bins: int
    key: str = "[monitoring] reference"  # the config key that named the variable, for messages


class ArtifactRef(Frozen):
    """A value service code reads from a train, model or untagged cell (``nb2prod check``: NB202)."""

    name: str
    cell: int
    label: str  # the defining cell's label, for messages
    role: str  # train, model, untagged or parameters
    read_by: tuple[str, ...]  # "preprocess (cell 7)", ...


class ArtifactPlan(Frozen):
    """[artifacts]: which values to export, and what looks like training data."""

    refs: tuple[ArtifactRef, ...] = ()
    max_rows: int = 1000
    allow: tuple[str, ...] = ()


class RobustnessPlan(Frozen):
    """The contract probe: how many random inputs, in what batches, how equal is equal."""

    inputs: int = 200  # random instances of Input's JSON Schema, besides the boundary inputs
    seed: int = 0  # fixed, so the same contract gives the same inputs
    batch_size: int = 16
    tolerance: float = 0.0  # [service] batching_tolerance: largest |alone - batch| for numbers
    input_types: Literal["strict", "lax"] = "strict"  # [service] input_types: as the service reads
    budget_s: float = 60.0  # answering inputs alone stops after this long (the report says)


class ProbePlan(Frozen):
    """What the probe is told: where things are and which names to look for."""

    out_dir: str
    pipeline_file: str  # the rendered service/pipeline.py, the very file the service imports
    model_variable: str
    model_cell: str  # the model cell's label, for messages
    cell_labels: dict[int, str] = Field(default_factory=dict)  # notebook index -> label
    has_fallback: bool
    modules: tuple[str, ...]  # top-level modules the service code imports
    predict_cell: str  # the predict cell's label, or nb2prod's default predict
    default_output_field: str | None = None  # no postprocess cell: each raw item fills this field
    infer: InferPlan | None = None
    evaluation: EvaluationPlan | None = None
    reference: ReferencePlan | None = None
    artifacts: ArtifactPlan = ArtifactPlan()
    robustness: RobustnessPlan = RobustnessPlan()


class ProbeFailure(Frozen):
    """What the user must change, when the probe could not finish."""

    message: str
    hint: str | None = None


class StoredObject(Frozen):
    """How an object was written: the safest format that round-tripped (skops, cloudpickle, joblib)."""

    file: str  # relative to the probe's out_dir (and to the release's model/)
    format: Literal["skops", "cloudpickle", "joblib"]
    trusted: tuple[str, ...] = ()  # skops: the non-default types loading may construct
    why: str  # why this format, for model.json and the runbook


class ArtifactManifest(Frozen):
    """One stored piece of fitted state: loaded (sha256 checked) into the pipeline module's
    namespace before the first request, under ``name``."""

    name: str
    file: str  # relative to model/
    format: Literal["skops", "cloudpickle", "joblib"]
    trusted: tuple[str, ...] = ()
    why: str
    sha256: str
    size: int  # bytes
    cell: int  # the notebook cell that defines it
    role: str
    read_by: tuple[str, ...]


ModelManifest.model_rebuild()  # its artifacts are defined above


class ProbeExample(Frozen):
    """One example: the Input, the pipeline's Output, and the fallback's Output (if any)."""

    index: int
    input: dict[str, Any]
    output: dict[str, Any]
    fallback_output: dict[str, Any] | None = None


class InferredFrom(Frozen):
    """What an inferred contract was inferred from (contract.json records it)."""

    examples: int
    training_data: str | None
    rows: int
    margin: float


class Holdout(Frozen):
    """The model and a trivial baseline scored on the held-out data ([evaluation])."""

    task: Literal["classification", "regression"]
    rows: int
    eval_x: str
    eval_y: str
    path: str = ""  # how the predictions were made: the service's way, or the notebook's predict
    outputs: int = 1  # a multi-output model's figures are averaged over its outputs
    baseline_name: str
    model: dict[str, float]
    baseline: dict[str, float]
    labels: tuple[str, ...] | None = None  # classification: the confusion matrix's order
    confusion: tuple[tuple[int, ...], ...] | None = None
    residuals: tuple[tuple[float, float], ...] | None = None  # regression: (predicted, residual)
    # column -> value -> {"rows": n, metric: value, ...}
    slices: dict[str, dict[str, dict[str, float | int]]] = Field(default_factory=dict)


class LatencySamples(Frozen):
    """Raw timings of one batch size: the whole serving path and the model's predict alone."""

    pipeline_ms: tuple[float, ...]
    model_ms: tuple[float, ...]


class ReferenceStats(Frozen):
    """Per Input field reference statistics for drift scores, or why there are none."""

    source: str | None = None
    rows: int = 0
    fields: dict[str, FieldReference] = Field(default_factory=dict)
    skipped: dict[str, str] = Field(default_factory=dict)
    unavailable: str | None = None


class RobustnessFailure(Frozen):
    """An input the contract admits that the pipeline could not answer."""

    input: dict[str, Any]
    error: str  # the exception, and where in the notebook it was raised
    cell: str | None  # the notebook cell (or nb2prod default) whose code raised it


class BatchDifference(Frozen):
    """The first input answered differently in a batch than alone."""

    index: int  # among the inputs tested
    input: dict[str, Any]
    field: str  # the Output field (a path such as `scores[1]`), empty when one side failed
    single: Any
    batch: Any
    difference: float | None  # for numbers: |single - batch|
    note: str = ""  # what happened when it is not a difference of values


class Robustness(Frozen):
    """The contract probe's figures (evaluation/report.json `robustness`)."""

    generated: int  # inputs made: examples, boundary values, random instances
    admitted: int  # of those, valid Inputs
    tested: int  # answered alone within the time budget
    answered: int  # with a valid Output
    share: float  # answered / tested: the `robustness` gate
    fallback_answered: int | None  # of the failures, how many the fallback answers (None: none)
    smallest_failure: RobustnessFailure | None
    exceptions: dict[str, int]  # exception type -> count
    batch_size: int
    tolerance: float
    batch_agrees: bool  # every batch answered as its items alone: batching may be switched on
    first_difference: BatchDifference | None
    budget_s: float
    exhausted: bool  # the time budget ran out before every admitted input was tested
    random_note: str | None = None  # why no random inputs were generated


class ProbeResult(Frozen):
    """Everything the release needs from the kernel (probe.json)."""

    model: StoredObject
    artifacts: tuple[ArtifactManifest, ...] = ()
    model_class: str  # the fitted object's module.qualname
    examples: tuple[ProbeExample, ...]
    metrics: dict[str, float] | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    output_fields: tuple[str, ...]
    requirements: dict[str, str]  # distribution -> version the notebook ran with
    unresolved_modules: tuple[str, ...]  # imported, but provided by no installed distribution
    installed: dict[str, str]  # every distribution in the kernel -> version
    python_version: str
    inferred_contract: str | None = None  # pydantic source of Input and Output, when inferred
    inferred_from: InferredFrom | None = None
    holdout: Holdout | None = None
    latency: dict[str, LatencySamples] = Field(default_factory=dict)  # batch size -> samples
    reference: ReferenceStats | None = None
    robustness: Robustness | None = None  # the contract probe; batching follows its verdict


# ---------------------------------------------------------------- [slo] (monitoring.json, deploy/)


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
