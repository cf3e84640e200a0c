"""Stage 7, write: the release's files, from the typed results of the stages before it.

``run.py`` runs the stages; this module turns what they found (:class:`ReleaseFacts`) into the
files of SPEC section 5 inside the staging directory. Every byte goes through
:class:`~nb2prod.release.Staging`, the only code that writes a release. ``release.json`` and
``openapi.json`` (and deploy/'s Kubernetes, Helm and KServe files) come later, after the
bento is built and verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import nbformat

from ..adapters.git import GitState
from ..notebook.annotations import AnnotatedNotebook
from ..notebook.config import Config
from ..notebook.extract import Extraction
from ..ops.monitoring import monitoring_plan
from ..ops.observability import observability_files
from ..ops.slo import observed
from ..progress import Progress
from ..release.reader import PreviousRelease
from ..release.review import ContractDiff
from ..release.writer import Staging, sha256_bytes, sha256_file
from ..runtime.schema import (
    FallbackSummary,
    ModelManifest,
    ReleaseInfo,
    ReleaseManifest,
    Replaced,
    RuntimeManifest,
    ServiceMetadata,
    ServiceSettings,
    Serving,
    dump,
)
from ..version import __version__
from .capture import Capture
from .contract import Contract
from .evaluate import Evaluation
from .execute import Execution
from .lock import Lock
from .render import (
    RUNTIME_DIR,
    SERVICE_DIR,
    ModelContext,
    class_name,
    render_release,
    runtime_files,
)
from .report import render_reports

if TYPE_CHECKING:
    from .parse import Parsed


@dataclass(frozen=True)
class ReleaseFacts:
    """Everything the earlier stages established that a release file records."""

    parsed: Parsed
    notebook_sha256: str
    execution: Execution
    evaluation: Evaluation
    contract: Contract
    contract_diff: ContractDiff
    baseline: PreviousRelease | None
    allow_breaking: bool
    lock: Lock
    git: GitState
    model_fingerprint: str

    @property
    def capture(self) -> Capture:
        return self.execution.capture

    @property
    def name(self) -> str:
        return self.parsed.name

    @property
    def config(self) -> Config:
        return self.parsed.config

    @property
    def notebook(self) -> AnnotatedNotebook:
        return self.parsed.notebook

    @property
    def notebook_name(self) -> str:
        return self.parsed.notebook.path.name

    @property
    def extraction(self) -> Extraction:
        return self.parsed.extraction


def write_release(staging: Staging, facts: ReleaseFacts, progress: Progress) -> None:
    """The service project, runbook, model, contract, examples, reports, lock, monitoring,
    metadata and bentofile: every file but openapi.json and release.json (known after the build)."""
    model = facts.capture.model
    # rendered once, now that the model's format (the runbook says) and, without a contract
    # cell, the inferred contract (pipeline.py puts it ahead of the cells, where the kernel ran it)
    # are known
    staging.write_tree(
        render_release(
            replace(
                facts.parsed.context,
                model=ModelContext(model.file.name, model.format, model.why, model.trusted),
                inferred_contract=facts.capture.result.inferred_contract,
            )
        )
    )
    if facts.capture.result.inferred_contract:
        staging.write_bytes("contract.inferred.py", facts.capture.result.inferred_contract.encode())
        progress.note(
            "warning: no contract cell; Input and Output were inferred: review "
            "contract.inferred.py and adopt it as a contract cell"
        )
    model_sha256 = sha256_file(model.file)
    staging.copy(f"model/{model.file.name}", model.file)
    for artifact in facts.capture.artifacts:
        staging.copy(f"model/{artifact.manifest.file}", artifact.path)
        progress.note(f"fitted state: {artifact.describe()}")
    staging.write_json(
        "model/model.json",
        dump(
            ModelManifest(
                file=model.file.name,
                format=model.format,
                trusted=model.trusted,
                why=model.why,
                sha256=model_sha256,
                cls=facts.capture.result.model_class,
                variable=facts.notebook.model_variable,
                artifacts=tuple(a.manifest for a in facts.capture.artifacts),
            )
        ),
    )
    staging.write_json("contract.json", facts.contract.to_json())
    staging.write_json(
        "contract.diff.json",
        {
            "against": {"version": facts.baseline.version, "release": facts.baseline.directory}
            if facts.baseline
            else None,
            "allow_breaking": facts.allow_breaking,
            **facts.contract_diff.to_json(),
        },
    )
    staging.write_json(
        "examples.json",
        {
            "generated_by": f"nb2prod {__version__} from {facts.notebook_name}",
            "examples": [
                {
                    "index": e.index,
                    "input": dict(e.input),
                    "output": dict(e.output),
                    "fallback_output": e.fallback_output,
                }
                for e in facts.capture.result.examples
            ],
        },
    )
    staging.write_tree(
        render_reports(
            facts.evaluation,
            name=facts.name,
            version=facts.config.version,
            notebook=facts.notebook_name,
            node=facts.notebook.node,
            config=facts.config,
            contract=facts.contract,
            model_class=facts.capture.result.model_class,
            model_format=model.format,
            training_data={"name": inferred.training_data, "rows": inferred.rows}
            if (inferred := facts.capture.result.inferred_from) and inferred.training_data
            else None,
            artifacts=[a.describe() for a in facts.capture.artifacts],
        )
    )
    staging.write_bytes("requirements.lock", facts.lock.text.encode())
    monitoring = monitoring_plan(facts.capture.result, facts.config)
    staging.write_json(f"{SERVICE_DIR}/monitoring.json", dump(monitoring))
    # deploy/: alerting rules, Grafana dashboard, locustfile (nb2prod.observability)
    staging.write_tree(
        observability_files(
            observed(
                facts.name,
                facts.config.version,
                monitoring,
                facts.contract.input_schema,
                tuple(e.input for e in facts.capture.result.examples),
            )
        )
    )
    drift, batching = monitoring.drift, monitoring.batching
    progress.note(
        f"monitoring: drift reference {drift.source} ({drift.rows} rows, "
        f"{len(drift.fields)} fields); batching {batching.why}"
        if drift.unavailable is None
        else f"monitoring: no drift scores ({drift.unavailable}); batching {batching.why}"
    )
    staging.write_bytes(
        "notebook.executed.ipynb", nbformat.writes(facts.execution.executed).encode()
    )
    service = facts.config.service
    staging.write_json(
        f"{SERVICE_DIR}/metadata.json",
        dump(
            ServiceMetadata(
                release=ReleaseInfo(
                    name=facts.name,
                    version=facts.config.version,
                    owner=facts.config.owner,
                    git_commit=facts.git.commit,
                    notebook_sha256=facts.notebook_sha256,
                    contract_sha256=facts.contract.sha256,
                    model_sha256=model_sha256,
                    evaluation=facts.evaluation.summary(),
                    auth=service.auth,
                    fallback=FallbackSummary(
                        available=facts.extraction.has_fallback,
                        **facts.config.fallback.model_dump(),
                    ),
                ),
                service=ServiceSettings(
                    workers=service.workers,
                    batching_max_size=service.max_batch_size,
                    max_batch_rows=service.max_batch_rows,
                    log_bodies=service.log_bodies,
                    disable_file=facts.parsed.context.disable_file,
                    max_body_bytes=service.body_limit,
                    input_types=service.input_types,
                ),
                runtime=RuntimeManifest(
                    nb2prod_version=__version__,
                    files={name: sha256_bytes(data) for name, data in runtime_files().items()},
                ),
            )
        ),
    )
    labels = {
        "nb2prod.name": facts.name,
        "nb2prod.version": facts.config.version,
        "nb2prod.owner": facts.config.owner or "",
        "nb2prod.git-commit": facts.git.commit or "",
        "nb2prod.notebook-sha256": facts.notebook_sha256,
        "nb2prod.contract-sha256": facts.contract.sha256,
    }
    staging.write_yaml(
        f"{SERVICE_DIR}/bentofile.yaml",
        bentofile(facts.name, facts.config.version, labels),
        header=f"# bentofile: generated by nb2prod {__version__}; build context is the "
        "release directory\n",
    )


def bentofile(name: str, version: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {
        "service": f"{SERVICE_DIR}.service:{class_name(name)}",
        "name": name,
        "description": f"{name} {version}, packaged by nb2prod {__version__}",
        "labels": dict(labels),
        "include": [
            f"{SERVICE_DIR}/*.py",
            f"{RUNTIME_DIR}/*.py",
            f"{SERVICE_DIR}/metadata.json",
            f"{SERVICE_DIR}/monitoring.json",
            "model/*",
            "model/artifacts/*",
            "contract.json",
            "examples.json",
            "evaluation/*",
        ],
        "python": {"requirements_txt": "requirements.lock", "lock_packages": False},
        "docker": {"python_version": "3.11"},
    }


def release_manifest(
    facts: ReleaseFacts,
    request: Any,
    key: str,
    tag: str,
    *,
    cached: bool,
    staging: Staging,
    replaced: Replaced | None,
    serving: Serving,
) -> dict[str, Any]:
    """release.json: written last, with the sha256 of every other file of the release."""
    return dump(
        ReleaseManifest(
            name=facts.name,
            version=facts.config.version,
            bento_tag=tag,
            created_at=datetime.now(UTC).replace(microsecond=0).isoformat(),
            git_commit=facts.git.commit,
            git_dirty=facts.git.dirty,
            notebook=facts.notebook_name,
            notebook_sha256=facts.notebook_sha256,
            parameters=dict(request.parameters),
            config=facts.parsed.config_source,
            gates_enforced=request.enforce_gates,
            python_version=facts.capture.result.python_version,
            nb2prod_version=__version__,
            bentoml_version=facts.capture.result.installed.get("bentoml"),
            cache_key=key,
            reused=("execution", "lock") if cached else (),
            allow_drift=request.allow_drift,
            allow_breaking=request.allow_breaking,
            contract_verdict=facts.contract_diff.verdict,
            model_fingerprint=facts.model_fingerprint,
            contract_sha256=facts.contract.sha256,
            drift=tuple(vars(d) for d in facts.lock.drift),
            replaced=replaced,
            serving=serving,
            files=staging.hashes(),
        )
    )
