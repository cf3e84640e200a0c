"""Batch scoring of the packaged iris release: the local engine, Spark's local mode and the
served release's ``/v1/predict`` give every row the same answer, and name the same fields for
rows that break the contract.

Spark runs in one session for the module (``local[2]``); its tests are skipped without Java or
PySpark (CI installs Debian's openjdk-17-jre-headless and the dev extra installs PySpark).
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from nb2prod.adapters import bento
from nb2prod.errors import ScoreError
from nb2prod.scoring.job import ScoreRequest
from nb2prod.scoring.run import score_file

from tests.conftest import IRIS, copy_iris
from tests.e2e.conftest import Run, nb2prod

pytestmark = pytest.mark.e2e
FIELDS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
ROWS = 3000
ENVELOPE = ("model_version", "degraded", "reason")


def generated_rows(count: int) -> list[dict[str, Any]]:
    """Flowers across the measured ranges; every tenth breaks a bound, every tenth lacks a field."""
    rng = random.Random(17)
    rows = []
    for i in range(count):
        row: dict[str, Any] = {"id": f"r{i}"}
        row.update({name: round(rng.uniform(0.1, 8.0), 2) for name in FIELDS})
        if i % 10 == 7:
            row[rng.choice(FIELDS)] = rng.choice([-1.0, 0.0, 10.5])
        elif i % 10 == 8:
            row[rng.choice(FIELDS)] = None  # not given
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def iris_release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """The iris example with a fallback timeout a loaded 2-core CI machine meets: the shipped
    250 ms gave one of ~2,400 served answers the fallback's (degraded) answer, and this module
    compares answers, not timeouts (tests/e2e/test_fallback.py tests those)."""
    work = tmp_path_factory.mktemp("iris-score")
    config = (IRIS.parent / "nb2prod.toml").read_text()
    assert "timeout_ms = 250" in config
    notebook = copy_iris(work, config.replace("timeout_ms = 250", "timeout_ms = 20000"))
    run = nb2prod("package", notebook, "--out", work / "dist" / "iris-classifier-1.0.0")
    assert run.code == 0, run.stdout + run.stderr
    return work / "dist" / "iris-classifier-1.0.0", run


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rows") / "flowers.parquet"
    pq.write_table(pa.Table.from_pylist(generated_rows(ROWS)), path)
    return path


@pytest.fixture(scope="module")
def local(
    iris_release: tuple[Path, Run], rows_file: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The command line's local engine, run as a user runs it: (output rows, errors lines)."""
    out = rows_file.parent / "local" / "scores.parquet"
    out.parent.mkdir()
    run = nb2prod("score", iris_release[0], rows_file, out, "--keep", "id", "--batch-size", "256")
    assert run.code == 0, run.stdout + run.stderr
    assert f"scored {ROWS:,} rows with iris-classifier 1.0.0" in run.stdout
    errors = [
        json.loads(line) for line in out.with_name("scores.errors.jsonl").read_text().splitlines()
    ]
    return pq.read_table(out).to_pylist(), errors


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    if shutil.which("java") is None:
        pytest.skip("no java on PATH (apt-get install openjdk-17-jre-headless)")
    pytest.importorskip("pyspark", reason="PySpark is not installed (pip install 'nb2prod[spark]')")
    from nb2prod.scoring.spark import session

    spark = session("local[2]")
    spark.conf.set("spark.sql.shuffle.partitions", "2")
    yield spark
    spark.stop()


def test_served_release_answers_every_row_as_local_scoring(
    iris_release: tuple[Path, Run],
    local: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    answered = {row["id"]: row for row in local[0]}
    invalid: dict[str, list[tuple[str, str]]] = {}
    for line in local[1]:
        invalid.setdefault(line["id"], []).append((line["field"], line["message"]))
    assert len(answered) + len(invalid) == ROWS and len(invalid) == ROWS // 5
    tag = json.loads((iris_release[0] / "release.json").read_text())["bento_tag"]
    headers = {"Authorization": "Bearer score-token-not-secret"}
    with (
        bento.serve(tag, env={"NB2PROD_API_TOKEN": "score-token-not-secret"}) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=30) as client,
    ):
        for row in generated_rows(ROWS):
            body = {k: v for k, v in row.items() if k in FIELDS and v is not None}
            response = client.post("/v1/predict", json=body)
            if row["id"] in invalid:
                assert response.status_code == 400, row
                named = [(".".join(d["loc"]), d["msg"]) for d in response.json()["detail"]]
                assert sorted(named) == sorted(invalid[row["id"]]), row
                continue
            assert response.status_code == 200, (row, response.text)
            served = response.json()
            assert served["degraded"] is False, (
                row,
                served,
            )  # the model answered, not the fallback
            mine = answered[row["id"]]
            assert {k: mine[k] for k in served["output"]} == served["output"], row
            assert {k: mine[k] for k in ENVELOPE} == {k: served[k] for k in ENVELOPE}, row


def test_spark_scores_every_row_as_the_local_engine(
    spark: Any,
    iris_release: tuple[Path, Run],
    rows_file: Path,
    local: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    out = tmp_path / "scores.parquet"
    summary = score_file(
        ScoreRequest(
            target=str(iris_release[0]), input=str(rows_file), output=str(out), keep=("id",),
            batch_size=256, engine="spark",
        )
    )  # fmt: skip
    assert summary.rows == ROWS and summary.invalid == ROWS // 5
    assert pq.read_table(out).to_pylist() == local[0]  # Spark's part files, in order
    errors = pd.concat(
        pd.read_json(part, lines=True)
        for part in sorted(out.with_name("scores.errors.jsonl").glob("part-*"))
    )
    assert errors.to_dict("records") == local[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.errors.jsonl", "scores.parquet"]


def test_the_spark_api_answers_as_the_pandas_api(
    spark: Any, iris_release: tuple[Path, Run], rows_file: Path
) -> None:
    import nb2prod
    import nb2prod.spark

    frame = pd.read_parquet(rows_file)
    expected = nb2prod.score(frame, iris_release[0], keep=["id"])
    scored = nb2prod.spark.score(spark.read.parquet(str(rows_file)), iris_release[0], keep=["id"])
    got = pd.DataFrame(scored.collect(), columns=scored.columns)
    assert list(got.columns) == list(expected.columns)
    assert got.astype(object).where(got.notna(), None).to_dict("records") == expected.astype(
        object
    ).where(expected.notna(), None).to_dict("records")


def test_a_failed_spark_job_leaves_no_output(
    spark: Any, iris_release: tuple[Path, Run], tmp_path: Path
) -> None:
    flower = dict.fromkeys(FIELDS, 1.0)
    lines = [{"id": i, **flower} for i in range(300)] + [{"id": {"not": "a number"}, **flower}]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = tmp_path / "scores.jsonl"
    with pytest.raises(ScoreError, match="the Spark job failed"):
        score_file(
            ScoreRequest(
                target=str(iris_release[0]), input=str(source), output=str(out), keep=("id",),
                batch_size=100, engine="spark",
            )
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]
