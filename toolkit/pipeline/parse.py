"""The parse stage, the first of ``package``: the notebook, its configuration and what goes into the service.

Reads the notebook and analyses it once (``notebook/dataflow.py``); the ``-p`` check, the check
rules and the extraction all read that analysis (``nb2prod check``'s errors stop here, before any
kernel starts). Loads the configuration and extracts the service cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import NotebookError
from ..notebook.annotations import AnnotatedNotebook, read_notebook
from ..notebook.check import check_analysis
from ..notebook.config import Config, load_config
from ..notebook.dataflow import NotebookAnalysis, analyse
from ..notebook.extract import Extraction, extract
from ..notebook.parameters import check_parameters
from ..progress import Progress
from ..release.reader import previous_release
from ..release.writer import sha256_file
from .render import ServiceContext, service_context


@dataclass(frozen=True)
class Parsed:
    notebook: AnnotatedNotebook
    config: Config
    config_source: str  # "nb2prod.toml", "pyproject.toml [tool.nb2prod]" or "defaults"
    config_bytes: bytes | None
    extraction: Extraction
    name: str
    destination: Path
    context: ServiceContext  # what the service files are rendered from
    analysis: NotebookAnalysis | None = None  # the one analysis (trained-state reuse reads it)

    def summary(self) -> str:
        return f"{len(self.notebook.cells)} code cells, {len(self.extraction.cells)} go into the service"


def parse(
    path: Path,
    config: Path | None,
    parameters: Mapping[str, Any],
    progress: Progress,
    out: Path | None = None,
) -> Parsed:
    """The notebook read, analysed, checked and extracted, with its configuration."""
    notebook = read_notebook(path)
    analysis = analyse(notebook)  # each cell parsed once, for -p, the check and the extraction
    loaded = load_config(path, config)
    check_parameters(analysis, parameters)
    _check(analysis, loaded.config, progress)
    extraction = extract(analysis)
    if not extraction.has_fallback:
        progress.note(
            "warning: no `fallback` cell; when the model cannot answer, the service returns 503"
        )
    name = loaded.config.service_name(path)
    version = loaded.config.version
    destination = out or Path("dist") / f"{name}-{version}"
    return Parsed(
        notebook=notebook,
        config=loaded.config,
        config_source=loaded.source,
        config_bytes=loaded.path.read_bytes() if loaded.path else None,
        extraction=extraction,
        name=name,
        destination=destination,
        context=service_context(
            extraction=extraction,
            config=loaded.config,
            name=name,
            notebook=path.name,
            notebook_sha256=sha256_file(path),
            release_dir=str(destination),
            previous=previous_release(destination.parent, name, version),
        ),
        analysis=analysis,
    )


def _check(analysis: NotebookAnalysis, config: Config, progress: Progress) -> None:
    """Stop on ``nb2prod check``'s errors, naming the first; pass its warnings on (all before
    any kernel starts: what can be known without running is found here)."""
    checked = check_analysis(analysis, config=config)
    path = analysis.notebook.path
    if checked.errors:
        first, *more = checked.errors
        rest = "".join(f"\n  {f.render(path)}" for f in more[:20])
        raise NotebookError(
            first.render(path) + (f" (and {len(more)} more){rest}" if more else ""),
            hint=f"{first.fix} (`nb2prod check` lists them all; docs/check.md explains each code.)",
            cell=first.cell,
        )
    for warning in checked.warnings:
        progress.note(f"warning: {warning.render(path)}")
