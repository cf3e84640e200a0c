"""The evaluation report: baselines, slices, the previous release, latency, pictures, model card."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import make_column_transformer
from sklearn.datasets import load_iris
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    r2_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from tests.conftest import code, notebook, write_notebook
from tests.e2e.conftest import Run, nb2prod

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

DATA = (
    "import pandas as pd\nrng = np.random.default_rng(0)\n"
    "df = pd.DataFrame({'x': rng.uniform(0, 10, 300), 'region': rng.choice(['north', 'south'], 300)})\n"
    "df['y'] = 3 * df['x'] + 2 * (df['region'] == 'south') + rng.normal(0, 1, 300)\n"
    "train_df, eval_df = df.iloc[:200], df.iloc[200:]\n"
    "eval_X, eval_y = eval_df[['x', 'region']], eval_df['y']"
)
SALES_CELLS = [
    code("alpha = 1.0", "parameters"),
    code(
        "#| nb2prod: setup\nfrom typing import Literal\nimport numpy as np\nimport pandas as pd\n"
        "from pydantic import BaseModel"
    ),
    code(  # the encoder knows two regions: the contract admits only those (the contract probe)
        "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float\n"
        "    region: Literal['north', 'south']\n\nclass Output(BaseModel):\n    y: float\n"
    ),
    code("#| nb2prod: train\n" + DATA),
    code(
        "#| nb2prod: model\nfrom sklearn.compose import make_column_transformer\n"
        "from sklearn.linear_model import Ridge\nfrom sklearn.pipeline import make_pipeline\n"
        "from sklearn.preprocessing import OneHotEncoder\n"
        "model = make_pipeline(make_column_transformer((OneHotEncoder(), ['region']),"
        " remainder='passthrough'), Ridge(alpha=alpha))\n"
        "model.fit(train_df[['x', 'region']], train_df['y'])"
    ),
    code(
        "#| nb2prod: preprocess\ndef preprocess(inputs):\n"
        "    return pd.DataFrame([{'x': i.x, 'region': i.region} for i in inputs])"
    ),
    code(
        "#| nb2prod: evaluate\nfrom sklearn.metrics import r2_score\n"
        "metrics = {'r2': r2_score(eval_y, model.predict(eval_X))}"
    ),
    code(
        "#| nb2prod: examples\nexamples = [{'x': 1.0, 'region': 'north'}, {'x': 7.5, 'region': 'south'}]"
    ),
]
SALES_CONFIG = """name = "sales"
version = "{version}"
[service]
auth = "none"
[evaluation]
slices = ["region"]
max_regression = {{ r2 = 0.01 }}
[card]
limitations = "Synthetic data with two regions."
"""


def sales_data() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    namespace: dict[str, object] = {"np": np}
    exec(DATA, namespace)  # the notebook's own data cell
    return namespace["train_df"], namespace["eval_X"], namespace["eval_y"]  # type: ignore[return-value]


def report(release: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((release / "evaluation" / "report.json").read_text())


def test_baseline_figures_match_scikit_learns_dummy_classifier(
    iris_release: tuple[Path, Run],
) -> None:
    X, y = load_iris(return_X_y=True)
    _, eval_X, _, eval_y = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    dummy = DummyClassifier(strategy="most_frequent").fit(eval_X, eval_y)
    holdout = report(iris_release[0])["holdout"]
    assert holdout["task"] == "classification" and holdout["rows"] == len(eval_y)
    # eval_X is features: the notebook's predict (probabilities) picks the most likely class
    assert holdout["path"].startswith("predict(model, eval_X) (cell 8 ")
    assert holdout["path"].endswith(", most likely class")
    assert holdout["baseline"]["accuracy"] == pytest.approx(dummy.score(eval_X, eval_y), rel=1e-12)
    expected_f1 = f1_score(eval_y, dummy.predict(eval_X), average="macro", zero_division=0)
    assert holdout["baseline"]["f1_macro"] == pytest.approx(expected_f1, rel=1e-12)
    notebook_metrics = report(iris_release[0])["metrics"]
    assert holdout["model"]["accuracy"] == pytest.approx(notebook_metrics["accuracy"], rel=1e-12)
    assert sum(map(sum, holdout["confusion"])) == len(eval_y)


def test_latency_of_the_serving_path_is_reported(iris_release: tuple[Path, Run]) -> None:
    latency = {entry["batch"]: entry for entry in report(iris_release[0])["latency"]}
    assert set(latency) == {1, 32}
    for entry in latency.values():
        assert 0 < entry["p50_ms"] <= entry["p95_ms"]
        assert 0 < entry["model_p50_ms"] <= entry["model_p95_ms"]
    assert latency[32]["p50_ms_per_row"] < latency[1]["p50_ms_per_row"]  # batching pays


def test_model_card_and_markdown_report(iris_release: tuple[Path, Run]) -> None:
    release = iris_release[0]
    card = (release / "MODEL_CARD.md").read_text()
    assert "Data Science <ds@example.com>" in card
    assert "Not for botanical or any other real decisions." in card  # [card] intended_use
    assert "knows no other species" in card and "_Source: markdown cell 0 of the notebook._" in card
    assert "`sepal_length` (number, required)" in card and "accuracy | 0.9778" in card
    markdown = (release / "evaluation" / "report.md").read_text()
    assert "| accuracy | 0.9778 | >= 0.9 | pass |" in markdown
    assert "majority class" in markdown and "| 32 | 20 |" in markdown


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (CI installs it)")
def test_report_html_opens_in_chromium_with_pictures_and_no_console_errors(
    iris_release: tuple[Path, Run], tmp_path: Path
) -> None:
    html = (iris_release[0] / "evaluation" / "report.html").read_text()
    assert "http://" not in html and "https://" not in html  # self-contained
    probe = tmp_path / "probe.html"
    # the report itself has no script; the probe appends one that checks every picture decoded
    probe.write_text(
        html.replace(
            "</body>",
            "<script>window.onload = () => { const i = [...document.images];"
            " document.title = 'images ' + i.length + ' decoded ' +"
            " i.filter(x => x.complete && x.naturalWidth > 0).length; };</script></body>",
        )
    )
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    title = re.search(r"<title>(.*?)</title>", proc.stdout)
    assert title is not None, proc.stderr[-2000:]
    # confusion matrix, latency histogram and the cold start's phases
    assert title.group(1) == "images 3 decoded 3"
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if "error" in line.lower() or "Uncaught" in line], console


def test_regression_slices_previous_release_and_max_regression(tmp_path: Path) -> None:
    (tmp_path / "nb2prod.toml").write_text(SALES_CONFIG.format(version="1.0.0"))
    path = write_notebook(tmp_path, "sales.ipynb", notebook(*SALES_CELLS))
    first = nb2prod("package", path, cwd=tmp_path)
    assert first.code == 0, first.stdout + first.stderr
    release = tmp_path / "dist" / "sales-1.0.0"
    holdout = report(release)["holdout"]
    train_df, eval_X, eval_y = sales_data()
    dummy = DummyRegressor(strategy="mean").fit(eval_X, eval_y).predict(eval_X)
    assert holdout["task"] == "regression"
    # eval_X holds rows of Input: scored the way the service answers them
    assert holdout["path"] == "preprocess -> predict -> postprocess, Output.y"
    assert report(release)["robustness"]["share"] == 1.0
    assert holdout["baseline"]["mae"] == pytest.approx(mean_absolute_error(eval_y, dummy), rel=1e-9)
    assert holdout["baseline"]["rmse"] == pytest.approx(
        mean_squared_error(eval_y, dummy) ** 0.5, rel=1e-9
    )
    assert holdout["baseline"]["r2"] == pytest.approx(r2_score(eval_y, dummy), abs=1e-12)
    model = make_pipeline(
        make_column_transformer((OneHotEncoder(), ["region"]), remainder="passthrough"),
        Ridge(alpha=1.0),
    ).fit(train_df[["x", "region"]], train_df["y"])
    predicted = model.predict(eval_X)
    for region in ("north", "south"):
        mask = (eval_X["region"] == region).to_numpy()
        group = holdout["slices"]["region"][region]
        assert group["rows"] == int(mask.sum())
        assert group["mae"] == pytest.approx(
            mean_absolute_error(eval_y[mask], predicted[mask]), rel=1e-9
        )
    assert len(holdout["residuals"]) == len(eval_y)
    assert "_Source: [card] limitations in the config._" in (release / "MODEL_CARD.md").read_text()
    assert report(release)["previous_release"] is None

    (tmp_path / "nb2prod.toml").write_text(SALES_CONFIG.format(version="1.1.0"))
    worse = nb2prod("package", path, "-p", "alpha", "100000", cwd=tmp_path)
    assert worse.code == 1
    assert "regressed against the previous release" in worse.stderr
    row = next(line for line in worse.stderr.splitlines() if line.startswith("r2 "))
    assert row.split()[-1] == "0.01"
    assert not (tmp_path / "dist" / "sales-1.1.0").exists()

    forced = nb2prod("package", path, "-p", "alpha", "100000", "--no-gates", cwd=tmp_path)
    assert forced.code == 0, forced.stdout + forced.stderr
    recorded = report(tmp_path / "dist" / "sales-1.1.0")
    assert recorded["gates_enforced"] is False and recorded["passed"] is False
    (r2,) = recorded["previous_release"]["metrics"]
    assert r2["metric"] == "r2" and r2["passed"] is False and r2["worse_by"] > 0.01
    html = (tmp_path / "dist" / "sales-1.1.0" / "evaluation" / "report.html").read_text()
    assert (
        "--no-gates" in html and html.count("data:image/png;base64,") == 4
    )  # residuals, slices, latency, the cold start's phases


# ---------------------------------------------------------------- the service's threshold

CANCER_FIELDS = {"mean radius": "radius", "mean texture": "texture", "worst concavity": "concavity"}
CANCER_DATA = (
    "from sklearn.datasets import load_breast_cancer\n"
    "from sklearn.model_selection import train_test_split\n"
    "frame = load_breast_cancer(as_frame=True).frame\n"
    f"X = frame[list({list(CANCER_FIELDS)!r})].rename(columns={CANCER_FIELDS!r})\n"
    "y = frame['target']  # 0/1 ints: 1 is benign\n"
    "train_X, eval_X, train_y, eval_y = train_test_split(X, y, test_size=0.4, random_state=3,"
    " stratify=y)"
)
THRESHOLD_CELLS = [
    code("#| nb2prod: setup\nimport pandas as pd\nfrom pydantic import BaseModel, Field"),
    code(  # bounded fields: the contract probe stays within what the measurements can be
        "#| nb2prod: contract\nclass Input(BaseModel):\n"
        "    radius: float = Field(ge=0, le=60)\n    texture: float = Field(ge=0, le=80)\n"
        "    concavity: float = Field(ge=0, le=3)\n\n"
        "class Output(BaseModel):\n    label: bool\n    probability: float = Field(ge=0, le=1)\n"
    ),
    code("#| nb2prod: train\n" + CANCER_DATA),
    code(  # the model cell constructs the object; a later cell trains it (docs/annotations.md)
        "#| nb2prod: model\nfrom sklearn.linear_model import LogisticRegression\n"
        "from sklearn.pipeline import make_pipeline\nfrom sklearn.preprocessing import StandardScaler\n"
        "model = make_pipeline(StandardScaler(), LogisticRegression())"
    ),
    code("#| nb2prod: train\nmodel.fit(train_X, train_y)"),
    code(
        "#| nb2prod: preprocess\ndef preprocess(inputs):\n"
        "    return pd.DataFrame([i.model_dump() for i in inputs])[['radius', 'texture', 'concavity']]"
    ),
    code(
        "#| nb2prod: predict\ndef predict(model, features):\n"
        "    return model.predict_proba(features)[:, 1]"
    ),
    code(  # the notebook's own operating point: benign only when quite sure
        "#| nb2prod: postprocess\ndef postprocess(raw, inputs):\n"
        "    return [Output(label=bool(p >= 0.80), probability=float(p)) for p in raw]"
    ),
    code(
        "#| nb2prod: evaluate\nfrom sklearn.metrics import roc_auc_score\n"
        "metrics = {'auc': roc_auc_score(eval_y, model.predict_proba(eval_X)[:, 1])}"
    ),
    code(
        "#| nb2prod: examples\n"
        "examples = [{'radius': 12.0, 'texture': 18.0, 'concavity': 0.2},"
        " {'radius': 20.0, 'texture': 25.0, 'concavity': 0.6}]"
    ),
]


def test_bool_answers_against_int_labels_are_scored_at_the_services_threshold(
    tmp_path: Path,
) -> None:
    """eval_y holds 0/1 and Output.label is a bool the postprocess sets from 0.80: the report
    scores the service's own answers, not the probability at 0.5. The model is captured after
    the last cell, so the cell after the model cell that fits it is what gets packaged."""
    (tmp_path / "nb2prod.toml").write_text(
        # a name that is also an emoji code (rich printed the build's tag as "__tag__♋...")
        'name = "cancer"\nversion = "1.0.0"\n[service]\nauth = "none"\n'
    )
    path = write_notebook(tmp_path, "cancer.ipynb", notebook(*THRESHOLD_CELLS))
    run = nb2prod("package", path, cwd=tmp_path)
    assert run.code == 0, run.stdout + run.stderr
    release = tmp_path / "dist" / "cancer-1.0.0"
    holdout = report(release)["holdout"]

    import nb2prod as api

    namespace: dict[str, object] = {}
    exec(CANCER_DATA, namespace)  # the notebook's own data cell
    eval_X, eval_y = namespace["eval_X"], namespace["eval_y"]
    served = api.score(eval_X.reset_index(drop=True), release)  # the release's own answers
    assert len(served) == len(eval_y) and not served["degraded"].any()
    truth = eval_y.to_numpy()
    label, probability = served["label"].to_numpy(dtype=bool), served["probability"].to_numpy()
    assert holdout["path"] == "preprocess -> predict -> postprocess, Output.label"
    assert holdout["model"]["accuracy"] == pytest.approx(accuracy_score(truth, label), rel=1e-12)
    assert holdout["model"]["f1_macro"] == pytest.approx(
        f1_score(truth, label, average="macro"), rel=1e-12
    )
    at_half = accuracy_score(truth, probability >= 0.5)  # what scoring the probability gave
    assert holdout["model"]["accuracy"] != pytest.approx(at_half, abs=1e-9)
    assert holdout["model"]["roc_auc"] == pytest.approx(roc_auc_score(truth, probability), rel=1e-9)
    assert holdout["sources"] == {
        "accuracy": "Output.label", "f1_macro": "Output.label",
        "roc_auc": "Output.probability", "log_loss": "Output.probability",
    }  # fmt: skip
    above, upto = holdout["threshold"]
    assert above == pytest.approx(probability[~label].max()) and above < 0.8 <= upto
    assert upto == pytest.approx(probability[label].min())
    assert (
        "eval_y's int labels read as Output.label's bool: 0 as False, 1 as True" in holdout["notes"]
    )
    markdown = (release / "evaluation" / "report.md").read_text()
    assert "| accuracy | " in markdown and "| Output.label |" in markdown
    assert "held-out: accuracy " in run.stdout + run.stderr
    assert "from Output.label (threshold " in run.stdout + run.stderr
