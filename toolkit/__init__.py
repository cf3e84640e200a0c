"""nb2prod: turn an annotated Jupyter notebook into a verified BentoML release.

The Python API (``from nb2prod import package, check, score``) is in :mod:`nb2prod.api`;
scoring a Spark DataFrame is :func:`nb2prod.spark.score`. It is loaded on
first use, so importing a light part of nb2prod (the serving runtime, the kernel probe) does not
import papermill, BentoML's CLI or the packaging stages.
"""

from __future__ import annotations

from typing import Any

from .version import __version__

__all__ = ["__version__", "check", "package", "score"]


def __getattr__(name: str) -> Any:
    if name in ("check", "package", "score"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
