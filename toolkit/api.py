"""nb2prod's Python API: the jobs of the command line as functions (SPEC section 4).

    from nb2prod import check, package, score
    report = check("notebooks/iris.ipynb")
    result = package("notebooks/iris.ipynb", parameters={"C": 0.5})
    scored = score(pandas.read_parquet("rows.parquet"), result.release_dir, keep=["id"])

Each function takes what the command takes and returns the typed result the command prints.
Errors are :class:`nb2prod.errors.Nb2ProdError` subclasses with a message and a hint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .notebook.check import CheckReport, check_path
from .pipeline.run import PackageRequest, PackageResult
from .pipeline.run import package as _package
from .progress import Progress
from .scoring.local import score

__all__ = ["check", "package", "score"]


def check(notebook: str | Path) -> CheckReport:
    """Static checks of one notebook, no kernel (``nb2prod check``)."""
    return check_path(Path(notebook))


def package(
    notebook: str | Path,
    *,
    config: str | Path | None = None,
    out: str | Path | None = None,
    parameters: Mapping[str, Any] | None = None,
    enforce_gates: bool = True,
    allow_drift: bool = False,
    allow_breaking: bool = False,
    use_cache: bool = True,
    replace: bool = False,
    reuse_unhashed_data: bool = False,
    progress: Progress | None = None,
) -> PackageResult:
    """The verified release of ``notebook`` (``nb2prod package``)."""
    request = PackageRequest(
        notebook=Path(notebook),
        config=Path(config) if config is not None else None,
        out=Path(out) if out is not None else None,
        parameters=MappingProxyType(dict(parameters or {})),
        enforce_gates=enforce_gates,
        allow_drift=allow_drift,
        allow_breaking=allow_breaking,
        use_cache=use_cache,
        replace=replace,
        reuse_unhashed_data=reuse_unhashed_data,
    )
    return _package(request, progress)
