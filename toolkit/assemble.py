"""Stage 7, write: the release's files, from the typed results of the stages before it.

``package.py`` runs the stages; this module turns what they found (:class:`ReleaseFacts`) into the
files of SPEC section 5 inside the staging directory. Every byte goes through
:class:`~toolkit.release.Staging`, the only code that writes a release. ``release.json`` and
``openapi.json`` come later, after the bento is built and verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import nbformat

from toolkit import __version__
from toolkit.adapters.git import GitState
from toolkit.capture import Capture
from toolkit.config import Config
from toolkit.contract import Contract
from toolkit.contract_review import ContractDiff
from toolkit.evaluate import Evaluation
from toolkit.execute import Execution
from toolkit.extract import Extraction
from toolkit.lock import Lock
from toolkit.monitoring import monitoring_plan
from toolkit.notebook import AnnotatedNotebook
from toolkit.progress import Progress
from toolkit.release import Staging, sha256_file
from toolkit.render import (
    RUNBOOK,
    SERVICE_DIR,
    ModelContext,
    ServiceContext,
    class_name,
    render_release,
)
from toolkit.report import render_reports
from toolkit.target import PreviousRelease


@dataclass(frozen=True)
class ReleaseFacts:
    """Everything the earlier stages established that a release file records."""

    name: str
    config: Config
    notebook: AnnotatedNotebook
    notebook_name: str
    notebook_sha256: str
    context: ServiceContext  # what the service was rendered with before the kernel ran
    rendered: Mapping[str, bytes]  # the files rendered then (the kernel used them)
    extraction: Extraction
    execution: Execution
    evaluation: Evaluation
    contract: Contract
    contract_diff: ContractDiff
    baseline: PreviousRelease | None
    allow_breaking: bool
    lock: Lock
    git: GitState

    @property
    def capture(self) -> Capture:
        return self.execution.capture


def write_release(staging: Staging, f: ReleaseFacts, progress: Progress) -> None:
    """Model, contract, examples, reports, lock, monitoring, metadata and bentofile."""
    model = f.capture.model
    # Known only now: how the model is stored (the runbook says) and, without a contract
    # cell, the inferred contract (pipeline.py gets it ahead of the cells, where the
    # kernel ran it). Nothing else may differ from what the kernel used.
    final = render_release(
        replace(
            f.context,
            model=ModelContext(model.file.name, model.format, model.why, model.trusted),
            inferred_contract=f.capture.inferred_contract,
        )
    )
    late = {RUNBOOK, f"{SERVICE_DIR}/pipeline.py"} if f.capture.inferred_contract else {RUNBOOK}
    assert {k: v for k, v in final.items() if k not in late} == {
        k: v for k, v in f.rendered.items() if k not in late
    }, "late facts changed files the kernel used"
    for relative in late:
        staging.write_bytes(relative, final[relative])
    if f.capture.inferred_contract:
        staging.write_bytes("contract.inferred.py", f.capture.inferred_contract.encode())
        progress.note(
            "warning: no contract cell; Input and Output were inferred: review "
            "contract.inferred.py and adopt it as a contract cell"
        )
    model_sha256 = sha256_file(model.file)
    staging.copy(f"model/{model.file.name}", model.file)
    staging.write_json(
        "model/model.json",
        {
            "file": model.file.name,
            "format": model.format,
            "trusted": list(model.trusted),
            "why": model.why,
            "sha256": model_sha256,
            "class": f.capture.model_class,
            "variable": f.notebook.model_variable,
        },
    )
    staging.write_json("contract.json", f.contract.to_json())
    staging.write_json(
        "contract.diff.json",
        {
            "against": {"version": f.baseline.version, "release": f.baseline.directory}
            if f.baseline
            else None,
            "allow_breaking": f.allow_breaking,
            **f.contract_diff.to_json(),
        },
    )
    staging.write_json(
        "examples.json",
        {
            "generated_by": f"nb2prod {__version__} from {f.notebook_name}",
            "examples": [
                {
                    "index": e.index,
                    "input": dict(e.input),
                    "output": dict(e.output),
                    "fallback_output": e.fallback_output,
                }
                for e in f.capture.examples
            ],
        },
    )
    staging.write_tree(
        render_reports(
            f.evaluation,
            name=f.name,
            version=f.config.version,
            notebook=f.notebook_name,
            node=f.notebook.node,
            config=f.config,
            contract=f.contract,
            model_class=f.capture.model_class,
            model_format=model.format,
            training_data={
                "name": f.capture.inferred_from["training_data"],
                "rows": f.capture.inferred_from["rows"],
            }
            if f.capture.inferred_from and f.capture.inferred_from.get("training_data")
            else None,
        )
    )
    staging.write_bytes("requirements.lock", f.lock.text.encode())
    monitoring = monitoring_plan(f.capture, f.config)
    staging.write_json(f"{SERVICE_DIR}/monitoring.json", monitoring)
    drift = monitoring["drift"]
    progress.note(
        f"monitoring: drift reference {drift['source']} ({drift['rows']} rows, "
        f"{len(drift['fields'])} fields); batching {monitoring['batching']['why']}"
        if "fields" in drift
        else f"monitoring: no drift scores ({drift['unavailable']}); "
        f"batching {monitoring['batching']['why']}"
    )
    staging.write_bytes("notebook.executed.ipynb", nbformat.writes(f.execution.executed).encode())
    staging.write_json(
        f"{SERVICE_DIR}/metadata.json",
        {
            "name": f.name,
            "version": f.config.version,
            "owner": f.config.owner,
            "git_commit": f.git.commit,
            "notebook_sha256": f.notebook_sha256,
            "contract_sha256": f.contract.sha256,
            "model_sha256": model_sha256,
            "evaluation": f.evaluation.summary(),
            "auth": f.config.service.auth,
            "fallback": {
                "available": f.extraction.has_fallback,
                **f.config.fallback.model_dump(),
            },
        },
    )
    labels = {
        "nb2prod.name": f.name,
        "nb2prod.version": f.config.version,
        "nb2prod.owner": f.config.owner or "",
        "nb2prod.git-commit": f.git.commit or "",
        "nb2prod.notebook-sha256": f.notebook_sha256,
        "nb2prod.contract-sha256": f.contract.sha256,
    }
    staging.write_yaml(
        f"{SERVICE_DIR}/bentofile.yaml",
        bentofile(f.name, f.config.version, labels),
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
            f"{SERVICE_DIR}/metadata.json",
            f"{SERVICE_DIR}/monitoring.json",
            "model/*",
            "contract.json",
            "examples.json",
            "evaluation/*",
        ],
        "python": {"requirements_txt": "requirements.lock", "lock_packages": False},
        "docker": {"python_version": "3.11"},
    }
