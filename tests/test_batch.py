"""Batch scoring with the local engine, on small releases laid out here as `package` lays them out.

The release directories are written by hand (service/ with a pipeline.py and an exact copy of
nb2prod's runtime, model/, metadata, release.json with every file's sha256) so that each
behaviour gets a pipeline made for it; tests/e2e/test_score.py scores a packaged release and
compares with its served answers.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from nb2prod import runtime
from nb2prod.cli import main
from nb2prod.errors import ScoreError, TargetError
from nb2prod.release.writer import canonical_json, sha256_file
from nb2prod.runtime.schema import ModelManifest, dump
from nb2prod.scoring.job import ScoreRequest
from nb2prod.scoring.local import score
from nb2prod.scoring.run import score_file

from tests.factories import monitoring_plan, release_manifest, service_metadata

# y = factor * x; the model path raises for x == 13; confidence falls with y.
PIPELINE = """
from pydantic import BaseModel, ConfigDict, Field

class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")
    x: float = Field(ge=0, le=100)
    label: str = "none"

class Output(BaseModel):
    y: float
    confidence: float | None = None
    tags: list[str] = []

def preprocess(inputs):
    if any(i.x == 13 for i in inputs):
        raise ValueError("unlucky 13")
    return [i.x for i in inputs]

def predict(model, features):
    return [model["factor"] * f for f in features]

def postprocess(raw, inputs):
    return [
        Output(y=v, confidence=0.9 if v < 150 else 0.1, tags=[i.label])
        for v, i in zip(raw, inputs)
    ]
"""
FALLBACK = """
def fallback(inp):
    return Output(y=-1.0)
"""
# answers depend on the batch (each row is compared with the batch's mean): not batchable
BATCH_DEPENDENT = """
from pydantic import BaseModel

class Input(BaseModel):
    x: float

class Output(BaseModel):
    above: bool

def preprocess(inputs):
    return [i.x for i in inputs]

def predict(model, features):
    mean = sum(features) / len(features)
    return [f > mean for f in features]

def postprocess(raw, inputs):
    return [Output(above=v) for v in raw]
