"""The host side of the kernel probe: the plan it is given, and what it found.

:func:`probe_plan` builds the :class:`~nb2prod.probe.protocol.ProbePlan` from what the earlier
stages know; :func:`probe_cell_source` is the one cell appended to the notebook, a call into
:mod:`nb2prod.probe` with the plan serialised; :func:`read_capture` reads the probe's result
back (``schema.load``, so a mismatch names the file and the field) as a :class:`Capture`, or
raises :class:`CaptureError` with what the user must change.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..errors import CaptureError
from ..notebook.annotations import AnnotatedNotebook, Role
from ..notebook.config import Config
from ..notebook.extract import Extraction
from ..probe import FAILURE_FILE, RESULT_FILE, TRACEBACK_FILE
from ..probe.artifacts import human_size
from ..probe.protocol import (
    ArtifactPlan,
    ArtifactRef,
    EvaluationPlan,
    InferPlan,
    ProbeFailure,
    ProbePlan,
    ProbeResult,
    ReferencePlan,
    RobustnessPlan,
)
from ..runtime.schema import ArtifactManifest, SchemaMismatch, load

CAPTURE_TAG = "nb2prod-capture"


@functools.cache
def probe_code_sha256() -> str:
    """What the kernel collects changes with the probe's code and the runtime it runs (part of
    the run cache key; computed on first use, not whenever this module is imported)."""
    digest = hashlib.sha256()
    for package in ("probe", "runtime"):
        root = files(f"{__name__.partition('.')[0]}.{package}")
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                digest.update(entry.name.encode() + b"\0" + entry.read_bytes())
    return digest.hexdigest()


def probe_plan(
    *,
    out_dir: Path,
    pipeline_file: Path,
    notebook: AnnotatedNotebook,
    extraction: Extraction,
    config: Config,
) -> ProbePlan:
    """What the probe must look for, from the notebook, its extraction and the config."""
    evaluation = config.evaluation
    return ProbePlan(
        out_dir=str(out_dir),
        pipeline_file=str(pipeline_file),
        model_variable=notebook.model_variable,
        model_cell=notebook.with_role(Role.MODEL)[0].label,
        cell_labels={c.index: c.label for c in notebook.cells},
        has_fallback=extraction.has_fallback,
        modules=extraction.imports,
        predict_cell=notebook.with_role(Role.PREDICT)[0].label
        if notebook.has_role(Role.PREDICT)
        else "nb2prod's default predict (`model.predict(features)`)",
        default_output_field=extraction.default_output_field,
        infer=InferPlan(**config.contract.model_dump()) if extraction.infer_contract else None,
        evaluation=EvaluationPlan(
            eval_x=evaluation.eval_x,
            eval_y=evaluation.eval_y,
            slices=tuple(evaluation.slices),
            task=evaluation.task,
            output_field=evaluation.output_field,
            probability_field=evaluation.probability_field,
        ),
        reference=_reference_plan(config),
        artifacts=ArtifactPlan(
            refs=tuple(
                ArtifactRef(
                    name=value.name,
                    cell=value.cell.index,
                    label=value.cell.label,
                    role=value.role,
                    read_by=tuple(f"{c.role} (cell {c.index})" for c in value.read_by),
                    reads=value.reads,
                )
                for value in extraction.artifacts
            ),
            max_rows=config.artifacts.max_rows,
            warn_rows=config.artifacts.warn_rows,
            allow=tuple(config.artifacts.allow),
        ),
        robustness=RobustnessPlan(
            tolerance=config.service.batching_tolerance, input_types=config.service.input_types
        ),
    )


def _reference_plan(config: Config) -> ReferencePlan:
    """[monitoring] reference, else the training or evaluation data the config already names
    (missing or unusable then only skips drift)."""
    explicit = config.monitoring.reference
    named = [
        ("[monitoring] reference", explicit),
        ("[contract] training_data", config.contract.training_data),
        ("[evaluation] eval_x", config.evaluation.eval_x),
    ]
    key, variable = next((k, v) for k, v in named if v)
    return ReferencePlan(
        variable=variable, explicit=explicit is not None, bins=config.monitoring.bins, key=key
    )


def probe_cell_source(plan: ProbePlan) -> str:
    """The one cell appended to the notebook: a call into nb2prod.probe with the plan."""
    return (
        "# nb2prod: the package-time probe runs the extracted service code (nb2prod.probe)\n"
        "from nb2prod.probe import run as _nb2prod_probe\n\n"
        f"_nb2prod_probe(globals(), {plan.model_dump_json()!r})\n"
    )


@dataclass(frozen=True)
class SerializedModel:
    """Where the stored model is on this machine, and how it was stored."""

    file: Path
    format: str
    trusted: tuple[str, ...]
    why: str
    estimators: tuple[str, ...] | None = None  # skops: the scikit-learn estimators in the file


@dataclass(frozen=True)
class ExportedArtifact:
    """A stored piece of fitted state: its manifest entry and where its file is on this machine."""

    manifest: ArtifactManifest
    path: Path

    def describe(self) -> str:
        return describe_artifact(self.manifest)


def describe_artifact(m: ArtifactManifest) -> str:
    """``cell 28 (train) defines `encode`, read by preprocess (cell 30): exported, 4.1 KB``."""
    return (
        f"cell {m.cell} ({m.role}) defines `{m.name}`, read by {' and '.join(m.read_by)}: "
        f"exported, {human_size(m.size)} ({m.format})"
    )


def release_fitted_state(target: str) -> list[str]:
    """The fitted state a release (directory, one of its files, or bento tag) carries, described;
    empty when the target is not a release (a contract.json on its own)."""
    from ..errors import TargetError
    from ..release.reader import resolve

    try:
        manifest = resolve(target).model
    except TargetError:
        return []
    return [describe_artifact(a) for a in manifest.artifacts]


@dataclass(frozen=True)
class Capture:
    """What the probe found in the kernel (``result``, as it wrote it) and where its files are."""

    result: ProbeResult
    out_dir: Path

    @property
    def model(self) -> SerializedModel:
        stored = self.result.model
        return SerializedModel(
            self.out_dir / stored.file, stored.format, stored.trusted, stored.why,
            stored.estimators,
        )  # fmt: skip

    @property
    def artifacts(self) -> tuple[ExportedArtifact, ...]:
        """Fitted state, stored beside the model."""
        return tuple(ExportedArtifact(a, self.out_dir / a.file) for a in self.result.artifacts)


def read_failure(out_dir: Path) -> CaptureError | None:
    """The probe's failure as the error to raise, if it failed."""
    path = out_dir / FAILURE_FILE
    if not path.is_file():
        return None
    failure = _load(ProbeFailure, path)
    return CaptureError(failure.message, hint=failure.hint)


def traceback_file(out_dir: Path) -> Path | None:
    """The traceback of an unexpected failure inside the probe (a bug in nb2prod), if any."""
    path = out_dir / TRACEBACK_FILE
    return path if path.is_file() else None


def read_capture(out_dir: Path) -> Capture:
    failure = read_failure(out_dir)
    if failure is not None:
        raise failure
    path = out_dir / RESULT_FILE
    if not path.is_file():
        raise CaptureError("the notebook ran, but nb2prod's probe wrote nothing")
    return Capture(_load(ProbeResult, path), out_dir)


def _load(model: type[Any], path: Path) -> Any:
    try:
        return load(model, path)
    except SchemaMismatch as exc:
        raise CaptureError(
            str(exc), hint="The probe and the host are different nb2prod versions; reinstall it."
        ) from None
