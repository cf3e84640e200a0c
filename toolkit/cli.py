"""The ``nb2prod`` command: parse arguments, call the library, print the result.

Every :class:`~nb2prod.errors.Nb2ProdError` becomes one red ``error:`` line (and a ``hint:``) and
exit status 1; ``NB2PROD_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import astuple
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from .errors import Nb2ProdError
from .version import __version__

# No emoji codes (":notebook:" is part of a finding's location) and no wrapping (one error, one line);
# every dynamic text goes through escape() so "[...]" in a message is printed, not parsed.
console = Console(highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class ConsoleProgress:
    """Prints each stage as it starts and, with its duration, as it ends.

    What a running stage is doing (execute: the cell that runs) is one line under it: on a
    terminal, a line that is redrawn in place with the time it has taken so far, and removed when
    the stage ends; elsewhere (CI logs), one line per step that took at least
    :data:`SLOW_STEP_S`, printed when it ends, with its duration."""

    def __init__(self) -> None:
        self._step: _Step | None = None
        self._live: Any = None

    def started(self, stage: str, detail: str) -> None:
        console.print(f"[bold cyan]▸ {stage:<9}[/] {escape(detail)}", markup=True)

    def finished(self, stage: str, seconds: float, detail: str) -> None:
        self._end_step()
        suffix = f"  {escape(detail)}" if detail else ""
        console.print(f"[green]✓ {stage:<9}[/] {seconds:6.2f} s{suffix}", markup=True)

    def note(self, message: str) -> None:
        self._end_step()  # what a stage notes comes after the step that led to it
        console.print(f"[yellow]  {escape(message)}[/]", markup=True)

    def update(self, stage: str, detail: str) -> None:
        self._end_step(keep_live=True)
        if not detail:  # the step ended; the next one has not begun
            return
        self._step = _Step(detail)
        if not console.is_terminal:
            return
        if self._live is None:
            from rich.live import Live

            self._live = Live(self._step, console=console, transient=True, refresh_per_second=4)
            self._live.start()
            _live_lines.append(self._live)
        else:
            self._live.update(self._step, refresh=True)

    def _end_step(self, keep_live: bool = False) -> None:
        step, self._step = self._step, None
        if step is not None:
            step.stop()
        if self._live is not None and not keep_live:
            _stop_live()
            self._live = None
        if step is not None and not console.is_terminal and step.seconds() >= SLOW_STEP_S:
            console.print(f"  {escape(step.line())}", markup=True)


SLOW_STEP_S = 1.0  # off a terminal, the steps shorter than this are not printed
_live_lines: list[Any] = []  # the step line being redrawn, stopped before an error is printed


def _stop_live() -> None:
    while _live_lines:
        _live_lines.pop().stop()


class _Step:
    """One step of a running stage; rich renders it with the time it has taken so far."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        self.start = time.monotonic()
        self.end: float | None = None

    def stop(self) -> None:
        self.end = self.end or time.monotonic()

    def seconds(self) -> float:
        return (self.end or time.monotonic()) - self.start

    def line(self) -> str:
        return f"{self.detail}  {format_elapsed(self.seconds())}"

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(f"  {self.line()}", style="dim", no_wrap=True, overflow="ellipsis")


