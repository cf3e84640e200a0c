"""The model path of a release: load the packaged model, run the notebook's pipeline on a batch.

Shared by the served release, the kernel probe at package time and batch scoring, so all three
run the same code. Nothing here knows the notebook: callers pass its pipeline module in.
"""

from __future__ import annotations

import enum
import hashlib
import json
import time
import weakref
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


def load_model(path: Path, sha256: str, fmt: str, trusted: list[str]) -> Any:
    """Load the packaged model, refusing a file whose bytes are not the ones nb2prod packaged."""
    check_sha256(path, sha256)
    if fmt == "skops":
        import skops.io  # constructs only known types, plus the `trusted` ones model.json lists

        return skops.io.load(path, trusted=trusted)
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
        value = load_model(path, artifact.sha256, artifact.format, list(artifact.trusted))
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
    data = value.model_dump() if isinstance(value, pipeline.Output) else value
    return pipeline.Output.model_validate(data)


def validate_outputs(pipeline: ModuleType, values: list[Any]) -> list[Any]:
    """:func:`validate_output` for a batch in one pydantic-core call; when an item is invalid,
    each is validated alone, so the error raised is that Output's own, as for a single input."""
    output = pipeline.Output
    if len(values) == 1:
        return [validate_output(pipeline, values[0])]
    adapter = _OUTPUTS.get(output)
    if adapter is None:
        adapter = _OUTPUTS[output] = TypeAdapter(list[output])  # type: ignore[valid-type]
    data = [v.model_dump() if isinstance(v, output) else v for v in values]
    try:
        validated: list[Any] = adapter.validate_python(data)
    except ValidationError:
        return [validate_output(pipeline, v) for v in values]
    return validated


# list[Output] per Output class, gone with the class (a process may load many releases)
_OUTPUTS: weakref.WeakKeyDictionary[type, TypeAdapter[Any]] = weakref.WeakKeyDictionary()


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
