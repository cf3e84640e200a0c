"""``nb2prod package``: one annotated notebook in, one verified release out (SPEC section 1).

:func:`package` reads like the job: parse, extract, render, execute, evaluate, contract, lock,
write, build, verify, commit. Stages pass frozen data to each other; only
:class:`nb2prod.release.Staging` writes the release, and it moves it into place only at the end.
"""

from __future__ import annotations

import ast
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.version import Version

from . import __version__
from .adapters import bento
from .adapters.git import git_state
from .analyse import check
from .assemble import ReleaseFacts, write_release
from .cache import RunCache, installed_distributions, run_key
from .capture import CapturePlan
from .config import Config, load_config
from .containerize import ContainerImage, ImageOptions, containerize
from .contract import Contract, build_contract
from .contract_review import ContractDiff, diff_contracts
from .errors import ContractError, Nb2ProdError, NotebookError, ParameterError
from .evaluate import evaluate
from .execute import Execution, execute
from .extract import extract
from .lock import lock_environment
from .notebook import AnnotatedNotebook, Role, read_notebook
from .progress import Progress, Silent, stage
from .release import RELEASE_JSON, Staging, sha256_file
from .render import (
    SERVICE_DIR,
    render_release,
    service_context,
)
from .target import PreviousRelease, Target, load_contract, previous_release
from .verify import check_release_files, raise_for_differences, verify_target


@dataclass(frozen=True)
class PackageRequest:
    notebook: Path
    config: Path | None = None
    out: Path | None = None
    parameters: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    enforce_gates: bool = True
    allow_drift: bool = False
    allow_breaking: bool = False
    use_cache: bool = True
    image: ImageOptions | None = None  # --containerize: build an OCI image of the release too


@dataclass(frozen=True)
class PackageResult:
    release_dir: Path
    bento_tag: str
    name: str
    version: str
    examples_verified: int
    cold_start_s: float
    up_to_date: bool = False  # the existing release was made from the same inputs; nothing redone
    image: ContainerImage | None = None  # with --containerize


def package(request: PackageRequest, progress: Progress | None = None) -> PackageResult:
    """The release of ``request.notebook`` and, with ``request.image``, its OCI image.

    The image is built from the committed release, exactly as ``nb2prod containerize`` would:
    a failed image build leaves the (complete, verified) release in place and says so."""
    progress = progress or Silent()
    result = _release(request, progress)
    if request.image is None:
        return result
    try:
        image = containerize(str(result.release_dir), request.image, progress)
    except Nb2ProdError as exc:
        raise type(exc)(
            f"{exc.message}\n(the release {result.release_dir} is complete and verified; "
            "only its image failed)",
            hint=(exc.hint + " " if exc.hint else "")
            + f"Retry with: nb2prod containerize {result.release_dir}",
        ) from exc
    return replace(result, image=image)


