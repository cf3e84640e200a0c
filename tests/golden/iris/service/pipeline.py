"""The notebook's service cells, extracted by nb2prod <version>.

Source: iris.ipynb (sha256 <sha256>).
Setup cells come first, then the contract, pre/postprocessing and fallback cells in notebook
order. Each block names the cell it came from; edit the notebook, not this file.
"""


# ---- cell 2 (setup) ----
#| nb2prod: setup
from typing import Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

SPECIES = ("setosa", "versicolor", "virginica")



# ---- cell 3 (contract) ----
#| nb2prod: contract
class Input(BaseModel):
    """One iris flower, measured in centimetres."""

    model_config = ConfigDict(extra="forbid")

    sepal_length: float = Field(gt=0, le=10, description="Sepal length in cm")
    sepal_width: float = Field(gt=0, le=10, description="Sepal width in cm")
    petal_length: float = Field(gt=0, le=10, description="Petal length in cm")
    petal_width: float = Field(gt=0, le=10, description="Petal width in cm")


class Output(BaseModel):
    """The predicted species."""

    species: Literal["setosa", "versicolor", "virginica"] = Field(description="Predicted species")
    confidence: Optional[float] = Field(
        default=None, ge=0, le=1,
        description="Probability of the predicted species; null when the fallback rule answered",
    )



# ---- cell 7 (preprocess) ----
#| nb2prod: preprocess
def preprocess(inputs: list[Input]) -> np.ndarray:
    """One row per flower, columns in the order the model was trained on."""
    return np.array(
        [[i.sepal_length, i.sepal_width, i.petal_length, i.petal_width] for i in inputs]
    )



# ---- cell 8 (predict) ----
def predict(model, features: np.ndarray) -> np.ndarray:
    """Class probabilities, so the service can report a confidence."""
    return model.predict_proba(features)



# ---- cell 9 (postprocess) ----
#| nb2prod: postprocess
def postprocess(raw: np.ndarray, inputs: list[Input]) -> list[Output]:
    best = raw.argmax(axis=1)
    return [
        Output(species=SPECIES[k], confidence=round(float(row[k]), 6))
        for k, row in zip(best, raw)
    ]



# ---- cell 10 (fallback) ----
#| nb2prod: fallback
def fallback(inp: Input) -> Output:
    """A fixed rule on petal size (about 95% accurate on iris); never touches the model."""
    if inp.petal_length < 2.5:
        return Output(species="setosa")
    if inp.petal_width < 1.75:
        return Output(species="versicolor")
    return Output(species="virginica")