def format_elapsed(seconds: float) -> str:
    """``4.2 s`` under a minute, ``3 min 07 s`` above."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s"


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except Nb2ProdError as exc:
        _stop_live()
        if os.environ.get("NB2PROD_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True)
        if exc.hint:
            err_console.print(f"[yellow]hint:[/] {escape(exc.hint)}", markup=True)
        sys.exit(1)
    finally:
        _stop_live()


@contextmanager
def _unwinding_on_signals() -> Iterator[None]:
    """SIGTERM (`kill PID`) and SIGHUP unwind like Ctrl-C, so that on the way out a staged release,
    temporary directories and a server started to verify are removed; the exit status is 128 +
    the signal's number. A second signal kills at once."""

    def leave(signum: int, _frame: object) -> None:
        signal.signal(signum, signal.SIG_DFL)
        sys.exit(128 + signum)

    previous = {sig: signal.signal(sig, leave) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _handled(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _unwinding_on_signals(), _errors():
            return func(*args, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


def _backend_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--backend",
        type=click.Choice(["docker", "podman", "buildah"]),
        help="Container engine (default: docker if its daemon answers, else podman, else buildah).",
    )(func)


def _image_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options of `containerize`, also taken by `package --containerize`."""
    for option in reversed(
        [
            click.option(
                "--base-image",
                metavar="IMG",
                help="Base image (default: localhost/nb2prod-base:py311-bookworm, built by "
                "`nb2prod base-image` when missing).",
            ),
            click.option(
                "--ca-bundle",
                type=click.Path(path_type=Path),
                help="CA bundle for TLS inside the build, passed as a secret "
                "(default: the one the host's pip uses, if any).",
            ),
            click.option(
                "--index-url",
                metavar="URL",
                help="Package index for the build, passed as a secret (default: the host "
                "pip's index-url, else pip's default).",
            ),
            click.option(
                "--tag",
                "image_tag",
                metavar="REF",
                help="Image reference (default: localhost/<name>:<version>).",
            ),
            click.option(
                "--context",
                "context_dir",
                type=click.Path(path_type=Path),
                help="Keep the build context (Containerfile, requirements.lock, bento/) here.",
            ),
        ]
    ):
        func = option(func)
    return _backend_option(func)


def _options(**given: Any) -> Any:
    from .image.containerize import ImageOptions

    return ImageOptions(
        backend=given["backend"],
        base_image=given["base_image"],
        ca_bundle=given["ca_bundle"],
        index_url=given["index_url"],
        reference=given["image_tag"],
        context_dir=given["context_dir"],
    )


def _print_image(image: Any) -> None:
    console.print(f"[bold green]image[/] {escape(image.reference)}", markup=True)
    console.print(f"  id         {image.image_id[:12]}")
    console.print(f"  size       {image.size_bytes / 1e6:.0f} MB")
    console.print(f"  backend    {image.backend} ({escape(image.backend_why)})")
    console.print(f"  base       {escape(image.base_image)}")
    console.print(f"  built in   {image.seconds:.1f} s")
    if image.context_dir:
        console.print(f"  context    {image.context_dir}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nb2prod")
def main() -> None:
    """Turn an annotated Jupyter notebook into a verified BentoML release."""


@main.command()
@click.argument("notebook", type=click.Path(path_type=Path))
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    help="Config file (default: nb2prod.toml beside the notebook, or [tool.nb2prod]).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Release directory (default: dist/<name>-<version>).",
)
@click.option(
    "-p",
    "--parameter",
    "parameters",
    nargs=2,
    multiple=True,
    metavar="NAME VALUE",
    help="Override a papermill parameter (repeatable).",
)
@click.option("--no-gates", is_flag=True, help="Record failing quality gates instead of stopping.")
@click.option(
    "--allow-drift",
    is_flag=True,
    help="Accept a lock whose versions differ from the kernel's (recorded).",
)
@click.option(
    "--allow-breaking",
    is_flag=True,
    help="Release a breaking contract change without a major version bump (recorded).",
)
@click.option(
    "--replace",
    is_flag=True,
    help="Replace a released version whose notebook, model or contract differ (recorded).",
)
@click.option(
    "--no-cache", is_flag=True, help="Run the notebook and lock again even if nothing changed."
)
@click.option(
    "--reuse-unhashed-data",
    is_flag=True,
    help="Reuse an earlier run (or its trained state) even though it read data that cannot be "
    "hashed (a URL, a network connection).",
)
@click.option(
    "--containerize",
    is_flag=True,
    help="Also build an OCI image of the release (see containerize).",
)
@_image_options
@_handled
def package(
    notebook: Path,
    config: Path | None,
    out: Path | None,
    parameters: tuple[tuple[str, str], ...],
    no_gates: bool,
    allow_drift: bool,
    allow_breaking: bool,
    replace: bool,
    no_cache: bool,
    reuse_unhashed_data: bool,
    containerize: bool,
    **image: Any,
) -> None:
    """Execute NOTEBOOK and turn it into a verified release."""  # fmt: skip
    from .notebook.parameters import parse_parameter
    from .pipeline.run import PackageRequest
    from .pipeline.run import package as run_package

    given = sorted(k for k, v in image.items() if v is not None)
    if given and not containerize:
        option = "--" + given[0].replace("image_tag", "tag").replace("context_dir", "context")
        raise click.UsageError(f"{option.replace('_', '-')} is an image option: add --containerize")

    request = PackageRequest(
        notebook=notebook,
        config=config,
        out=out,
        parameters={name: parse_parameter(value) for name, value in parameters},
        enforce_gates=not no_gates,
        allow_drift=allow_drift,
        allow_breaking=allow_breaking,
        replace=replace,
        use_cache=not no_cache,
        reuse_unhashed_data=reuse_unhashed_data,
        image=_options(**image) if containerize else None,
    )
    result = run_package(request, ConsoleProgress())
    console.print()
    verdict = "up to date" if result.up_to_date else "released"
    console.print(f"[bold green]{verdict}[/] {result.name} {result.version}", markup=True)
    console.print(f"  release    {result.release_dir}")
    console.print(f"  bento tag  [bold]{result.bento_tag}[/]", markup=True)
    console.print(f"  serve      nb2prod serve {result.release_dir}")
    console.print(f"  verify     nb2prod verify {result.release_dir}")
    if result.image is None:
        console.print(f"  image      nb2prod containerize {result.release_dir}")
        return
    _print_image(result.image)
    console.print(
        f"  verify     nb2prod verify {result.release_dir} --image {escape(result.image.reference)}"
    )


@main.command()
@click.argument("notebooks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@_handled
def check(notebooks: tuple[Path, ...], fmt: str, strict: bool) -> None:
    """Static checks of NOTEBOOK(S), no execution: exit 0 clean, 1 when errors are found."""
    import json

    from .adapters.secrets import SecretScanner
    from .notebook.check import check_path

    with SecretScanner() as scanner:
        reports = [check_path(path, scanner) for path in notebooks]
    if fmt == "json":
        click.echo(json.dumps([r.to_json() for r in reports], indent=2))
    else:
        for report in reports:
            for finding in report.findings:
                colour = {"error": "red", "warning": "yellow", "info": "cyan"}[finding.severity]
                console.print(f"[{colour}]{escape(finding.render(report.path))}[/]", markup=True)
                console.print(f"  hint: {escape(finding.fix)}", markup=True)
        errors = sum(len(r.errors) for r in reports)
        warnings = sum(len(r.warnings) for r in reports)
        console.print(f"{len(reports)} notebook(s): {errors} error(s), {warnings} warning(s)")
    failed = any(r.errors or (strict and r.warnings) for r in reports)
    sys.exit(1 if failed else 0)


@main.group()
def contract() -> None:
    """Read and compare contracts (TARGET: release directory, contract.json or bento tag)."""


@contract.command("show")
@click.argument("target")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown"]), default="text", show_default=True
)
@_handled
def contract_show(target: str, fmt: str) -> None:
    """The contract as a table per model: field, type, required, constraints, description, example.

    At a terminal the tables fit its width; piped, they are plain columns that never wrap."""
    from rich.table import Table

    from .pipeline.capture import release_fitted_state
    from .release.reader import load_contract
    from .release.review import (
        SHOW_COLUMNS,
        contract_markdown,
        contract_text,
        declared,
        field_rows,
    )

    data = load_contract(target)
    if fmt == "markdown":
        click.echo(contract_markdown(data))
        return
    fitted = release_fitted_state(target)
    fitted_heading = "Fitted state exported with the model (model/model.json):"
    if not sys.stdout.isatty():  # rich would wrap at 80 columns, breaking names in a CI log
        click.echo(contract_text(data), nl=False)
        if fitted:
            click.echo(
                f"\n{fitted_heading}\n" + "".join(f"  {line}\n" for line in fitted), nl=False
            )
        return
    first = (data.get("examples") or [{}])[0]
    inferred = " [yellow](inferred: review before relying on it)[/]" if data.get("inferred") else ""
    console.print(
        f"contract {escape(str(data.get('contract_version')))}  sha256 {data['sha256'][:12]}{inferred}",
        markup=True,
    )
    for side in ("input", "output"):
        table = Table(title=side.capitalize(), title_justify="left", show_lines=False)
        for column in SHOW_COLUMNS:
            # the other columns give way first, so a field name folds only on a tiny terminal
            table.add_column(column, overflow="fold", no_wrap=column == "field")
        for row in field_rows(declared(data, side), first.get(side)):
            table.add_row(*(escape(v) for v in astuple(row)))
        console.print(table)
    if fitted:
        console.print(fitted_heading)
        for line in fitted:
            console.print(f"  {escape(line)}")


@contract.command("diff")
@click.argument("old")
@click.argument("new")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
)
@click.option(
    "--allow-major-bump",
    is_flag=True,
    help="Exit 0 on breaking changes too when NEW's contract_version is a new major version "
    "(in 0.x a new minor) over OLD's: the rule `package` enforces.",
)
@_handled
def contract_diff(old: str, new: str, fmt: str, allow_major_bump: bool) -> None:
    """Every change from OLD to NEW, classified; exit 0 when nothing breaks, 1 otherwise."""
    import json

    from .pipeline.history import major_bump
    from .release.reader import load_contract
    from .release.review import diff_contracts

    before, after = load_contract(old), load_contract(new)
    diff = diff_contracts(before, after)
    versions = (str(before.get("contract_version")), str(after.get("contract_version")))
    allowed = allow_major_bump and bool(diff.breaking) and _is_major_bump(*versions, major_bump)
    if fmt == "json":
        click.echo(json.dumps(diff.to_json(), indent=2))
    elif fmt == "markdown":
        click.echo(diff.to_markdown())
    else:
        for change in diff.changes:
            colour = {"breaking": "red", "compatible": "green", "cosmetic": "dim"}[change.severity]
            console.print(f"[{colour}]{escape(str(change))}[/]", markup=True)
        console.print(f"verdict: {diff.verdict}")
    if allowed:
        err_console.print(
            f"breaking changes allowed: {versions[1]} is a new major version over {versions[0]}"
        )
    sys.exit(1 if diff.breaking and not allowed else 0)


def _is_major_bump(old: str, new: str, major_bump: Callable[[str, str], bool]) -> bool:
    from packaging.version import InvalidVersion

    try:
        return major_bump(old, new)
    except InvalidVersion:
        return False  # no readable contract_version: nothing allows a breaking change


@main.command()
@click.argument("target")
@click.option(
    "--image", metavar="IMG", help="Run this image (podman or docker) instead of bentoml serve."
)
@_backend_option
@click.option("--url", metavar="URL", help="Check the deployment running at URL instead.")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path),
    help="With --url: the file holding the deployment's bearer token.",
)
@click.option(
    "--public-key",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="PUB",
    help="Check first that TARGET is signed by this key (PEM), as it is now (nb2prod sign).",
)
@_handled
def verify(
    target: str,
    image: str | None,
    backend: str | None,
    url: str | None,
    token_file: Path | None,
    public_key: Path | None,
) -> None:
    """Serve TARGET (or run its IMAGE), send its examples, and compare with the notebook's outputs."""
    from .adapters import container
    from .pipeline.verify import raise_for_differences, verify_image, verify_target
    from .release.reader import resolve

    if backend and image is None:
        raise click.UsageError("--backend chooses the engine that runs --image IMG; add --image")
    if url is not None and image is not None:
        raise click.UsageError("--url checks a running deployment, --image runs one: give one")
    if token_file is not None and url is None:
        raise click.UsageError("--token-file is for the deployment at --url URL; add --url")
    release = resolve(target)
    if public_key is not None:
        release.check_signature(public_key)
        console.print(f"[green]✓[/] signed by {escape(str(public_key))}", markup=True)
    if url is not None:
        _verify_live(release, url, token_file)
        return
    if image is None:
        console.print(f"▸ verifying {release.bento_tag}")
        report = verify_target(release)
    else:
        engine = container.choose(backend, need_run=True)
        console.print(f"backend: {engine.name} ({escape(engine.why)})")
        console.print(f"▸ verifying image {escape(image)} against {release.bento_tag}")
        report = verify_image(release, image, engine)
    raise_for_differences(report)
    health = {True: "; HEALTHCHECK healthy", False: "; HEALTHCHECK FAILED", None: ""}
    memory = f"; memory {report.memory_bytes / 2**20:.0f} MiB" if report.memory_bytes else ""
    console.print(
        f"[green]✓[/] {report.examples} examples answer as in the notebook "
        f"(single and batch); invalid input -> HTTP {report.invalid_status}; "
        f"ready in {report.cold_start_s:.1f} s{report.phases()}{memory}{health[report.healthy]}",
        markup=True,
    )
    if report.healthy is False:
        raise Nb2ProdError(
            f"the image's HEALTHCHECK failed although /readyz answered ({image})",
            hint="Inspect it with `podman inspect --format '{{json .Healthcheck}}' IMG`.",
        )


def _verify_live(release: Any, url: str, token_file: Path | None) -> None:
    from .pipeline.live import raise_for_failures, read_token, verify_live

    console.print(f"▸ verifying {escape(url)} against {release.bento_tag}")
    token = read_token(token_file) if token_file is not None else None
    report = verify_live(release, url, token=token)
    for check in report.checks:
        mark = "[dim]-[/]" if check.skipped else "[green]✓[/]" if check.ok else "[red]✗[/]"
        console.print(f"{mark} {check.name:<13} {escape(check.detail)}", markup=True)
    raise_for_failures(report)


@main.command()
@click.argument("target")
@click.option(
    "--key",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="KEY",
    help="The PEM elliptic-curve private key to sign with (docs/security.md).",
)
@_handled
def sign(target: str, key: Path) -> None:
    """Sign the release directory TARGET offline with KEY (OpenSSF model-signing): release.sig."""
    from .release.signing import sign as sign_release

    console.print(f"[green]✓[/] {escape(sign_release(target, key).summary())}", markup=True)


@main.command()
@click.argument("target")
@_image_options
@click.option(
    "--push",
    "push_to",
    metavar="REGISTRY/NAME[:TAG]",
    help="Push the image there (TAG default: the release's version), print its digest and "
    "record it in the release's images.jsonl.",
)
@click.option(
    "--tls-verify/--no-tls-verify",
    default=True,
    show_default=True,
    help="Verify the registry's TLS certificate on --push; --no-tls-verify for a plain-HTTP "
    "registry (one on loopback).",
)
@_handled
def containerize(target: str, push_to: str | None, tls_verify: bool, **image: Any) -> None:
    """Build an OCI image of TARGET (release directory or bento tag), without a Docker daemon."""
    from .image.containerize import containerize as run_containerize
    from .image.push import destination_reference, push_image
    from .release.reader import resolve

    if push_to is None and not tls_verify:
        raise click.UsageError("--no-tls-verify is a setting of --push REF: add --push")
    if push_to is not None:
        destination_reference(push_to)  # a bad reference fails before the build, not after
    result = run_containerize(target, _options(**image), ConsoleProgress())
    console.print()
    _print_image(result)
    if push_to is None:
        console.print(f"  verify     nb2prod verify {target} --image {escape(result.reference)}")
        return
    pushed = push_image(
        resolve(target), local=result.reference, image_id=result.image_id,
        destination=push_to, tls_verify=tls_verify, backend=result.backend,
    )  # fmt: skip
    console.print(f"[bold green]pushed[/] {escape(pushed.destination)}", markup=True)
    console.print(f"  digest     {pushed.digest}  ({escape(pushed.reported_by)})")
    console.print(f"  pinned     {escape(pushed.pinned)}")
    if pushed.recorded:
        console.print(f"  recorded   {pushed.recorded}")
    console.print(f"  deploy     nb2prod deploy-files {target} --image {escape(pushed.pinned)}")
    insecure = "" if tls_verify else " --tls-verify=false"
    console.print(f"  pull       {result.backend} pull{insecure} {escape(pushed.pinned)}")
    console.print(f"  verify     nb2prod verify {target} --image {escape(pushed.pinned)}")


@main.command("deploy-files")
@click.argument("target")
@click.option(
    "--image",
    metavar="REF",
    help="Image the manifests run (default: localhost/<name>:<version>, as containerize tags "
    "it); give REF@sha256:... to pin it by digest.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Directory to write (default: deploy-<name>-<version>); an earlier output is replaced.",
)
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    help="Take [deploy] from this nb2prod.toml or pyproject.toml (default: the defaults).",
)
@_handled
def deploy_files(target: str, image: str | None, out: Path | None, config: Path | None) -> None:
    """Kubernetes manifests, Helm chart and KServe InferenceService for TARGET (release or bento)."""
    from .notebook.config import DeployConfig, load_config_file
    from .ops.deploy import write_deploy_files

    deploy = load_config_file(config).config.deploy if config else DeployConfig()
    written = write_deploy_files(target, image=image, out=out, config=deploy)
    size = written.sizing
    console.print(
        f"[bold green]wrote[/] {len(written.files)} files to {written.directory}", markup=True
    )
    console.print(f"  image      {escape(written.facts.image)}")
    if written.digest_from:
        console.print(f"  digest     from {escape(written.digest_from)}")
    if "@sha256:" not in written.facts.image:
        console.print(
            "[yellow]  not pinned by digest: give --image REF@sha256:... for what you pushed[/]",
            markup=True,
        )
    console.print(
        f"  startup    {size.startup_budget_s} s budget (cold start {size.cold_start_note})"
    )
    console.print(
        f"  memory     request {size.memory_request}, limit {size.memory_limit} ({size.memory_note})"
    )
    console.print(f"  apply      kubectl apply -f {written.directory / 'kubernetes'}")


@main.command("ci-workflow")
@click.argument("kind", type=click.Choice(["github", "gitlab"]))
@click.option(
    "--notebook",
    metavar="PATH",
    help="The notebook to release, relative to the repository root (default: the only one).",
)
@click.option(
    "--install",
    metavar="CMD",
    help="Shell command installing nb2prod and the notebook's packages (default: pip install "
    "nb2prod at this version, plus -r requirements.txt when there is one).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="File to write (default: .github/workflows/nb2prod-release.yml or .gitlab-ci.yml).",
)
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
@_handled
def ci_workflow(
    kind: str, notebook: str | None, install: str | None, out: Path | None, force: bool
) -> None:
    """Write a CI workflow: check, package, contract gate, containerize, verify, upload."""
    from .ops.workflows import write_workflow

    path = write_workflow(
        "github" if kind == "github" else "gitlab",
        root=Path.cwd(),
        notebook=notebook,
        install=install,
        out=out,
        force=force,
    )
    console.print(f"[bold green]wrote[/] {path}", markup=True)
    console.print(
        "  the job runs podman in a privileged Debian 12 container; the release is uploaded as "
        "the artifact nb2prod-release (docs/deploy.md)"
    )


@main.command("base-image")
@click.option(
    "--tag",
    "reference",
    metavar="REF",
    help="Image reference (default: localhost/nb2prod-base:py311-bookworm).",
)
@click.option("--rebuild", is_flag=True, help="Build it again even if it is in local storage.")
@click.option(
    "--mirror",
    metavar="URL",
    help="Debian mirror (default: the bookworm mirrors in /etc/apt/sources.list(.d)).",
)
@_backend_option
@_handled
def base_image(
    reference: str | None, rebuild: bool, mirror: str | None, backend: str | None
) -> None:
    """Build a Debian 12 + Python 3.11 base image from Debian's packages (no registry needed)."""
    from .adapters import container
    from .image.base import DEFAULT_BASE, BaseImageRequest, ensure_base_image

    engine = container.choose(backend)
    console.print(f"backend: {engine.name} ({escape(engine.why)})")
    made = ensure_base_image(
        BaseImageRequest(reference=reference or DEFAULT_BASE, rebuild=rebuild, mirror=mirror),
        ConsoleProgress(),
        engine,
    )
    verdict = f"built in {made.seconds:.1f} s" if made.built else "reused"
    console.print(f"[bold green]{verdict}[/] {escape(made.reference)}", markup=True)
    console.print(f"  id         {made.image_id[:12]}")
    console.print(f"  size       {made.size_bytes / 1e6:.0f} MB")
    console.print(f"  use        nb2prod containerize TARGET --base-image {escape(made.reference)}")


@main.command()
@click.argument("target")
@click.option("--port", type=int, default=3000, show_default=True)
@_handled
def serve(target: str, port: int) -> None:
    """Serve TARGET (a release directory or bento tag) on 127.0.0.1.

    SIGTERM, SIGINT (Ctrl-C) or SIGHUP stops the server and its workers; the exit status is then
    128 + the signal's number."""
    from .adapters import bento
    from .release.reader import resolve
    from .runtime.auth import MIN_TOKEN_LENGTH, api_token

    release = resolve(target)
    release.check_integrity()  # the release's files, and a bento that is this release's
    if release.metadata.release.auth == "token":
        try:  # the service's own check, before BentoML starts (it would say the same, later)
            api_token("token")
        except RuntimeError as exc:
            raise Nb2ProdError(
                f"{release.bento_tag} requires a bearer token: {exc}",
                hint=f"export NB2PROD_API_TOKEN=... (at least {MIN_TOKEN_LENGTH} characters) "
                "or NB2PROD_API_TOKEN_FILE=path, and try again.",
            ) from None
    console.print(f"serving {release.bento_tag} on http://127.0.0.1:{port}  (Ctrl-C stops)")
    sys.exit(bento.run_foreground(release.bento_tag, port=port))


@main.command()
@click.argument("target")
@click.option(
    "--users",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Concurrent Locust users.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    metavar="R",
    help="Requests/s in total (default: the [slo]'s expected_rps).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=30,
    show_default=True,
    metavar="S",
    help="Seconds of load.",
)
@click.option(
    "--image", metavar="IMG", help="Run this image (podman or docker) instead of bentoml serve."
)
@_backend_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Where loadtest.json and loadtest.html go (default: loadtest-<name>-<version>).",
)
@_handled
def loadtest(
    target: str,
    users: int,
    rate: float | None,
    duration: float,
    image: str | None,
    backend: str | None,
    out: Path | None,
) -> None:
    """Serve TARGET (or run its IMAGE), load it with Locust, and check it against its [slo]."""
    from .ops.loadtest import LoadTestRequest, run_loadtest

    if backend and image is None:
        raise click.UsageError("--backend chooses the engine that runs --image IMG; add --image")
    result = run_loadtest(
        LoadTestRequest(target, users, rate, duration, out, image=image, backend=backend),
        lambda line: console.print(escape(line)),
    )  # fmt: skip
    console.print(f"  summary    {escape(str(result.json_path))}")
    console.print(f"  report     {escape(str(result.html_path))}")
    sys.exit(0 if result.ok else 1)