def _release(request: PackageRequest, progress: Progress) -> PackageResult:
    with stage(progress, "parse", str(request.notebook)) as s:
        notebook = read_notebook(request.notebook)
        loaded = load_config(request.notebook, request.config)
        config = loaded.config
        check_parameters(notebook, request.parameters)
        checked = check(notebook.node, notebook.path)
        if checked.errors:
            first, *more = checked.errors
            rest = "".join(f"\n  {f.render(notebook.path)}" for f in more[:20])
            raise NotebookError(
                first.render(notebook.path) + (f" (and {len(more)} more){rest}" if more else ""),
                hint="`nb2prod check` lists them; docs/check.md explains each code and its fix.",
                cell=checked.errors[0].cell,
            )
        for warning in checked.warnings:
            progress.note(f"warning: {warning.render(notebook.path)}")
        extraction = extract(notebook)
        name = config.service_name(request.notebook)
        s.detail = f"{len(notebook.cells)} code cells, {len(extraction.cells)} go into the service"
    if not extraction.has_fallback:
        progress.note(
            "warning: no `fallback` cell; when the model cannot answer, the service returns 503"
        )
    destination = request.out or Path("dist") / f"{name}-{config.version}"
    notebook_sha256 = sha256_file(request.notebook)
    key = run_key(
        notebook=request.notebook.read_bytes(),
        parameters=request.parameters,
        config=loaded.path.read_bytes() if loaded.path else None,
        installed=installed_distributions(),
        allow_drift=request.allow_drift,
    )
    if request.use_cache and (current := up_to_date(destination, key)) is not None:
        progress.note(
            f"reused: {destination} was made from the same notebook, parameters, config and "
            "packages, its files match release.json and its bento is in the store; nothing to do "
            "(--no-cache rebuilds it)"
        )
        return current
    cache = RunCache()
    cached = cache.load(key) if request.use_cache else None
    with Staging(destination) as staging, tempfile.TemporaryDirectory(prefix="nb2prod-") as tmp:
        scratch = Path(tmp)
        with stage(progress, "render", "service project and runbook from templates/release"):
            context = service_context(
                extraction=extraction,
                config=config,
                name=name,
                notebook=request.notebook.name,
                notebook_sha256=notebook_sha256,
                release_dir=str(destination),
                previous=previous_release(destination.parent, name, config.version),
            )
            rendered = render_release(context)
            staging.write_tree(rendered)
        how = "reusing the cached run" if cached else "papermill, top to bottom"
        with stage(progress, "execute", how) as s:
            capture_dir = scratch / "capture"
            capture_dir.mkdir()
            model_cell = notebook.with_role(Role.MODEL)[0]
            execution = (
                Execution(cached.executed, cached.capture)
                if cached
                else execute(
                    notebook,
                    plan=CapturePlan(
                        out_dir=capture_dir,
                        pipeline_file=staging.path(f"{SERVICE_DIR}/pipeline.py"),
                        runtime_file=staging.path(f"{SERVICE_DIR}/runtime.py"),
                        model_variable=notebook.model_variable,
                        model_cell=model_cell.label,
                        has_fallback=extraction.has_fallback,
                        modules=extraction.imports,
                        infer=config.contract.model_dump() if extraction.infer_contract else None,
                        evaluation=config.evaluation.model_dump(),
                        monitoring=_monitoring_spec(config),
                    ),
                    parameters=request.parameters,
                    scratch=scratch,
                    keep_failed_as=f"{request.notebook.stem}.executed.ipynb",
                )
            )
            capture = execution.capture
            s.detail = f"{len(capture.examples)} examples, model {capture.model_class}" + (
                f" (reused, cache key {key[:12]})" if cached else ""
            )
        baseline = previous_release(destination.parent, name, config.version, include_same=True)
        with stage(progress, "evaluate", "gates, baseline, previous release, latency") as s:
            evaluation = evaluate(
                capture.metrics,
                config.parsed_gates(),
                enforce=request.enforce_gates,
                holdout=capture.holdout,
                latency=capture.latency,
                previous=_previous_metrics(baseline),
                max_regression=config.evaluation.max_regression,
            )
            s.detail = (
                ", ".join(
                    f"{r.gate.metric} {r.value:.4g} {r.gate} {'ok' if r.passed else 'FAILED'}"
                    for r in evaluation.results
                )
                or "no gates configured"
            )
        with stage(progress, "contract", "JSON Schema of Input and Output") as s:
            contract = build_contract(capture, config.version)
            contract_diff = compare_with(baseline, contract, config.version, request.allow_breaking)
            s.detail = f"sha256 {contract.sha256[:12]}" + (
                f", {contract_diff.verdict} against {baseline.version}" if baseline else ""
            )
        with stage(
            progress, "lock", "reusing the cached lock" if cached else "uv pip compile"
        ) as s:
            if cached:
                lock = cached.lock
            else:
                lock = lock_environment(
                    capture, notebook=request.notebook.name, allow_drift=request.allow_drift
                )
                cache.store(key, capture_dir, execution.executed, lock)
            s.detail = f"{len(lock.pins)} packages pinned ({len(lock.direct)} direct)" + (
                " (reused)" if cached else ""
            )
            for drift in lock.drift:
                progress.note(f"warning: drift accepted with --allow-drift: {drift}")
        git = git_state(request.notebook)
        with stage(progress, "write", str(destination)):
            write_release(
                staging,
                ReleaseFacts(
                    name=name,
                    config=config,
                    notebook=notebook,
                    notebook_name=request.notebook.name,
                    notebook_sha256=notebook_sha256,
                    context=context,
                    rendered=rendered,
                    extraction=extraction,
                    execution=execution,
                    evaluation=evaluation,
                    contract=contract,
                    contract_diff=contract_diff,
                    baseline=baseline,
                    allow_breaking=request.allow_breaking,
                    lock=lock,
                    git=git,
                ),
                progress,
            )
        with stage(progress, "build", "bentoml build") as s:
            tag = bento.build(staging.path(f"{SERVICE_DIR}/bentofile.yaml"), staging.root)
            s.detail = tag
        try:
            with stage(progress, "verify", "serve on loopback, send every example") as s:
                report = verify_target(Target(tag, staging.root, None), check_files=False)
                raise_for_differences(report)
                s.detail = (
                    f"{report.examples} examples match the notebook, invalid input -> "
                    f"HTTP {report.invalid_status}, ready in {report.cold_start_s:.1f} s"
                )
            staging.write_json("openapi.json", report.openapi)
            staging.write_json(
                RELEASE_JSON,
                {
                    "name": name,
                    "version": config.version,
                    "bento_tag": tag,
                    "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
                    "git_commit": git.commit,
                    "git_dirty": git.dirty,
                    "notebook": request.notebook.name,
                    "notebook_sha256": notebook_sha256,
                    "parameters": dict(request.parameters),
                    "config": loaded.source,
                    "gates_enforced": request.enforce_gates,
                    "python_version": capture.python_version,
                    "nb2prod_version": __version__,
                    "cache_key": key,
                    "reused": ["execution", "lock"] if cached else [],
                    "allow_drift": request.allow_drift,
                    "allow_breaking": request.allow_breaking,
                    "contract_verdict": contract_diff.verdict,
                    "drift": [vars(d) for d in lock.drift],
                    "bentoml_version": capture.installed.get("bentoml"),
                    "files": staging.hashes(),
                },
            )
            release_dir = staging.commit()
        except BaseException:
            bento.delete(tag)  # no bento without its release
            raise
    return PackageResult(
        release_dir=release_dir,
        bento_tag=tag,
        name=name,
        version=config.version,
        examples_verified=report.examples,
        cold_start_s=report.cold_start_s,
    )


