"""The model path of a release: load the packaged model, run the notebook's pipeline on a batch.

Shared by the served release, the kernel probe at package time and batch scoring, so all three
run the same code. Nothing here knows the notebook: callers pass its pipeline module in.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import json
import sys
import time
import weakref
import zipfile
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

if TYPE_CHECKING:
    from .schema import ArtifactManifest


class PipelineError(RuntimeError):
    """The pipeline returned something the contract does not allow."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, sha256: str) -> None:
    actual = sha256_file(path)
    if actual != sha256:
        raise RuntimeError(
            f"{path}: sha256 is {actual} but the release recorded {sha256}; "
            "refusing to load a model file that is not the packaged one"
        )


# Importing skops.io lists scikit-learn's estimators (sklearn.utils.all_estimators), which imports
# every public sklearn package to find them (a third of a second beyond what a model needs), and
# with them sklearn.externals.array_api_compat.{torch,cupy,dask}, so torch (a second and hundreds
# of MB) when it is installed, though no estimator lives there and nothing of it is used.
_ARRAY_FRAMEWORKS = ("torch", "cupy", "dask")


def import_skops_io(estimators: Iterable[str] | None = None) -> ModuleType:
    """``skops.io``. Given ``estimators`` (model.json's: the scikit-learn estimators the release's
    skops files hold, which skops trusts by default), skops's list of estimators is those alone,
    and no other sklearn package is imported to list them: it trusts exactly what it would for
    those files, and refuses any other estimator. Else the array frameworks nothing has imported
    yet are blocked while it lists every estimator (the walk skips a package that cannot be
    imported); its trusted types are the same (tests/test_pregen.py). scikit-learn itself is
    imported first, as usual: scipy.stats, which it imports, looks for torch's classes in
    ``sys.modules`` and must not find a blocked one."""
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import sklearn.utils  # before the block: see above

    listing = sklearn.utils.all_estimators
    if estimators is not None:
        listed = [(name.rsplit(".", 1)[1], _type(name)) for name in sorted(set(estimators))]
        sklearn.utils.all_estimators = lambda *args, **kwargs: list(listed)
    blocked = [name for name in _ARRAY_FRAMEWORKS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import skops.io
    finally:
        sklearn.utils.all_estimators = listing
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return skops.io


def _type(name: str) -> type:
    """The class ``module.Qualname`` names (skops's type names)."""
    module, _, qualname = name.rpartition(".")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not isinstance(found, type):
        raise TypeError(f"{name} is not a class")
    return found


def skops_file_types(path: Path) -> set[str]:
    """Every ``module.Class`` a skops file's schema names (skops's own type names)."""
    with zipfile.ZipFile(path) as archive:
        schema = json.loads(archive.read("schema.json"))
    found: set[str] = set()
    pending = [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if isinstance(node.get("__module__"), str) and isinstance(node.get("__class__"), str):
                found.add(f"{node['__module__']}.{node['__class__']}")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def load_model(
    path: Path, sha256: str, fmt: str, trusted: list[str], estimators: Iterable[str] | None = None
) -> Any:
    """Load the packaged model, refusing a file whose bytes are not the ones nb2prod packaged;
    ``estimators``: model.json's (see :func:`import_skops_io`)."""
    check_sha256(path, sha256)
    if fmt == "skops":
        # constructs only known types, plus the `trusted` ones model.json lists
        return import_skops_io(estimators).load(path, trusted=trusted)
    if fmt == "cloudpickle":
        import pickle  # loading runs code: acceptable only because the hash matched above

        with path.open("rb") as handle:
            return pickle.load(handle)
    import joblib  # a pickle as well: same trust as above

    return joblib.load(path)


def load_artifacts(
    directory: Path, artifacts: Iterable[ArtifactManifest], pipeline: ModuleType
) -> None:
    """Load the release's fitted state (each file's sha256 checked, as for the model) into the
    pipeline module's namespace, where the notebook's service code reads it by name."""
    for artifact in artifacts:
        path = directory / artifact.file
        value = load_model(path, artifact.sha256, artifact.format, list(artifact.trusted),
                           artifact.estimators)  # fmt: skip
        setattr(pipeline, artifact.name, value)


def run(
    pipeline: ModuleType, model: Any, inputs: list[Any], timings: dict[str, float] | None = None
) -> list[Any]:
    """preprocess -> predict -> postprocess for one batch; every item validated as Output.

    With ``timings``, the seconds each stage took are stored in it (for the stage histograms).
    """
    start = time.perf_counter()
    features = pipeline.preprocess(inputs)
    preprocessed = time.perf_counter()
    raw = pipeline.predict(model, features)
    predicted = time.perf_counter()
    outputs = list(pipeline.postprocess(raw, inputs))
    if len(outputs) != len(inputs):
        raise PipelineError(f"postprocess returned {len(outputs)} outputs for {len(inputs)} inputs")
    validated = validate_outputs(pipeline, outputs)
    if timings is not None:
        timings["preprocess"] = preprocessed - start
        timings["predict"] = predicted - preprocessed
        timings["postprocess"] = time.perf_counter() - predicted
    return validated


def validate_output(pipeline: ModuleType, value: Any) -> Any:
    """Re-validate so an Output mutated or built with model_construct cannot break the contract."""
    output = pipeline.Output
    return output.model_validate(_as_data(output)(value))


def validate_outputs(pipeline: ModuleType, values: list[Any]) -> list[Any]:
    """:func:`validate_output` for a batch in one pydantic-core call; when an item is invalid,
    each is validated alone, so the error raised is that Output's own, as for a single input."""
    output = pipeline.Output
    if len(values) == 1:
        return [validate_output(pipeline, values[0])]
    adapter = _OUTPUTS.get(output)
    if adapter is None:
        adapter = _OUTPUTS[output] = TypeAdapter(list[output])  # type: ignore[valid-type]
    as_data = _as_data(output)
    try:
        validated: list[Any] = adapter.validate_python([as_data(v) for v in values])
    except ValidationError:
        return [validate_output(pipeline, v) for v in values]
    return validated


# list[Output] per Output class, gone with the class (a process may load many releases)
_OUTPUTS: weakref.WeakKeyDictionary[type, TypeAdapter[Any]] = weakref.WeakKeyDictionary()
_AS_DATA: weakref.WeakKeyDictionary[type, Any] = weakref.WeakKeyDictionary()


def _as_data(output: Any) -> Any:
    """How an Output instance is handed to its validation (anything else as it is): its field
    values as they stand (``__dict__``) when the class is flat, else ``model_dump()``.

    Flat: no nested model or dataclass (pydantic takes an instance of one as it is, so only a
    dump checks a nested value again) and no extra fields (kept outside ``__dict__``). For iris,
    a dump is 60% of the validation of a batch."""
    found = _AS_DATA.get(output)
    if found is None:
        flat = _is_flat(output)

        def found(value: Any) -> Any:
            if not isinstance(value, output):
                return value
            return value.__dict__ if flat else value.model_dump()

        _AS_DATA[output] = found
    return found


def _is_flat(output: Any) -> bool:
    if getattr(output, "model_config", {}).get("extra") == "allow":
        return False
    try:
        pending: list[Any] = [output.__pydantic_core_schema__]
    except AttributeError:
        return False
    models = 0
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            kind = node.get("type")
            if kind in ("dataclass", "definitions", "definition-ref"):
                return False
            models += kind == "model"
            pending.extend(node.values())
        elif isinstance(node, (list, tuple)):
            pending.extend(node)
    return models == 1


def fallback(pipeline: ModuleType, inp: Any) -> Any:
    """The notebook's fallback for one input, validated as Output."""
    return validate_output(pipeline, pipeline.fallback(inp))


def category_key(value: Any) -> str:
    """How a categorical value is counted for drift: strings as they are, enums by their value,
    anything else as JSON (``3`` -> ``"3"``, ``True`` -> ``"true"``), and what JSON has no type
    for (a ``date`` field) as the JSON string of its ``str()``. The reference the probe records at
    package time and the service's observations both use this one encoding."""
    key = value.value if isinstance(value, enum.Enum) else value
    return key if isinstance(key, str) else json.dumps(key, default=str)
