"""Writes tests/notebooks/check/*.ipynb: one tiny notebook per `nb2prod check` finding.

Each notebook carries what `check` must report in ``metadata.nb2prod_test.expect`` (cell, code,
severity); tests/test_check.py reads them. Run this script after changing a fixture and commit the
notebooks with it: `python tests/notebooks/make_check_fixtures.py`.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

HERE = Path(__file__).resolve().parent / "check"

SETUP = "#| nb2prod: setup\nimport numpy as np\nfrom pydantic import BaseModel, Field"
CONTRACT = (
    "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float = Field(ge=0, le=10)\n\n"
    "class Output(BaseModel):\n    y: float"
)
PREPROCESS = (
    "#| nb2prod: preprocess\ndef preprocess(inputs):\n    return np.array([[i.x] for i in inputs])"
)
MODEL = "#| nb2prod: model\nmodel = fit(data)"
EXAMPLES = '#| nb2prod: examples\nexamples = [{"x": 1.0}]'
TRAIN = "#| nb2prod: train\ndata = load()\ndef fit(d):\n    return d"


def base(**replace: str) -> list[str]:
    cells = {"setup": SETUP, "contract": CONTRACT, "train": TRAIN, "preprocess": PREPROCESS,
             "model": MODEL, "examples": EXAMPLES}  # fmt: skip
    cells.update(replace)
    return [v for v in cells.values() if v]


def expect(cell: int, code: str, severity: str = "error") -> dict[str, object]:
    return {"cell": cell, "code": code, "severity": severity}


# name -> (cells, expected findings); cell indices: 0 setup, 1 contract, 2 train, 3 preprocess,
# 4 model, 5 examples, 6+ extra cells appended
FIXTURES: dict[str, tuple[list[str], list[dict[str, object]]]] = {
    "clean": (
        base(
            preprocess=(
                "#| nb2prod: preprocess\nLIMIT = 10\n\n"
                "def preprocess(inputs, scale=1.0):\n"
                "    local = [min(i.x * scale, LIMIT) for i in inputs]\n"
                "    return np.array([[v] for v in local])"
            )
        ),
        [],
    ),
    "NB100_unknown_role": (base(train="#| nb2prod: training\ndata = 1"), [expect(2, "NB100")]),
    "NB100_two_roles": (
        base() + ["#| nb2prod: setup\nimport os  # TAGS nb2prod:train"],
        [expect(6, "NB100")],
    ),
    "NB101_missing_preprocess": (base(preprocess=""), [expect(None, "NB101")]),  # type: ignore[arg-type]
    "NB102_two_model_cells": (base() + ["#| nb2prod: model\nmodel = 2"], [expect(6, "NB102")]),
    "NB110_syntax_error": (
        base(preprocess="#| nb2prod: preprocess\ndef preprocess(inputs)\n    return inputs"),
        [expect(3, "NB110")],
    ),
    "NB200_hidden_dependency": (
        base(
            train="#| nb2prod: train\nimport pandas as pd\ndef deco(f):\n    return f\n"
            "data = 1\ndef fit(d):\n    return d",
            preprocess=(
                "#| nb2prod: preprocess\n@deco\ndef preprocess(inputs):\n"
                "    return pd.DataFrame({'x': [i.x for i in inputs]})"
            ),
        ),
        [expect(3, "NB200"), expect(3, "NB200")],
    ),
    "NB200_skip_cell": (
        base()
        + [
            "#| nb2prod: skip\nscale = 3.0",
            "#| nb2prod: fallback\ndef fallback(inp):\n    return Output(y=inp.x * scale)",
        ],
        [expect(7, "NB200")],
    ),
    "NB202_fitted_state": (
        base(
            train="#| nb2prod: train\nscaler = 2.0\ndata = 1\ndef fit(d):\n    return d",
            preprocess=(
                "#| nb2prod: preprocess\ndef preprocess(inputs):\n"
                "    return np.array([[i.x * scaler] for i in inputs])"
            ),
        ),
        [expect(2, "NB202", "info")],
    ),
    "NB202_parameter": (
        ["scale = 2.0"]
        + base(
            preprocess="#| nb2prod: preprocess\ndef preprocess(inputs):\n"
            "    return np.array([[i.x * scale] for i in inputs])"
        ),
        [expect(0, "NB202", "info")],
    ),
    "NB204_fitted_from_environment": (
        base(
            train=(
                "#| nb2prod: train\nimport os\nsuffix = os.environ.get('DB_PASSWORD', '')\n"
                "scaler = 2.0\ndata = 1\ndef fit(d):\n    return d"
            ),
            preprocess=(
                "#| nb2prod: preprocess\ndef preprocess(inputs):\n"
                "    return np.array([[i.x * scaler + len(suffix)] for i in inputs])"
            ),
        ),
        [expect(2, "NB204"), expect(2, "NB202", "info")],
    ),
    "NB203_read_at_import": (
        base(
            train="#| nb2prod: train\nUNIT = 'cm'\nLOW = 0\nfactor = 3\ndata = 1\n"
            "def fit(d):\n    return d",
            contract=(
                "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float = Field(ge=0, le=10)\n"
                "    unit: str = UNIT\n\n"
                "class Output(BaseModel):\n    y: float"
            ),
            preprocess=(
                "#| nb2prod: preprocess\ndef preprocess(inputs, low=LOW):\n"
                "    return np.array([[i.x * factor] for i in inputs])"
            ),
        ),
        [expect(1, "NB203"), expect(3, "NB203"), expect(2, "NB202", "info")],
    ),
    "NB201_never_defined": (
        base(
            preprocess="#| nb2prod: preprocess\ndef preprocess(inputs):\n    return pd.DataFrame(inputs)"
        ),
        [expect(3, "NB201")],
    ),
    "NB205_local_module_unused": (
        base(setup=SETUP + "\nfrom p_helpers import describe_columns"),
        [expect(0, "NB205", "warning")],
    ),
    "NB205_local_module_used": (
        base(
            setup=SETUP + "\nimport p_helpers",
            preprocess=(
                "#| nb2prod: preprocess\ndef preprocess(inputs):\n"
                "    return np.array([[p_helpers.scaled(i.x)] for i in inputs])"
            ),
        ),
        [expect(0, "NB205")],
    ),
    "NB205_not_installed": (
        base(setup=SETUP + "\nimport nb2prod_no_such_module as nope"),
        [expect(0, "NB205")],
    ),
    "NB210_wrong_signature": (
        base(
            preprocess="#| nb2prod: preprocess\ndef preprocess(inputs, scale):\n    return inputs"
        ),
        [expect(3, "NB210")],
    ),
    "NB210_missing_function": (
        base(preprocess="#| nb2prod: preprocess\ndef prepare(inputs):\n    return inputs"),
        [expect(3, "NB210")],
    ),
    "NB211_not_pydantic": (
        base(
            contract=(
                "#| nb2prod: contract\nfrom dataclasses import dataclass\n\n@dataclass\nclass Input:\n"
                "    x: float\n\nclass Output(BaseModel):\n    y: float"
            )
        ),
        [expect(1, "NB211")],
    ),
    "NB212_no_examples": (
        base(examples="#| nb2prod: examples\nrows = [{'x': 1.0}]"),
        [expect(5, "NB212")],
    ),
    "NB212_model_made_in_train": (
        base(
            train="#| nb2prod: train\ndata = 1\nmodel = dict(w=data)\nfor epoch in range(3):\n"
            "    model['w'] += 1",
            model="#| nb2prod: model\nprint(model)",
        ),
        [expect(4, "NB212")],
    ),
    "NB214_unbounded_numbers": (
        base(
            contract=(
                "#| nb2prod: contract\nfrom typing import Annotated, Optional\n\n"
                "class Input(BaseModel):\n    x: float = Field(ge=0, le=10)\n"
                "    age: Optional[float] = Field(None, description='years')\n"
                "    rooms: Annotated[int, Field(ge=1)]\n    label: str = 'a'\n\n"
                "class Output(BaseModel):\n    y: float"
            ),
            examples='#| nb2prod: examples\nexamples = [{"x": 1.0, "age": 22, "rooms": 3}, '
            '{"x": 2.0, "age": 38.5, "rooms": 5}]',
        ),
        [expect(1, "NB214", "warning"), expect(1, "NB214", "warning")],
    ),
    "NB213_output_two_fields": (
        base(
            contract=(
                "#| nb2prod: contract\nclass Input(BaseModel):\n    x: float = Field(ge=0, le=10)\n\n"
                "class Output(BaseModel):\n    y: float\n    z: float"
            )
        ),
        [expect(1, "NB213")],
    ),
    "NB300_pip_in_service": (
        base(
            setup="#| nb2prod: setup\n!pip install numpy\nimport numpy as np\nfrom pydantic import BaseModel, Field"
        ),
        [expect(0, "NB300")],
    ),
    "NB301_magic_in_train": (
        base(train="#| nb2prod: train\n%matplotlib inline\ndata = 1\ndef fit(d):\n    return d"),
        [expect(2, "NB301", "warning")],
    ),
    "NB302_star_import": (
        base(
            setup="#| nb2prod: setup\nfrom numpy import *\nimport numpy as np\nfrom pydantic import BaseModel, Field"
        ),
        [expect(0, "NB302")],
    ),
    "NB311_unseeded": (
        base(
            train=(
                "#| nb2prod: train\nfrom sklearn.model_selection import train_test_split\n"
                "data = np.random.rand(10)\na, b = train_test_split(data)\ndef fit(d):\n    return d"
            )
        ),
        [expect(2, "NB311", "warning"), expect(2, "NB311", "warning")],
    ),
    "NB400_aws_key_in_source": (
        base(
            train='#| nb2prod: train\nAWS_ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"\ndata = 1\ndef fit(d):\n    return d'
        ),
        [expect(2, "NB400")],
    ),
    "NB400_password_in_url": (
        base(
            train='#| nb2prod: train\nDB = "postgresql://admin:hunter2pass@db.internal:5432/prod"\ndata = 1\ndef fit(d):\n    return d'
        ),
        [expect(2, "NB400")],
    ),
    "NB400_private_key": (
        base()
        + [
            'KEY = """-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"""'
        ],
        [expect(6, "NB400")],
    ),
}


# fixtures with an nb2prod.toml: each in its own folder, HERE/<name>/<name>.ipynb beside it
CONFIGS: dict[str, str] = {
    "NB215_config_names_nothing": (
        '[gates]\naccuracy = ">= 0.9"\n\n[evaluation]\neval_x = "holdout_X"\n'
        'output_field = "label"\n'
    ),
}
FIXTURES["NB215_config_names_nothing"] = (
    base() + ['#| nb2prod: evaluate\nholdout_x = [[1.0]]\nmetrics = {"f1": 1.0}'],
    [expect(None, "NB215"), expect(None, "NB215"), expect(None, "NB215")],  # type: ignore[arg-type]
)
# a module beside the notebooks, as a data scientist's helpers are (NB205)
HELPERS = (
    "def describe_columns(df):\n    return df.describe()\n\n\ndef scaled(x):\n    return x * 2\n"
)


def path_of(name: str) -> Path:
    """Where the fixture ``name`` is written."""
    return HERE / name / f"{name}.ipynb" if name in CONFIGS else HERE / f"{name}.ipynb"


def build(
    name: str, sources: list[str], expected: list[dict[str, object]]
) -> nbformat.NotebookNode:
    cells = []
    for src in sources:
        cell = new_code_cell(src)
        if "# TAGS " in src:  # fixture shorthand: the comment's words become the cell's tags
            cell.metadata["tags"] = src.split("# TAGS ", 1)[1].split()
        cells.append(cell)
    if name == "NB202_parameter":
        cells[0].metadata["tags"] = ["parameters"]
    node = new_notebook(cells=cells)
    node.metadata["nb2prod_test"] = {"expect": expected}
    return node


def extra_fixtures() -> dict[str, nbformat.NotebookNode]:
    """Findings that live in saved execution state rather than in source."""
    out_of_order = build("NB310_out_of_order", base(), [expect(3, "NB310", "warning")])
    for index, count in enumerate([1, 2, 5, 3, 6, 7]):
        out_of_order.cells[index].execution_count = count
    big = build("NB312_big_output", base(), [expect(2, "NB312", "warning")])
    big.cells[2].outputs = [new_output("stream", name="stdout", text="x" * (600 * 1024))]
    token = build("NB401_token_in_output", base(), [expect(2, "NB401")])
    token.cells[2].outputs = [
        new_output(
            "stream", name="stdout", text="token: ghp_1234567890abcdefghijklmnopqrstuvwxyzAB\n"
        )
    ]
    return {
        "NB310_out_of_order": out_of_order,
        "NB312_big_output": big,
        "NB401_token_in_output": token,
    }


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for old in [*HERE.glob("*.ipynb"), *HERE.glob("*/*.ipynb"), *HERE.glob("*/nb2prod.toml")]:
        old.unlink()
    (HERE / "p_helpers.py").write_text(HELPERS)
    notebooks = {name: build(name, *spec) for name, spec in FIXTURES.items()}
    notebooks.update(extra_fixtures())
    for name, node in notebooks.items():
        path_of(name).parent.mkdir(exist_ok=True)
        nbformat.write(node, path_of(name))
        if name in CONFIGS:
            (path_of(name).parent / "nb2prod.toml").write_text(CONFIGS[name])
    print(f"wrote {len(notebooks)} fixtures to {HERE}")


if __name__ == "__main__":
    main()
