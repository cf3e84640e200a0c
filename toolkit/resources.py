"""Where nb2prod's own files are, installed or in a checkout: the one place that knows.

The templates live in ``templates/`` at the top of the repository and are installed as
``nb2prod.templates``; both layouts are found through :mod:`importlib.resources`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import jinja2

from .errors import Nb2ProdError


def template_dir(name: str) -> Path:
    """The directory of one template set (``release``, ``report``, ``container``, ...)."""
    root = files(f"{__package__}.templates")
    path = Path(str(root)) / name
    if not path.is_dir():
        raise Nb2ProdError(
            f"nb2prod's templates are missing: no {path}",
            hint="The installation is incomplete; reinstall nb2prod (pip install --force-reinstall nb2prod).",
        )
    return path


def render_template(
    template: str, context: Mapping[str, Any], *, html: bool, templates: str = "report"
) -> bytes:
    """A template of ``templates/<templates>``, strict (undefined is an error), autoescaped for
    HTML."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dir(templates)),
        undefined=jinja2.StrictUndefined,
        autoescape=html,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    return environment.get_template(template).render(**context).encode()


def cache_root() -> Path:
    """nb2prod's own state on this machine: ``$NB2PROD_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/nb2prod`` (``~/.cache/nb2prod``): the run cache and the destinations' claims."""
    configured = os.environ.get("NB2PROD_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nb2prod"