class RowBar:
    """A progress bar over rows (rich), drawn while a scoring job runs."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: Any = None

    def start(self, description: str, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self._bar.start()
        self._task = self._bar.add_task(escape(description), total=total)

    def advance(self, rows: int) -> None:
        self._bar.advance(self._task, rows)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@main.command()
@click.argument("target")
@click.argument("input_path", metavar="INPUT")
@click.argument("output")
@click.option(
    "--engine",
    type=click.Choice(["local", "spark"]),
    default="local",
    show_default=True,
    help="local: this machine; spark: PySpark (pip install 'nb2prod[spark]').",
)
@click.option(
    "--keep",
    multiple=True,
    metavar="COL",
    help="Carry this input column into the output and the errors file (repeatable).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Rows per model call (and per piece read).",
)
@click.option(
    "--errors",
    metavar="FILE",
    help="Errors file (default: OUTPUT with .errors.jsonl for its extension).",
)
@click.option(
    "--master", metavar="URL", help="Spark master (default local[*]); --engine spark only."
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Local engine: processes (default: 1, or one per core, at most 8, from 1,000,000 rows).",
)
@_handled
def score(
    target: str,
    input_path: str,
    output: str,
    engine: str,
    keep: tuple[str, ...],
    batch_size: int,
    errors: str | None,
    master: str | None,
    workers: int | None,
) -> None:
    """Score INPUT (.parquet, .csv or .jsonl) with TARGET's pipeline into OUTPUT."""
    from .scoring.job import ScoreRequest
    from .scoring.run import score_file

    if master is not None and engine != "spark":
        raise click.UsageError("--master is a Spark setting: add --engine spark")
    if workers is not None and engine != "local":
        raise click.UsageError("--workers is a setting of the local engine (Spark has executors)")
    request = ScoreRequest(
        target=target,
        input=input_path,
        output=output,
        errors=errors,
        keep=keep,
        batch_size=batch_size,
        engine="spark" if engine == "spark" else "local",
        master=master,
        workers=workers,
    )
    summary = score_file(request, RowBar())
    degraded = ", ".join(f"{reason} {n:,}" for reason, n in summary.degraded.items())
    console.print(
        f"[bold green]scored[/] {summary.rows:,} rows with {summary.name} {summary.version} in "
        f"{summary.seconds:.1f} s ({summary.rows_per_s:,.0f} rows/s, {escape(summary.engine)})",
        markup=True,
    )
    console.print(
        f"  answered   {summary.answered:,}" + (f" (fallback: {degraded})" if degraded else "")
    )
    console.print(f"  invalid    {summary.invalid:,}")
    console.print(f"  unanswered {summary.unanswered:,}")
    console.print(f"  output     {escape(summary.output)}")
    console.print(f"  errors     {escape(summary.errors)}")
    if summary.one_by_one:
        console.print(
            f"[yellow]  one row per model call: {escape(summary.one_by_one)}[/]", markup=True
        )
