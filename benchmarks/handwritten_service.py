"""A baseline of benchmarks/serve.py: the iris model served by hand, the minimal BentoML way."""

import bentoml
from iris_model import Flower, answer, load


@bentoml.service
class Handwritten:
    def __init__(self) -> None:
        self.model = load()

    @bentoml.api(route="/predict", input_spec=Flower)
    def predict(self, **fields: float) -> dict:
        return answer(self.model, [Flower(**fields)])[0]

    @bentoml.api(route="/predict_batch")
    def predict_batch(self, inputs: list[Flower]) -> dict:
        return {"results": answer(self.model, inputs)}
