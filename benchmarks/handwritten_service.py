"""The baseline of benchmarks/serve.py: the iris model served by hand, the minimal BentoML way."""

import json
import os
from pathlib import Path

import bentoml
import numpy as np
import skops.io
from pydantic import BaseModel

SPECIES = ("setosa", "versicolor", "virginica")


class Flower(BaseModel):
    sepal_length: float
    sepal_width: float
    petal_length: float
    petal_width: float


@bentoml.service
class Handwritten:
    def __init__(self) -> None:
        model_dir = Path(os.environ["BENCH_RELEASE"]) / "model"
        info = json.loads((model_dir / "model.json").read_text())
        self.model = skops.io.load(model_dir / info["file"], trusted=info["trusted"])

    def answer(self, flowers: list[Flower]) -> list[dict]:
        rows = [[f.sepal_length, f.sepal_width, f.petal_length, f.petal_width] for f in flowers]
        probabilities = self.model.predict_proba(np.array(rows))
        return [
            {"species": SPECIES[int(p.argmax())], "confidence": round(float(p.max()), 6)}
            for p in probabilities
        ]

    @bentoml.api(route="/predict", input_spec=Flower)
    def predict(self, **fields: float) -> dict:
        return self.answer([Flower(**fields)])[0]

    @bentoml.api(route="/predict_batch")
    def predict_batch(self, inputs: list[Flower]) -> dict:
        return {"results": self.answer(inputs)}
