"""Finding 2 of issue 22 with a real kernel: loose pandas cells (a Kaggle-style Titanic) whose
preprocess builds a DataFrame from `model_dump()` and one-hot encodes it. A lone row with `Age`
None makes an object column that get_dummies drops, so the example is answered differently alone
than in the batch of examples. `package` says so right after the notebook ran, naming the
example, the field, both values, what preprocess made of the row and the fix; it used to build,
serve, and blame serialization."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import code, notebook, write_notebook
from tests.e2e.conftest import nb2prod

pytestmark = pytest.mark.e2e

CELLS = [
    code(
        "#| nb2prod: setup\nfrom typing import Literal, Optional\nimport pandas as pd\n"
        "from pydantic import BaseModel, Field\nfrom sklearn.linear_model import LogisticRegression"
    ),
    code(
        "#| nb2prod: contract\nclass Input(BaseModel):\n"
        "    Age: Optional[float] = Field(default=None, ge=0, le=100)\n"
        "    Sex: Literal['male', 'female']\n    Fare: float = Field(ge=0, le=600)\n\n"
        "class Output(BaseModel):\n    probability: float = Field(ge=0, le=1)\n"
    ),
    code(  # loose cells, as the notebook had them: drop, fillna, get_dummies
        "#| nb2prod: train\n"
        "df = pd.DataFrame({'Age': [22, 38, 26, 35, None, 54, 2, 27], "
        "'Sex': ['male', 'female', 'female', 'female', 'male', 'male', 'male', 'female'], "
        "'Fare': [7.25, 71.3, 7.9, 53.1, 8.05, 51.9, 21.1, 11.1], "
        "'Survived': [0, 1, 1, 1, 0, 0, 0, 1]})\n"
        "AGE = df['Age'].median()\n"
        "train_X = pd.get_dummies(df.drop(columns=['Survived'])).fillna(AGE)\n"
        "COLUMNS = list(train_X.columns)"
    ),
    code(
        "#| nb2prod: preprocess\ndef preprocess(inputs):\n"
        "    frame = pd.get_dummies(pd.DataFrame([i.model_dump() for i in inputs]))\n"
        "    return frame.reindex(columns=COLUMNS, fill_value=0).fillna(AGE)"
    ),
    code(
        "#| nb2prod: predict\ndef predict(model, features):\n"
        "    return model.predict_proba(features)[:, 1]"
    ),
    code(
        "#| nb2prod: model\n"
        "model = LogisticRegression(C=100).fit(train_X.assign(Age=train_X.Age * 10), df['Survived'])"
    ),
    code(
        "#| nb2prod: examples\nexamples = [{'Age': 54.0, 'Sex': 'female', 'Fare': 80.0}, "
        "{'Age': None, 'Sex': 'male', 'Fare': 7.25}]"
    ),
]


def test_an_example_answered_differently_alone_stops_package_naming_the_cause(
    tmp_path: Path,
) -> None:
    (tmp_path / "nb2prod.toml").write_text('name = "titanic"\n[service]\nauth = "none"\n')
    path = write_notebook(tmp_path, "titanic.ipynb", notebook(*CELLS))
    refused = nb2prod("package", path, "--out", tmp_path / "r", cwd=tmp_path)
    assert refused.code == 1, refused.stdout + refused.stderr
    err = refused.stderr
    assert "a single/batch difference: examples[1] gets Output.probability = " in err, err
    assert (
        "in the batch of examples; preprocess gives `Age` = 0 (int64) alone but 27 (float64) in a batch"
        in err
    )
    assert '"Age": null' in err
    assert "a None in `Age` makes an object column, which get_dummies drops" in err
    assert "build" not in refused.stdout.split("execute")[-1]  # stopped before build and verify
    assert not (tmp_path / "r").exists()
