"""Rendering, for ``package``'s write stage (and ``pipeline.py`` before execute): the generated text files of a release (service project, RUNBOOK.md).

The template in ``templates/release`` is rendered by cookiecutter in strict mode (an undefined
variable is an error). Its context is :class:`ServiceContext`, a typed object dumped to JSON, never
strings glued together. Cookiecutter writes into a private scratch directory that is read back and
removed; the release writer is what puts files into a release.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from cookiecutter.environment import StrictEnvironment
from cookiecutter.generate import generate_files

from ..notebook.config import Config
from ..notebook.extract import Extraction
from ..release.reader import PreviousRelease
from ..resources import template_dir
from ..version import __version__

RELEASE_TEMPLATE = template_dir("release")
SERVICE_DIR = "service"
RUNTIME_DIR = f"{SERVICE_DIR}/runtime"
RUNBOOK = "RUNBOOK.md"


@dataclass(frozen=True)
class CellContext:
    index: int
    role: str
    source: str


@dataclass(frozen=True)
class ModelContext:
    """How the model was serialized; known only after the notebook ran."""

    file: str
    format: str
    why: str
    trusted: tuple[str, ...]


@dataclass(frozen=True)
class ServiceContext:
    """Everything the service template may use; nothing else is defined while rendering."""

    nb2prod_version: str
    notebook: str
    notebook_sha256: str
    name: str
    version: str
    class_name: str
    timeout_ms: int | None
    min_confidence: float | None
    circuit_failures: int
    circuit_reset_s: float
    cells: tuple[CellContext, ...]
    default_predict: bool
    default_output_field: str | None
    has_fallback: bool
    release_dir: str
    disable_file: str
    previous: PreviousRelease | None
    model: ModelContext | None = None  # None while rendering the files the kernel needs
    inferred_contract: str | None = None  # known after the kernel inferred it


def service_context(
    *,
    extraction: Extraction,
    config: Config,
    name: str,
    notebook: str,
    notebook_sha256: str,
    release_dir: str,
    previous: PreviousRelease | None,
) -> ServiceContext:
    fallback = config.fallback
    return ServiceContext(
        nb2prod_version=__version__,
        notebook=notebook,
        notebook_sha256=notebook_sha256,
        name=name,
        version=config.version,
        class_name=class_name(name),
        timeout_ms=fallback.timeout_ms,
        min_confidence=fallback.min_confidence,
        circuit_failures=fallback.circuit_breaker.failures,
        circuit_reset_s=fallback.circuit_breaker.reset_s,
        cells=tuple(
            CellContext(c.index, str(c.role), c.source.rstrip() + "\n") for c in extraction.cells
        ),
        default_predict=extraction.default_predict,
        default_output_field=extraction.default_output_field,
        has_fallback=extraction.has_fallback,
        release_dir=release_dir,
        disable_file=disable_file(name),
        previous=previous,
    )


def disable_file(name: str) -> str:
    """Where the service looks for its kill-switch file unless NB2PROD_DISABLE_FILE says."""
    return f"/tmp/nb2prod-{name}.disabled"


def class_name(name: str) -> str:
    """`iris-classifier` -> `IrisClassifier` (the BentoML service class)."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name) if w]
    joined = "".join(w[:1].upper() + w[1:] for w in words) or "Service"
    return joined if joined[0].isalpha() else "Service" + joined


def render_release(context: ServiceContext) -> dict[str, bytes]:
    """Render the templates; keys are paths relative to the release root."""
    cookiecutter_context = {
        "cookiecutter": {"project_slug": "release", "_ctx": dataclasses.asdict(context)}
    }
    with tempfile.TemporaryDirectory(prefix="nb2prod-render-") as scratch:
        generate_files(
            repo_dir=str(RELEASE_TEMPLATE),
            context=cookiecutter_context,
            output_dir=scratch,
            accept_hooks=False,
        )
        root = Path(scratch) / "release"
        rendered = {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts
        }
    return rendered | {f"{RUNTIME_DIR}/{name}": data for name, data in runtime_files().items()}


def runtime_files() -> dict[str, bytes]:
    """nb2prod's serving runtime, byte for byte: every release carries this exact copy."""
    package = files(f"{__name__.partition('.')[0]}.runtime")
    return {
        entry.name: entry.read_bytes()
        for entry in sorted(package.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".py")
    }


def render_pipeline(context: ServiceContext) -> bytes:
    """``service/pipeline.py`` alone, from the same template, for the kernel to run before the
    release is rendered (the inferred contract, known only afterwards, goes ahead of it)."""
    template = RELEASE_TEMPLATE / "{{cookiecutter.project_slug}}" / "service" / "pipeline.py"
    environment = StrictEnvironment(keep_trailing_newline=True)
    rendered = environment.from_string(template.read_text(encoding="utf-8")).render(
        cookiecutter={"_ctx": dataclasses.asdict(context)}
    )
    return rendered.encode()
