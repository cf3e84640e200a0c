"""``nb2prod package``: one annotated notebook in, one verified release out (SPEC section 1).

:func:`package` reads like the job: parse the notebook and its config, execute it (papermill)
with the probe that captures model and examples, evaluate against the gates, build the contract,
lock the environment, write the release, build the bento, verify it answers like the notebook,
commit. Stages hand each other frozen results; only :class:`nb2prod.release.writer.Staging` writes, and
the release moves into place only at the very end (a failure leaves nothing behind).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..adapters import bento
from ..adapters.children import Stopping
from ..adapters.git import git_state
from ..adapters.pip_config import PipSettings, host_pip_settings
from ..errors import Nb2ProdError
from ..image.containerize import ContainerImage, ImageOptions, containerize
from ..ops.deploy import release_tree
from ..progress import Progress, Silent, stage
from ..release.claim import Claim, Leftovers, claim
from ..release.manifest import Serving
from ..release.reader import Release, previous_release
from ..release.writer import RELEASE_JSON, Staging
from ..scratch import run_scratch
from .assemble import (
    ReleaseFacts,
    in_bento,
    release_manifest,
    service_target,
    write_release,
    write_served_reports,
)
from .cache import LockMemo, RunCache, installed_distributions, run_key
from .capture import Capture
from .contract import build_contract
from .evaluate import evaluate
from .execute import Execution, KeptState, RestoreFailed, execute_notebook
from .history import (
    existing,
    fitted_fingerprint,
    gate_contract,
    guard_packages,
    guard_release,
    previous_metrics,
    stale,
)
from .leaks import find_leaks, raise_for_leaks
from .lineage import data_changed
from .lock import Lock, lock_environment
from .packages import prepare as prepare_packages
from .packages import run_packages
from .parse import Parsed, parse
from .report import Picture, evaluation_pictures
from .reuse import ReusePlan, TrainedState, TrainedStates, plan_reuse, snapshot_problem
from .verify import raise_for_differences, serving_staged
from .warm import Warmup

# this environment's distributions as the warmup thread finds them, for the kernel's probe
ENVIRONMENT_FILE = "environment.json"


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
    replace: bool = False  # --replace: overwrite a released version that differs
    reuse_unhashed_data: bool = False  # --reuse-unhashed-data: reuse runs that read URLs etc.
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
        parsed = parse(request.notebook, request.config, request.parameters, progress, request.out)
        s.detail = parsed.summary()
    destination = parsed.destination
    with _claimed(destination, progress) as held:
        return _release_claimed(request, parsed, held, progress)


def _execute(
    parsed: Parsed,
    request: PackageRequest,
    tmp: Path,
    reuse: ReusePlan | None,
    restore: TrainedState | None,
    why_not: str,
    progress: Progress,
    installed: Mapping[str, str],
    stopping: Stopping,
) -> tuple[Execution, str]:
    """Run the notebook: only what changed when ``restore`` is given, else every cell (saying
    why the trained state of the last run was not reused)."""
    if restore is not None:
        try:
            return execute_notebook(parsed, request.parameters, tmp / "reuse", progress,
                                    reuse=reuse, restore=restore, stopping=stopping,
                                    environment_file=tmp / ENVIRONMENT_FILE), ""  # fmt: skip
        except RestoreFailed as exc:
            why_not = f"the trained state of the last run could not be restored ({exc})"
    try:
        execution = execute_notebook(parsed, request.parameters, tmp / "full", progress,
                                     reuse=reuse, stopping=stopping,
                                     environment_file=tmp / ENVIRONMENT_FILE)  # fmt: skip
    except Nb2ProdError as exc:
        kept = getattr(exc, "kept_state", None)
        if reuse is not None and isinstance(kept, KeptState):  # the fix will not train again
            TrainedStates().store(reuse, request.notebook, kept.directory, kept.executed,
                                  kept.lineage, run_packages(kept.modules, (), installed),
                                  kept.modules)  # fmt: skip
        raise
    notes = [f"ran every cell: {why_not}"] if why_not else []
    if reuse is not None and execution.kernel_state is not None:
        problem = reuse.problem or snapshot_problem(execution.kernel_state)
        if problem:
            notes.append(f"the trained state cannot be reused next time: {problem}")
    return replace(execution, reuse="; ".join(notes)), why_not


def _resolve_lock(
    capture: Capture, request: PackageRequest, parsed: Parsed, pip: PipSettings
) -> tuple[Lock, bool]:
    """(the lock, whether the lock memo had it: resolved before for the same requirements); uv
    runs, and the memo keeps its lock, unless the memo had it."""
    sources = parsed.config.lock.sources
    links, extra = pip_sources = pip.lock_sources
    memo = LockMemo()
    key = LockMemo.key(capture, request.notebook.name, request.allow_drift, sources, pip_sources)
    memoised = memo.load(key) if request.use_cache else None
    if memoised is not None:
        return memoised, True
    lock = lock_environment(capture, request.notebook.name, request.allow_drift, sources=sources,
                            find_links=links, extra_index_urls=extra)  # fmt: skip
    memo.store(key, lock)
    return lock, False


@contextmanager
def _claimed(destination: Path, progress: Progress) -> Iterator[Claim]:
    """The destination's claim (one run at a time), what a killed run left removed, and a
    scratch directory for this run's temporary files (``tempfile``'s and its children's), which
    the claim records so that even a ``kill -9`` leaves nothing the next run does not remove."""
    with claim(destination) as held:
        if held.found:
            _remove_leftovers(held, held.found, destination)
            progress.note(f"cleaned up after an interrupted run: {held.found.describe()}")
        with run_scratch() as scratch:
            held.record(path=scratch)
            try:
                yield held
            finally:
                held.forget(path=scratch)


def _remove_leftovers(held: Claim, found: Leftovers, destination: Path) -> None:
    """Remove what a killed run recorded: its directories, and its bento unless the release at
    ``destination`` names it (the run died after committing)."""
    kept = existing(destination)
    for path in found.paths:
        shutil.rmtree(path, ignore_errors=True)
        held.forget(path=path)
    for tag in found.bentos:
        if kept is None or kept.manifest.bento_tag != tag:  # a release names it: it stays
            bento.delete(tag)
        held.forget(bento=tag)


def _release_claimed(
    request: PackageRequest, parsed: Parsed, held: Claim, progress: Progress
) -> PackageResult:
    destination = parsed.destination
    notebook_dir = request.notebook.resolve().parent
    installed = installed_distributions()
    key = run_key(
        notebook=request.notebook.read_bytes(),
        parameters=request.parameters,
        config=parsed.config_bytes,
        allow_drift=request.allow_drift,
    )
    found = existing(destination)
    why = stale(found, key, notebook_dir=notebook_dir, installed=installed,
                reuse_unhashed=request.reuse_unhashed_data)  # fmt: skip
    if request.use_cache and found is not None and why is None:
        progress.note(f"reused: {destination} was made from the same notebook, parameters, config, "
                      "data and packages, its files match release.json and its bento is in the "
                      "store; nothing to do (--no-cache rebuilds it)")  # fmt: skip
        return PackageResult(found.directory.resolve(), found.manifest.bento_tag, parsed.name,
                             parsed.config.version, 0, 0.0, up_to_date=True)  # fmt: skip
    notebook_sha256 = parsed.context.notebook_sha256
    guard_release(found, notebook_sha256=notebook_sha256, replace=request.replace)
    guard_packages(found, installed, request.replace)
    cache = RunCache()
    cached, why_not_cached = (
        cache.load(
            key,
            notebook_dir=notebook_dir,
            installed=installed,
            reuse_unhashed=request.reuse_unhashed_data,
        )  # fmt: skip
        if request.use_cache
        else (None, "")
    )
    reuse = (
        plan_reuse(parsed.analysis, parsed.config, request.parameters) if parsed.analysis else None
    )
    states = TrainedStates()
    restore: TrainedState | None = None
    why_not = "--no-cache" if not request.use_cache else why_not_cached
    if cached is None and request.use_cache and reuse is not None:
        restore, why_not = states.find(reuse, request.notebook, installed,
                                       request.reuse_unhashed_data)  # fmt: skip
    if restore is None and found is not None and found.manifest.cache_key == key:
        # the release's own data changed (or cannot be hashed): that is why it runs again
        why_not = data_changed(found.manifest.lineage, notebook_dir,
                               request.reuse_unhashed_data) or why_not  # fmt: skip
    # the newest earlier release (or the one of this version --replace replaces): the contract and
    # the metrics are compared with it
    baseline = previous_release(
        destination.parent, parsed.name, parsed.config.version, include_same=True
    )
    # the kernel exits in the background while the release is made (gone before this returns);
    # while it runs, the warmup thread does the leak scan's and the report's imports and finds
    # which distribution provides each module and the host's pip settings (pipeline/warm.py)
    with (
        tempfile.TemporaryDirectory(prefix="nb2prod-") as tmp,  # removed once the kernel is gone
        Stopping() as exiting,
        Warmup() as warmup,
        Staging(destination) as staging,
    ):
        held.record(path=staging.root)
        doing = ("reusing the cached run" if cached
                 else "restoring the trained state of the last run" if restore
                 else "papermill, top to bottom")  # fmt: skip
        warmup.submit(lambda: prepare_packages(installed, Path(tmp) / ENVIRONMENT_FILE))
        pip_settings = warmup.submit(host_pip_settings)
        with stage(progress, "execute", doing) as s:
            if cached:
                execution = Execution(cached.executed, cached.capture, cached.lineage)
            else:
                execution, why_not = _execute(
                    parsed,
                    request,
                    Path(tmp),
                    reuse,
                    restore,
                    why_not,
                    progress,
                    installed,
                    exiting,
                )
            s.detail = execution.summary() + (f" (reused, cache key {key[:12]})" if cached else "")
        warmup.join()
        if reuse is not None and execution.kernel_state is not None:
            # kept now, before the gates: a fix to what fails after training (a gate, the
            # contract, verify) must not train again; the packages are those the cells imported
            states.store(reuse, request.notebook, execution.kernel_state, execution.executed,
                         execution.lineage, run_packages(execution.modules, {}, installed),
                         execution.modules)  # fmt: skip
        capture = execution.capture
        # uv resolves the lock in the warmup thread while the leak scan, the gates and the
        # contract run (the lock stage waits for it): it needs only what the kernel found
        locking = None if cached else warmup.submit(
            lambda: _resolve_lock(capture, request, parsed, pip_settings.result())
        )  # fmt: skip
        for warning in capture.result.warnings:
            progress.note(f"warning: {warning}")
        artifacts = ((a.manifest.name, a.path) for a in capture.artifacts)
        raise_for_leaks(find_leaks(parsed.notebook, execution.executed, artifacts, os.environ))
        with stage(progress, "evaluate", "gates, baseline, previous release, latency") as s:
            evaluation = evaluate(
                capture.result.metrics, parsed.config.parsed_gates(), enforce=request.enforce_gates,
                holdout=capture.result.holdout, latency=capture.result.latency,
                previous=previous_metrics(baseline),
                max_regression=parsed.config.evaluation.max_regression,
                robustness=capture.result.robustness,
            )  # fmt: skip
            s.detail = evaluation.headline()
        with stage(progress, "contract", "JSON Schema of Input and Output") as s:
            contract = build_contract(capture, parsed.config.version)
            diff = gate_contract(baseline, contract, parsed.config.version, request.allow_breaking)
            fingerprint = fitted_fingerprint(
                (capture.model.file, capture.model.format),
                ((a.manifest.name, a.path, a.manifest.format) for a in capture.artifacts),
            )
            guard_release(found, notebook_sha256=notebook_sha256, model_fingerprint=fingerprint,
                          contract_sha256=contract.sha256, replace=request.replace)  # fmt: skip
            s.detail = f"sha256 {contract.sha256[:12]}" + (
                f", {diff.verdict} against {baseline.version}" if baseline else ""
            )
        # report.html's evaluation pictures: drawn here while uv resolves (it waits on the index,
        # not the CPU), else in the warmup thread while the bento is built
        drawn: Future[list[Picture]] | None = None
        if locking is not None and not locking.done():
            drawn = Future()
            drawn.set_result(evaluation_pictures(evaluation))
        memoised = False
        with stage(progress, "lock", "reusing the cached lock" if cached else "uv, meanwhile") as s:
            if cached:
                lock = cached.lock
                packages = dict(cached.packages)
            else:
                assert locking is not None
                lock, memoised = locking.result()
                packages = run_packages(execution.modules, lock.pins, installed)
                cache.store(key, capture.model.file.parent, execution.executed, lock,
                            execution.lineage, packages)  # fmt: skip
            s.detail = lock.summary() + (
                " (reused)" if cached
                else "; resolved before for the same requirements" if memoised else ""
            )  # fmt: skip
        facts = ReleaseFacts(
            parsed=parsed, notebook_sha256=notebook_sha256, execution=execution,
            evaluation=evaluation, contract=contract, contract_diff=diff, baseline=baseline,
            allow_breaking=request.allow_breaking, lock=lock, git=git_state(request.notebook),
            model_fingerprint=fingerprint, packages=packages,
        )  # fmt: skip
        with stage(progress, "write", str(destination)):
            write_release(staging, facts, progress)
        # verify's server starts on the files the bento will carry (linked, not copied) while
        # the bento is built, and checks, once built, that the bento carries exactly those
        served = Path(tmp) / "served"
        staging.link_files(served, in_bento)
        if drawn is None:
            drawn = warmup.submit(lambda: evaluation_pictures(evaluation))
        tag: str | None = None
        try:
            # the verify server stops in the background while the last files are written; it
            # is gone when this block ends, whatever happens (before its bento is deleted)
            with Stopping() as stopping:
                with serving_staged(served, service_target(facts.name), stopping=stopping) as check:
                    with stage(progress, "build", "bentoml build; verify's server starting") as s:
                        tag = s.detail = bento.build(
                            staging.path("service/bentofile.yaml"), staging.root
                        )
                        held.record(bento=tag)
                    with stage(progress, "verify", "the bento's files served on loopback, "
                               "every example sent") as s:  # fmt: skip
                        report = check(Release.staged(staging.root, tag))
                        raise_for_differences(report)
                        s.detail = report.summary()
                staging.write_json("openapi.json", report.openapi)
                serving = Serving(cold_start_s=report.cold_start_s,
                                  memory_bytes=report.memory_bytes,
                                  cold_start=report.cold_start)  # fmt: skip
                write_served_reports(
                    staging, facts, report.cold_start, drawn.result()
                )  # it shows it
                # deploy/'s Kubernetes, Helm and KServe files, sized from what verify measured
                staging.write_tree(release_tree(Release.staged(staging.root, tag),
                                                parsed.config.deploy, serving=serving))  # fmt: skip
                staging.write_json(RELEASE_JSON, release_manifest(
                    facts, request, key, tag, cached=cached is not None, staging=staging,
                    replaced=found.replaced() if found and request.replace else None,
                    serving=serving))  # fmt: skip
                release_dir = staging.commit()
        except BaseException:
            if tag is not None:
                bento.delete(tag)  # no bento without its release
            raise
        finally:
            held.forget(path=staging.root, bento=tag)
    return PackageResult(release_dir, tag, parsed.name, parsed.config.version, report.examples,
                         report.cold_start_s)  # fmt: skip
