"""Fitted state that looks like training rows (issue 22, finding 4): `train_X` (889 rows) shipped
because it was under [artifacts] max_rows, while the service only read `train_X.columns`. It is a
warning that says what the service reads from it and how to export only that."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from nb2prod.notebook import dataflow
from nb2prod.notebook.annotations import annotate
from nb2prod.probe import RESULT_FILE, run
from nb2prod.probe.artifacts import row_warnings
from nb2prod.probe.protocol import ArtifactPlan, ArtifactRef, ProbeResult
from nb2prod.runtime.schema import load

from tests.conftest import code, minimal_cells, notebook
from tests.test_probe import PIPELINE, namespace, plan


def fitted(preprocess: str) -> dataflow.FittedValue:
    cells = minimal_cells()
    cells[2] = code("#| nb2prod: preprocess\n" + preprocess)
    cells.append(code("#| nb2prod: train\ntrain_X = frame.drop(columns=['y'])"))
    analysis = dataflow.analyse(annotate(notebook(*cells), Path("nb.ipynb")))
    (value,) = analysis.fitted
    return value


@pytest.mark.parametrize(
    ("preprocess", "reads"),
    [
        (  # Titanic: the training columns, to reindex a request's one-hot frame
            "def preprocess(inputs):\n    frame = pd.get_dummies(pd.DataFrame(inputs))\n"
            "    return frame.reindex(columns=train_X.columns, fill_value=0)",
            ("train_X.columns",),
        ),
        (
            "def preprocess(inputs):\n    m = train_X.median(numeric_only=True)\n"
            "    return [[i.x, len(train_X.columns), m] for i in inputs]",
            ("train_X.median(numeric_only=True)", "train_X.columns"),
        ),
        (  # the value itself: the whole of it is needed
            "def preprocess(inputs):\n    return pd.concat([train_X.head(0), train_X])",
            (),
        ),
    ],
)
def test_the_analysis_finds_what_the_service_reads_from_a_fitted_value(
    preprocess: str, reads: tuple[str, ...]
) -> None:
    value = fitted(preprocess)
    assert value.name == "train_X" and value.reads == reads


def ref(reads: tuple[str, ...]) -> ArtifactRef:
    return ArtifactRef(
        name="train_X", cell=5, label="cell 5 (train) `train_X = ...`", role="train",
        read_by=("preprocess (cell 2)",), reads=reads,
    )  # fmt: skip


TRAIN_X = pd.DataFrame({"Age": np.arange(889.0), "Fare": np.arange(889.0)})


def test_many_rows_under_max_rows_are_a_warning_naming_what_to_export_instead() -> None:
    plan = ArtifactPlan(refs=(ref(("train_X.columns",)),), max_rows=1000)
    (warning,) = row_warnings({"train_X": TRAIN_X}, plan)
    assert warning.startswith(
        "`train_X` (from cell 5 (train) `train_X = ...`, read by preprocess (cell 2)) is a "
        "DataFrame of 889 rows x 2 columns ("
    )
    assert "it ships as fitted state because it is under [artifacts] max_rows = 1000" in warning
    assert warning.endswith(
        "but the service reads only `train_X.columns` from it. Export only that: "
        "`train_X_columns = list(train_X.columns)` in a train cell, and read `train_X_columns` "
        "in preprocess (cell 2)."
    )
    whole = row_warnings({"train_X": TRAIN_X}, ArtifactPlan(refs=(ref(()),)))
    assert "preprocess (cell 2) reads the whole value" in whole[0]
    assert '[artifacts] allow = ["train_X"]' in whole[0]
    # few rows, a value allowed by name, a value that is no table: nothing to say
    assert row_warnings({"train_X": TRAIN_X.head(100)}, plan) == ()
    allowed = ArtifactPlan(refs=plan.refs, allow=("train_X",))
    assert row_warnings({"train_X": TRAIN_X}, allowed) == ()
    assert row_warnings({"train_X": list(TRAIN_X.columns)}, plan) == ()
    assert len(row_warnings({"train_X": TRAIN_X}, ArtifactPlan(refs=plan.refs, warn_rows=500)))
    assert not row_warnings({"train_X": TRAIN_X}, ArtifactPlan(refs=plan.refs, warn_rows=889))


def test_the_probe_reports_the_warning_and_still_ships_the_value(tmp_path: Path) -> None:
    pipeline = PIPELINE.replace(
        "    return np.array([[i.x] for i in inputs])",
        "    return np.array([[i.x * len(train_X.columns) / 2] for i in inputs])",
    )
    the_plan = plan(
        tmp_path, pipeline=pipeline, artifacts=ArtifactPlan(refs=(ref(("train_X.columns",)),))
    )
    run(namespace(train_X=TRAIN_X), the_plan.model_dump_json())
    result = load(ProbeResult, Path(the_plan.out_dir) / RESULT_FILE)
    assert [a.name for a in result.artifacts] == ["train_X"]
    (warning,) = result.warnings
    assert "the service reads only `train_X.columns` from it" in warning