def _monitoring_spec(config: Config) -> dict[str, Any]:
    """Which variable holds the drift reference: [monitoring] reference, else the training or
    evaluation data the config already names (missing or unusable then only skips drift)."""
    explicit = config.monitoring.reference
    return {
        "reference": explicit or config.contract.training_data or config.evaluation.eval_x,
        "explicit": explicit is not None,
        "bins": config.monitoring.bins,
    }


def _previous_metrics(baseline: PreviousRelease | None) -> tuple[str, dict[str, float]] | None:
    if baseline is None:
        return None
    try:
        report = json.loads(
            (Path(baseline.directory) / "evaluation" / "report.json").read_text(encoding="utf-8")
        )
        return baseline.version, dict(report["metrics"])
    except (OSError, ValueError, KeyError):
        return None  # an earlier release without a readable report has nothing to compare


def compare_with(
    baseline: PreviousRelease | None, contract: Contract, version: str, allow_breaking: bool
) -> ContractDiff:
    """The contract's changes since ``baseline``; breaking ones need a major version bump."""
    if baseline is None:
        return ContractDiff(())
    diff = diff_contracts(load_contract(baseline.directory), contract.to_json())
    if diff.breaking and not allow_breaking and not _major_bump(baseline.version, version):
        raise ContractError(
            f"the contract breaks callers of {baseline.version} ({baseline.directory}), and "
            f"{version} is not a new major version:\n{diff.to_text()}",
            hint=f"Release it as {Version(version).major + 1}.0.0 (the `version` in the config), "
            "change the contract back, or pass --allow-breaking (recorded in the release).",
        )
    return diff


def _major_bump(old: str, new: str) -> bool:
    before, after = Version(old), Version(new)
    if before.major == after.major == 0:  # semver: anything may change in 0.x; a minor bump will do
        return after.minor > before.minor
    return after.major > before.major


def up_to_date(destination: Path, key: str) -> PackageResult | None:
    """The existing release at ``destination`` when it was made from the same inputs and is
    intact (every file matches release.json, its bento is in the store)."""
    manifest = destination / RELEASE_JSON
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        if data.get("cache_key") != key or not bento.exists(data["bento_tag"]):
            return None
        check_release_files(Target(data["bento_tag"], destination, destination))
        examples = json.loads((destination / "examples.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, Nb2ProdError):
        return None
    return PackageResult(
        release_dir=destination.resolve(),
        bento_tag=data["bento_tag"],
        name=data["name"],
        version=data["version"],
        examples_verified=len(examples["examples"]),
        cold_start_s=0.0,
        up_to_date=True,
    )


def parse_parameter(value: str) -> Any:
    """``-p NAME VALUE`` typing as papermill's CLI does: bool, None, int, float, else string."""
    lowered = value.strip()
    if lowered in ("True", "true"):
        return True
    if lowered in ("False", "false"):
        return False
    if lowered in ("None", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(lowered)
        except ValueError:
            pass
    return value


def check_parameters(notebook: AnnotatedNotebook, parameters: Mapping[str, Any]) -> None:
    if not parameters:
        return
    cells = [c for c in notebook.cells if c.is_parameters]
    if not cells:
        raise ParameterError(
            f"{notebook.path}: -p given, but no cell is tagged 'parameters'",
            hint="Tag the cell that sets the defaults with `parameters` (papermill's tag).",
        )
    known: set[str] = set()
    for cell in cells:
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else []
            )  # fmt: skip
            known |= {t.id for t in targets if isinstance(t, ast.Name)}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ParameterError(
            f"{notebook.path}: -p {unknown[0]}: the parameters cell ({cells[0].label}) "
            "defines no such name",
            hint=f"Parameters: {', '.join(sorted(known)) or 'none'}.",
        )
