"""The ``nb2prod`` command: parse arguments, call the library, print the result.

Every :class:`~toolkit.errors.Nb2ProdError` becomes one red ``error:`` line (and a ``hint:``) and
exit status 1; ``NB2PROD_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from toolkit import __version__
from toolkit.errors import Nb2ProdError

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class ConsoleProgress:
    """Prints each stage as it starts and, with its duration, as it ends."""

    def started(self, stage: str, detail: str) -> None:
        console.print(f"[bold cyan]▸ {stage:<9}[/] {detail}", markup=True)

    def finished(self, stage: str, seconds: float, detail: str) -> None:
        suffix = f"  {detail}" if detail else ""
        console.print(f"[green]✓ {stage:<9}[/] {seconds:6.2f} s{suffix}", markup=True)

    def note(self, message: str) -> None:
        console.print(f"[yellow]  {message}[/]", markup=True)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except Nb2ProdError as exc:
        if os.environ.get("NB2PROD_DEBUG"):
            raise
        err_console.print(f"[bold red]error:[/] {exc.message}", markup=True)
        if exc.hint:
            err_console.print(f"[yellow]hint:[/] {exc.hint}", markup=True)
        sys.exit(1)


def _handled(func: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _errors():
            return func(*args, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__doc__ = func.__doc__
    return wrapper


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
@_handled
def package(
    notebook: Path,
    config: Path | None,
    out: Path | None,
    parameters: tuple[tuple[str, str], ...],
    no_gates: bool,
) -> None:
    """Execute NOTEBOOK and turn it into a verified release."""  # fmt: skip
    from toolkit.package import PackageRequest, parse_parameter
    from toolkit.package import package as run_package

    request = PackageRequest(
        notebook=notebook,
        config=config,
        out=out,
        parameters={name: parse_parameter(value) for name, value in parameters},
        enforce_gates=not no_gates,
    )
    result = run_package(request, ConsoleProgress())
    console.print()
    console.print(f"[bold green]released[/] {result.name} {result.version}", markup=True)
    console.print(f"  release    {result.release_dir}")
    console.print(f"  bento tag  [bold]{result.bento_tag}[/]", markup=True)
    console.print(f"  serve      nb2prod serve {result.release_dir}")
    console.print(f"  verify     nb2prod verify {result.release_dir}")
    console.print(f"  image      bentoml containerize {result.bento_tag} --backend podman")


@main.command()
@click.argument("target")
@_handled
def verify(target: str) -> None:
    """Serve TARGET, send its examples, and compare with the notebook's outputs."""
    from toolkit.target import resolve
    from toolkit.verify import raise_for_differences, verify_target

    resolved = resolve(target)
    console.print(f"▸ verifying {resolved.bento_tag}")
    report = verify_target(resolved)
    raise_for_differences(report)
    console.print(
        f"[green]✓[/] {report.examples} examples answer as in the notebook "
        f"(single and batch); invalid input -> HTTP {report.invalid_status}; "
        f"ready in {report.cold_start_s:.1f} s",
        markup=True,
    )


@main.command()
@click.argument("target")
@click.option("--port", type=int, default=3000, show_default=True)
@_handled
def serve(target: str, port: int) -> None:
    """Serve TARGET (a release directory or bento tag) on 127.0.0.1."""
    from toolkit.adapters import bento
    from toolkit.target import resolve

    resolved = resolve(target)
    metadata = resolved.read_json("service/metadata.json")
    if metadata.get("auth") == "token" and not (
        os.environ.get("NB2PROD_API_TOKEN") or os.environ.get("NB2PROD_API_TOKEN_FILE")
    ):
        raise Nb2ProdError(
            f"{resolved.bento_tag} requires a bearer token and none is set",
            hint="export NB2PROD_API_TOKEN=... (or NB2PROD_API_TOKEN_FILE=path) and try again.",
        )
    console.print(f"serving {resolved.bento_tag} on http://127.0.0.1:{port}  (Ctrl-C stops)")
    sys.exit(bento.run_foreground(resolved.bento_tag, port=port))
