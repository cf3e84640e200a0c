"""The kernel probe's protocol: what the host tells the probe, and what the probe answers.

:mod:`nb2prod.probe` runs inside the notebook's kernel after the notebook: the host hands it a
:class:`ProbePlan` (serialised into the one injected cell) and reads back a :class:`ProbeResult`
(``probe.json``) or a :class:`ProbeFailure` (``probe-failure.json``) from the plan's ``out_dir``.
Frozen models on :class:`~nb2prod.runtime.schema.Frozen`, like the files of a release; none of
them is read by a served release, so none ships in one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ..runtime.schema import ArtifactManifest, FieldReference, Frozen

# ---------------------------------------------------------------- the plan (host -> kernel)


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
    probability_field: str | None = None  # the Output field with the probability; default: found


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
    # what the service takes from it (``train_X.columns``) when it reads only attributes of it
    reads: tuple[str, ...] = ()


class ArtifactPlan(Frozen):
    """[artifacts]: which values to export, and what looks like training data."""

    refs: tuple[ArtifactRef, ...] = ()
    max_rows: int = 1000
    warn_rows: int = 100
    allow: tuple[str, ...] = ()


class RobustnessPlan(Frozen):
    """The contract probe: how many random inputs, in what batches, how equal is equal."""

    inputs: int = 200  # random instances of Input's JSON Schema, besides the boundary inputs
    seed: int = 0  # fixed, so the same contract gives the same inputs
    batch_size: int = 16
    tolerance: float = 0.0  # [service] batching_tolerance: largest |alone - batch| for numbers
    input_types: Literal["strict", "lax"] = "strict"  # [service] input_types: as the service reads
    budget_s: float = 60.0  # answering inputs alone stops after this long (the report says)


class PregenPlan(Frozen):
    """Where the contract probe's random inputs, made in a process of their own while the notebook
    runs (:mod:`nb2prod.probe.pregen`), are found: ``file`` once the process holding an exclusive
    lock on ``lock`` has exited."""

    file: str
    lock: str


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
    pregenerated: PregenPlan | None = None  # the random inputs, made meanwhile (None: here)
    # the packager's view of this environment (probe/environment.py), written while the notebook
    # runs; the probe reads it instead of every distribution when it is there and applies
    environment_file: str | None = None


# ---------------------------------------------------------------- the answer (kernel -> host)


class ProbeFailure(Frozen):
    """What the user must change, when the probe could not finish."""

    message: str
    hint: str | None = None


class StoredObject(Frozen):
    """How an object was written: the safest format that round-tripped (skops, cloudpickle, joblib)."""

    file: str  # relative to the probe's out_dir (and to the release's model/)
    format: Literal["skops", "cloudpickle", "joblib"]
    trusted: tuple[str, ...] = ()  # skops: the non-default types loading may construct
    # skops: the scikit-learn estimators in the file, which skops trusts by default; the service
    # lists only these instead of all of scikit-learn's (runtime/model.py); None: not recorded
    estimators: tuple[str, ...] | None = None
    why: str  # why this format, for model.json and the runbook


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
    # metric -> what it was computed from ("Output.label", "Output.probability", predict's column)
    sources: dict[str, str] = Field(default_factory=dict)
    positive: str | None = None  # ROC AUC and log loss: the class the probability is of (repr)
    # the bounds of the threshold the labels follow on the probability: (above, up to]
    threshold: tuple[float, float] | None = None
    notes: tuple[str, ...] = ()  # how eval_y was read, the threshold, why no ROC AUC, ...


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
    # the input is the first example with only these fields changed, each needed for the failure
    fields: tuple[str, ...] = ()
    cause: str = ""  # those fields, what they make go wrong, and the bound to add


class BatchDifference(Frozen):
    """The first input answered differently in a batch than alone."""

    index: int  # among the inputs tested
    input: dict[str, Any]
    field: str  # the Output field (a path such as `scores[1]`), empty when one side failed
    single: Any
    batch: Any
    difference: float | None  # for numbers: |single - batch|
    note: str = ""  # what happened when it is not a difference of values
    cause: str = ""  # what preprocess made of the input alone that it did not in the batch
    fix: str = ""  # how to make preprocess treat a row the same whatever rows come with it


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
    # Input's fields in declared order (probe.json is written with sorted keys, and so are the
    # schemas in it; for a model fed a feature vector the order is the feature order)
    input_fields: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()  # what the packager should know but does not stop it
