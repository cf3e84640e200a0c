"""Storing a fitted object (the model, fitted state) in the safest format that round-trips.

skops first: loading constructs only known types. When the object refers to code defined in
the notebook, only cloudpickle can store it (by value); otherwise joblib. Each candidate is
loaded back through the runtime's own loader and must pass ``check`` (the caller runs the
examples with it); the first that does is kept, the others are deleted.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from ..runtime import model as runtime
from .failure import Fail
from .protocol import StoredObject

NOTEBOOK_MODULES = frozenset({"__main__", "__mp_main__"})
# the module of each format, which the service must then install
FORMAT_MODULES = {"skops": "skops", "cloudpickle": "cloudpickle", "joblib": "joblib"}


def referenced_modules(obj: Any) -> set[str]:
    """Every top-level module whose classes or functions pickling ``obj`` refers to."""
    seen: set[str] = set()

    class Probe(pickle.Pickler):
        def persistent_id(self, value: Any) -> None:
            owner = value if isinstance(value, type) or callable(value) else type(value)
            module = getattr(owner, "__module__", None)
            if isinstance(module, str):
                seen.add(module.split(".")[0])
            return None

    Probe(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(obj)
    return seen


def _skops(obj: Any, path: Path) -> tuple[tuple[str, ...], tuple[str, ...] | None] | str:
    """(the untrusted types skops needs to load ``path``, the scikit-learn estimators in it),
    or why skops cannot store ``obj``."""
    try:
        sio = runtime.import_skops_io()

        sio.dump(obj, path)
        untrusted = tuple(sio.get_untrusted_types(file=path))
    except Exception as exc:
        return f"skops: {type(exc).__name__}: {exc}"
    if any(t.split(".")[0] in NOTEBOOK_MODULES for t in untrusted):
        return "skops: it refers to code defined in the notebook"
    return untrusted, _estimators(sio, path)


def _estimators(sio: ModuleType, path: Path) -> tuple[str, ...] | None:
    """The types in the skops file ``path`` that skops trusts as scikit-learn estimators (its
    list of every estimator, read where it is made), or None where this skops has no such list."""
    listed = getattr(getattr(sio, "_trusted_types", None), "SKLEARN_ESTIMATOR_TYPE_NAMES", None)
    if not isinstance(listed, list):
        return None
    return tuple(sorted(runtime.skops_file_types(path) & set(listed)))


def store(obj: Any, directory: Path, stem: str, check: Callable[[Any], str | None]) -> StoredObject:
    """``obj`` written to ``directory/stem.<format>``; ``check(loaded)`` returns why a loaded
    copy is not good enough, or None. The file name in the result is relative to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    candidates: list[tuple[str, str, tuple[str, ...], str]] = []
    notes: list[str] = []
    skops_file = f"{stem}.skops"
    skops = _skops(obj, directory / skops_file)
    estimators: tuple[str, ...] | None = None
    if isinstance(skops, str):
        notes.append(skops)
    else:
        trusted, estimators = skops
        why = "loading constructs only scikit-learn and numpy types" + (
            " and the trusted types listed" if trusted else ""
        )
        candidates.append(("skops", skops_file, trusted, why))
    if referenced_modules(obj) & NOTEBOOK_MODULES:
        import cloudpickle

        pickle_file = f"{stem}.pkl"
        with (directory / pickle_file).open("wb") as handle:
            cloudpickle.dump(obj, handle)
        why = (
            "it refers to code defined in the notebook, which only cloudpickle serializes by "
            "value; loading runs code"
        )
        candidates.append(("cloudpickle", pickle_file, (), why))
    else:
        import joblib

        joblib_file = f"{stem}.joblib"
        joblib.dump(obj, directory / joblib_file)
        why = (
            "a pickle; loading runs code, so only the packaged file (sha256 checked) is ever loaded"
        )
        candidates.append(("joblib", joblib_file, (), why))
    chosen: StoredObject | None = None
    for fmt, file, types, why in candidates:
        path = directory / file
        try:
            loaded = runtime.load_model(path, runtime.sha256_file(path), fmt, list(types))
            problem = check(loaded)
        except Exception as exc:
            problem = f"reloading failed ({type(exc).__name__}: {exc})"
        if problem is not None:
            notes.append(f"{fmt}: {problem}")
            continue
        if notes:
            why += " (" + "; ".join(notes) + ")"
        chosen = StoredObject(file=file, format=fmt, trusted=types, why=why,
                              estimators=estimators if fmt == "skops" else None)  # fmt: skip
        break
    for file in {skops_file, *(c[1] for c in candidates)}:
        if chosen is None or file != chosen.file:
            (directory / file).unlink(missing_ok=True)
    if chosen is None:
        raise Fail(
            f"`{stem}` could not be stored so that it answers the same after loading: "
            + "; ".join(notes)
        )
    return chosen