"""


def make_release(
    root: Path,
    source: str = PIPELINE + FALLBACK,
    *,
    min_confidence: float | None = None,
    batching: bool = True,
    model_bytes: bytes | None = None,
) -> Path:
    """A release directory as `nb2prod package` lays it out, around ``source``."""
    service = root / "service"
    shutil.copytree(
        Path(runtime.__file__).parent,
        service / "runtime",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (service / "__init__.py").write_text('"""test release"""\n')
    (service / "pipeline.py").write_text(textwrap.dedent(source))
    (root / "model").mkdir()
    joblib.dump({"factor": 2.0}, root / "model" / "model.joblib")
    if model_bytes is not None:
        (root / "model" / "model.joblib").write_bytes(model_bytes)
    model_sha = sha256_file(root / "model" / "model.joblib")
    manifest = ModelManifest(
        file="model.joblib", format="joblib", why="test", sha256=model_sha,
        cls="builtins.dict", variable="model",
    )  # fmt: skip
    (root / "model" / "model.json").write_bytes(canonical_json(dump(manifest)))
    metadata = service_metadata(
        name="doubler", version="1.2.3", auth="none", fallback="def fallback" in source,
        min_confidence=min_confidence, model_sha256=model_sha, disable_file=str(root / "disabled"),
        runtime_files={
            str(p.relative_to(service / "runtime")): sha256_file(p)
            for p in sorted((service / "runtime").glob("*.py"))
        },
    )  # fmt: skip
    (service / "metadata.json").write_bytes(canonical_json(dump(metadata)))
    (service / "monitoring.json").write_bytes(
        canonical_json(dump(monitoring_plan(batching=batching)))
    )
    files = {
        str(p.relative_to(root)): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
    release = release_manifest(
        files=files, name="doubler", version="1.2.3", bento_tag="doubler:test"
    )
    (root / "release.json").write_bytes(canonical_json(dump(release)))
    return root


ROWS = [
    {"id": "a", "x": 1.5, "label": "p"},
    {"id": "b", "x": 13.0, "label": "q"},  # the model raises: the fallback answers
    {"id": "c", "x": -4.0, "label": "r"},  # breaks the contract
    {"id": "d", "x": 99.0, "label": "s"},  # confidence 0.1
    {"id": "e", "x": 7.0, "label": None},  # label not given: its default
]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    frame = pd.DataFrame(rows)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:  # a field not given is left out, as a JSON client leaves it out
        lines = (json.dumps({k: v for k, v in r.items() if v is not None}) for r in rows)
        path.write_text("".join(line + "\n" for line in lines))
    return path


def read(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    if path.suffix == ".csv":
        return pd.read_csv(path, keep_default_na=False).to_dict("records")
    return [json.loads(line) for line in path.read_text().splitlines()]


def run(release: Path, source: Path, out: Path, **options: Any) -> Any:
    return score_file(
        ScoreRequest(target=str(release), input=str(source), output=str(out), **options)
    )


@pytest.fixture
def release(tmp_path: Path) -> Path:
    return make_release(tmp_path / "release")


def test_rows_get_the_services_answers_invalid_rows_go_to_the_errors_file(
    release: Path, tmp_path: Path
) -> None:
    source = write_rows(tmp_path / "rows.parquet", ROWS)
    summary = run(release, source, tmp_path / "out.parquet", keep=("id",), batch_size=4)
    assert read(tmp_path / "out.parquet") == [
        {"id": "a", "y": 3.0, "confidence": 0.9, "tags": '["p"]', "model_version": "1.2.3",
         "degraded": False, "reason": None},
        {"id": "b", "y": -1.0, "confidence": None, "tags": "[]", "model_version": "1.2.3",
         "degraded": True, "reason": "error"},
        {"id": "d", "y": 198.0, "confidence": 0.1, "tags": '["s"]', "model_version": "1.2.3",
         "degraded": False, "reason": None},
        {"id": "e", "y": 14.0, "confidence": 0.9, "tags": '["none"]', "model_version": "1.2.3",
         "degraded": False, "reason": None},
    ]  # fmt: skip
    assert read(tmp_path / "out.errors.jsonl") == [
        {"row": 2, "id": "c", "field": "x", "message": "Input should be greater than or equal to 0"}
    ]
    assert (summary.rows, summary.answered, summary.invalid, summary.unanswered) == (5, 4, 1, 0)
    assert summary.degraded == {"error": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out.errors.jsonl", "out.parquet", "release", "rows.parquet",
    ]  # fmt: skip


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_csv_and_json_lines_answer_like_parquet(release: Path, tmp_path: Path, suffix: str) -> None:
    parquet = write_rows(tmp_path / "rows.parquet", ROWS)
    run(release, parquet, tmp_path / f"expected{suffix}", keep=("id",))
    run(
        release,
        write_rows(tmp_path / f"rows{suffix}", ROWS),
        tmp_path / f"out{suffix}",
        keep=("id",),
    )
    assert (tmp_path / f"out{suffix}").read_text() == (tmp_path / f"expected{suffix}").read_text()
    assert read(tmp_path / "out.errors.jsonl") == read(tmp_path / "expected.errors.jsonl")


def test_a_line_that_is_not_a_json_object_is_an_invalid_row(release: Path, tmp_path: Path) -> None:
    source = tmp_path / "rows.jsonl"
    source.write_text(
        '{"x": 1}\n\n[1, 2]\n{"x": \n{"x": 2, "extra": true}\n{"x": 3, "label": null}\n'
    )
    summary = run(release, source, tmp_path / "out.jsonl")
    assert [r["y"] for r in read(tmp_path / "out.jsonl")] == [2.0, 4.0]  # other fields ignored
    errors = read(tmp_path / "out.errors.jsonl")
    assert [(e["row"], e["field"]) for e in errors] == [(1, None), (2, None), (4, "label")]
    assert errors[0]["message"] == "not a JSON object but list"
    assert errors[1]["message"].startswith("not valid JSON")
    assert errors[2]["message"] == "Input should be a valid string"  # null is not "not given"
    assert summary.invalid == 3


def test_low_confidence_and_disabled_answer_with_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = make_release(tmp_path / "release", min_confidence=0.5)
    source = write_rows(tmp_path / "rows.parquet", ROWS)
    summary = run(release, source, tmp_path / "out.parquet")
    assert [r["reason"] for r in read(tmp_path / "out.parquet")] == [
        None, "error", "low_confidence", None,
    ]  # fmt: skip
    assert summary.degraded == {"error": 1, "low_confidence": 1}
    monkeypatch.setenv("NB2PROD_MODEL_DISABLED", "1")
    summary = run(release, source, tmp_path / "off.parquet")
    assert {(r["y"], r["reason"]) for r in read(tmp_path / "off.parquet")} == {(-1.0, "disabled")}
    assert summary.degraded == {"disabled": 4}


def test_without_a_fallback_a_failing_row_goes_to_the_errors_file(tmp_path: Path) -> None:
    release = make_release(tmp_path / "release", PIPELINE)
    source = write_rows(tmp_path / "rows.parquet", ROWS)
    summary = run(release, source, tmp_path / "out.parquet", keep=("id",))
    assert [r["id"] for r in read(tmp_path / "out.parquet")] == ["a", "d", "e"]
    errors = read(tmp_path / "out.errors.jsonl")
    assert [(e["row"], e["id"], e["field"]) for e in errors] == [(1, "b", None), (2, "c", "x")]
    assert errors[0]["message"] == (
        "the model could not answer (ValueError: unlucky 13) and the notebook defines no fallback"
    )
    assert (summary.answered, summary.invalid, summary.unanswered) == (3, 1, 1)


def test_a_pipeline_that_answers_batches_differently_is_called_row_by_row(tmp_path: Path) -> None:
    release = make_release(tmp_path / "release", BATCH_DEPENDENT, batching=False)
    source = write_rows(tmp_path / "rows.parquet", [{"x": 1.0}, {"x": 5.0}])
    summary = run(release, source, tmp_path / "out.parquet")
    # alone, no row is above its own mean; in one batch the second would be
    assert [r["above"] for r in read(tmp_path / "out.parquet")] == [False, False]
    assert summary.one_by_one == "off: test"


def test_a_failed_job_leaves_no_output_and_keeps_the_earlier_one(
    release: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.parquet"
    out.write_bytes(b"an earlier result")
    source = tmp_path / "rows.jsonl"  # the kept column changes type after the first piece
    source.write_text('{"id": 1, "x": 1}\n{"id": 2, "x": 2}\n{"id": {"a": 1}, "x": 3}\n')
    with pytest.raises(ScoreError, match="changes type"):
        run(release, source, out, keep=("id",), batch_size=2)
    assert out.read_bytes() == b"an earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "release", "rows.jsonl"]


def test_a_modified_release_is_refused_before_anything_is_written(
    release: Path, tmp_path: Path
) -> None:
    pipeline = release / "service" / "pipeline.py"
    pipeline.write_text(pipeline.read_text().replace("factor", "factor * 0 +"))
    with pytest.raises(TargetError, match="pipeline.py: sha256 differs"):
        run(release, write_rows(tmp_path / "rows.parquet", ROWS), tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_missing_columns_are_refused_up_front(release: Path, tmp_path: Path) -> None:
    source = write_rows(tmp_path / "rows.csv", [{"id": "a", "X": 1.0}])
    with pytest.raises(ScoreError, match="no column 'x', which Input requires"):
        run(release, source, tmp_path / "out.csv")
    with pytest.raises(ScoreError, match="--keep nope: the input has no such column"):
        run(release, write_rows(tmp_path / "ok.csv", ROWS), tmp_path / "out.csv", keep=("nope",))
    with pytest.raises(ScoreError, match="unknown table format '.xlsx'"):
        run(release, source, tmp_path / "out.xlsx")


def test_worker_processes_give_the_same_output(release: Path, tmp_path: Path) -> None:
    rows = [{"id": str(i), "x": float(i % 120), "label": "w"} for i in range(3000)]
    source = write_rows(tmp_path / "rows.parquet", rows)
    one = run(release, source, tmp_path / "one.parquet", keep=("id",), batch_size=250)
    two = run(release, source, tmp_path / "two.parquet", keep=("id",), workers=2, batch_size=250)
    assert read(tmp_path / "one.parquet") == read(tmp_path / "two.parquet")
    assert read(tmp_path / "one.errors.jsonl") == read(tmp_path / "two.errors.jsonl")
    assert (one.answered, one.invalid) == (two.answered, two.invalid) == (2525, 475)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_model_that_cannot_be_loaded_stops_the_job_with_its_reason(
    tmp_path: Path, workers: int
) -> None:
    release = make_release(tmp_path / "release", model_bytes=b"not a pickle")
    source = write_rows(tmp_path / "rows.parquet", ROWS)
    with pytest.raises(ScoreError, match="the release's model cannot be loaded: KeyError"):
        run(release, source, tmp_path / "out.parquet", workers=workers)
    assert not (tmp_path / "out.parquet").exists()


def test_the_python_api_scores_a_dataframe_keeping_its_index(release: Path) -> None:
    frame = pd.DataFrame(
        {"x": [1.0, float("nan"), 200.0], "label": ["p", "q", None], "other": [1, 2, 3]},
        index=["r1", "r2", "r3"],
    )
    scored = score(frame, release, keep=["other"])
    assert list(scored.index) == ["r1", "r2", "r3"]
    assert list(scored.columns) == [
        "other", "y", "confidence", "tags", "model_version", "degraded", "reason", "error",
    ]  # fmt: skip
    assert scored.loc["r1", "y"] == 2.0 and pd.isna(scored.loc["r1", "error"])
    assert json.loads(scored.loc["r2", "error"]) == [{"field": "x", "message": "Field required"}]
    assert json.loads(scored.loc["r3", "error"])[0]["field"] == "x"


def test_the_command_prints_a_summary(release: Path, tmp_path: Path) -> None:
    source = write_rows(tmp_path / "rows.parquet", ROWS)
    result = CliRunner().invoke(
        main, ["score", str(release), str(source), str(tmp_path / "o.csv"), "--keep", "id"]
    )
    assert result.exit_code == 0, result.output
    assert "scored 5 rows with doubler 1.2.3" in result.output
    assert "answered   4 (fallback: error 1)" in result.output
    assert "invalid    1" in result.output
    result = CliRunner().invoke(
        main, ["score", str(release), str(source), "o.csv", "--master", "x"]
    )
    assert result.exit_code == 2 and "--master is a Spark setting" in result.output


def test_rows_of_a_table_map_to_request_bodies() -> None:
    from nb2prod.scoring.tables import arrow_rows

    batch = pa.table({"x": [1.0, None], "label": ["a", "b"], "other": [1, 2]})
    assert arrow_rows(batch, ["x", "label", "missing"]) == [
        {"x": 1.0, "label": "a"},
        {"label": "b"},
    ]


def test_an_empty_csv_cell_quoted_or_not_is_a_field_not_given(
    release: Path, tmp_path: Path
) -> None:
    source = tmp_path / "rows.csv"
    source.write_text('x,label\n1,\n2,""\n3,"007"\n')
    run(release, source, tmp_path / "out.jsonl")
    assert [r["tags"] for r in read(tmp_path / "out.jsonl")] == ['["none"]', '["none"]', '["007"]']


def test_every_entry_point_refuses_a_batch_size_below_one(release: Path, tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0]})
    with pytest.raises(
        ScoreError, match=r"batch size \(--batch-size\) must be at least 1 \(got 0\)"
    ):
        score(frame, release, batch_size=0)
    source = tmp_path / "in.csv"
    source.write_text("x\n1.0\n")
    request = ScoreRequest(str(release), str(source), str(tmp_path / "out.csv"), batch_size=0)
    with pytest.raises(ScoreError, match="must be at least 1"):
        score_file(request)
    assert not (tmp_path / "out.csv").exists()
