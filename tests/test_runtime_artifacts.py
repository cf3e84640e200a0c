"""The served release's fitted state: checked before any worker starts, loaded by name."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import joblib
import pytest
from nb2prod.runtime import model as runtime
from nb2prod.runtime.app import Release
from nb2prod.runtime.schema import (
    ArtifactManifest,
    ModelManifest,
    dump,
)
from pydantic import BaseModel

from tests.factories import monitoring_plan, service_metadata


class Input(BaseModel):
    x: float


class Output(BaseModel):
    y: float


def write(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def release_with_fitted_state(root: Path) -> tuple[Release, ModuleType]:
    (root / "model").mkdir(parents=True)
    joblib.dump(2.0, root / "model" / "model.joblib")
    (root / "model" / "artifacts").mkdir()
    joblib.dump({"north": 1.5}, root / "model" / "artifacts" / "offsets.joblib")
    artifact = ArtifactManifest(
        name="offsets", file="artifacts/offsets.joblib", format="joblib", why="w",
        sha256=runtime.sha256_file(root / "model" / "artifacts" / "offsets.joblib"),
        size=1, cell=2, role="train", read_by=("preprocess (cell 3)",),
    )  # fmt: skip
    manifest = ModelManifest.model_validate(
        {
            "file": "model.joblib", "format": "joblib", "why": "w",
            "sha256": runtime.sha256_file(root / "model" / "model.joblib"),
            "class": "float", "variable": "model", "artifacts": [dump(artifact)],
        }
    )  # fmt: skip
    write(root / "model" / "model.json", dump(manifest))
    metadata = service_metadata(name="n", auth="none", fallback=False, batching_max_size=8,
                                max_batch_rows=10)  # fmt: skip
    write(root / "service" / "metadata.json", dump(metadata))
    write(root / "service" / "monitoring.json", dump(monitoring_plan(batching=False)))
    pipeline = ModuleType("pipeline")
    pipeline.Input, pipeline.Output = Input, Output  # type: ignore[attr-defined]
    return Release.load(root / "service", pipeline), pipeline


def test_fitted_state_is_hash_checked_at_start_and_loaded_by_name(tmp_path: Path) -> None:
    release, pipeline = release_with_fitted_state(tmp_path)
    release.check()  # the packaged bytes: starts
    runtime.load_artifacts(release.root / "model", release.model.artifacts, pipeline)
    assert pipeline.offsets == {"north": 1.5}  # type: ignore[attr-defined]
    tampered = tmp_path / "model" / "artifacts" / "offsets.joblib"
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    with pytest.raises(RuntimeError, match="offsets.joblib: sha256 is"):
        release.check()


def test_a_service_whose_files_changed_after_packaging_refuses_to_start(tmp_path: Path) -> None:
    """metadata.json records every file the bento carries: a line added to pipeline.py in the
    bento store, or a runtime file edited, stops the service before any worker starts."""
    release, pipeline = release_with_fitted_state(tmp_path)
    code = tmp_path / "service" / "pipeline.py"
    code.write_text("def preprocess(inputs):\n    return inputs\n")
    app = tmp_path / "service" / "runtime" / "app.py"
    app.parent.mkdir()
    app.write_text("# the runtime\n")
    metadata = service_metadata(
        name="n", auth="none", fallback=False, batching_max_size=8, max_batch_rows=10,
        runtime_files={"app.py": runtime.sha256_file(app)},
        files={"service/pipeline.py": runtime.sha256_file(code)},
    )  # fmt: skip
    write(tmp_path / "service" / "metadata.json", dump(metadata))
    release = Release.load(tmp_path / "service", pipeline)
    release.check()  # as packaged: starts
    code.write_text(code.read_text() + "open('/tmp/every-input', 'a').write(str(inputs))\n")
    with pytest.raises(RuntimeError, match=f"{code}: sha256 differs .* Refusing to start"):
        release.check()
    code.write_text("def preprocess(inputs):\n    return inputs\n")
    app.write_text("# the runtime, edited\n")
    with pytest.raises(RuntimeError, match="runtime/app.py: sha256 differs"):
        release.check()
