"""iris-classifier 1.0.0: the BentoML service nb2prod <version> generated from iris.ipynb.

Routes (nb2prod SPEC section 6):
  POST /v1/predict        one Input as flat JSON -> {"output", "model_version", "degraded", "reason"}
  POST /v1/predict_batch  {"inputs": [Input, ...]} -> {"results": [envelope, ...]}
  GET  /v1/metadata       release metadata and evaluation summary
  /v2/...                 the Open Inference Protocol (KServe V2, Triton): health, model metadata, infer
  GET  /livez /readyz /metrics  (BentoML's own)
The notebook's code is pipeline.py; how requests are answered (guard, fallback, batching, metrics,
logs, auth) is nb2prod's runtime, copied into runtime/ (its sha256s are in metadata.json);
this release's switches are in metadata.json and monitoring.json. Do not edit by hand.
"""

from pathlib import Path

import bentoml

from . import pipeline
from .runtime import startup
from .runtime.app import Handlers, Release, install, v1_app, v2_app

RELEASE = Release.load(Path(__file__).parent, pipeline)
Input = RELEASE.Input  # pipeline.Input, bodies read with strict JSON types (runtime/limits.py)


@bentoml.asgi_app(v1_app(RELEASE), path="/v1")
@bentoml.asgi_app(v2_app(RELEASE), path="/v2")
@bentoml.service(
    name=RELEASE.metadata.release.name,
    workers=RELEASE.metadata.service.workers,
    logging={"access": {"enabled": False}},  # nb2prod's JSON access line replaces BentoML's
)
class IrisClassifier(Handlers):
    release = RELEASE

    @bentoml.on_deployment
    def check_release() -> None:
        # once, before any worker starts: no token or a tampered model stops `bentoml serve` here
        RELEASE.check()

    @bentoml.api(route="/v1/predict", input_spec=Input, output_spec=RELEASE.Prediction)
    async def predict(self, **fields):
        return await self.predict_one(fields)

    @bentoml.api(route="/v1/predict_batch", input_spec=RELEASE.BatchRequest, output_spec=RELEASE.BatchResult)
    async def predict_batch(self, inputs):
        return await self.predict_many(inputs)


install(IrisClassifier, RELEASE)
startup.imported()  # this module and its imports are loaded (runtime/startup.py)
