"""The iris model of a release and the answer the baselines give (hand-written BentoML, bare
Starlette): the very model file the release ships, the same rounding as the notebook."""

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import skops.io
from pydantic import BaseModel

SPECIES = ("setosa", "versicolor", "virginica")


class Flower(BaseModel):
    sepal_length: float
    sepal_width: float
    petal_length: float
    petal_width: float


def load() -> Any:
    """The model of the release in BENCH_RELEASE."""
    model_dir = Path(os.environ["BENCH_RELEASE"]) / "model"
    info = json.loads((model_dir / "model.json").read_text())
    return skops.io.load(model_dir / info["file"], trusted=info["trusted"])


def answer(model: Any, flowers: list[Flower]) -> list[dict[str, Any]]:
    rows = [[f.sepal_length, f.sepal_width, f.petal_length, f.petal_width] for f in flowers]
    probabilities = model.predict_proba(np.array(rows))
    return [
        {"species": SPECIES[int(p.argmax())], "confidence": round(float(p.max()), 6)}
        for p in probabilities
    ]
