"""iris-classifier 1.0.0: the BentoML service nb2prod <version> generated from iris.ipynb.

Routes (nb2prod SPEC section 6):
  POST /v1/predict        one Input as flat JSON -> {"output", "model_version", "degraded", "reason"}
  POST /v1/predict_batch  {"inputs": [Input, ...]} -> {"results": [envelope, ...]}
  GET  /v1/metadata       release metadata and evaluation summary
  GET  /livez /readyz /metrics  (BentoML's own)
The notebook's code lives in pipeline.py; this file only wires it to HTTP. Do not edit by hand.
"""

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Literal, Optional

import bentoml
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import openapi, pipeline, runtime, telemetry

logger = logging.getLogger("nb2prod.service")

HERE = Path(__file__).resolve().parent
MODEL = json.loads((HERE.parent / "model" / "model.json").read_text(encoding="utf-8"))
MODEL_PATH = HERE.parent / "model" / MODEL["file"]
METADATA = json.loads((HERE / "metadata.json").read_text(encoding="utf-8"))
MONITORING = json.loads((HERE / "monitoring.json").read_text(encoding="utf-8"))
SENSITIVE = frozenset(MONITORING["sensitive"])
MODEL_VERSION = "1.0.0"
AUTH = "token"

Input = pipeline.Input
Output = pipeline.Output
Reason = Literal["error", "timeout", "low_confidence", "circuit_open", "disabled"]


class Prediction(BaseModel):
    """One answer: the model's Output, or the fallback's with degraded=true and a reason."""

    output: Output
    model_version: str
    degraded: bool
    reason: Optional[Reason]


class BatchResult(BaseModel):
    results: list[Prediction]


class BatchRequest(BaseModel):
    """The body of /v1/predict_batch (BentoML builds the same from predict_batch's signature)."""

    inputs: Annotated[list[Input], Field(max_length=1000)]


def documented(bentoml_document: dict) -> dict:
    """/docs.json: BentoML's document with the /v1 routes described from the models above."""
    defs: dict = {}
    auth = AUTH == "token"
    v1 = {
        "/v1/predict": {"post": openapi.operation(
            "predict", "one Input -> one answer", Input.model_json_schema(), Prediction.model_json_schema(), defs, auth
        )},
        "/v1/predict_batch": {"post": openapi.operation(
            "predict_batch", "many Inputs -> one answer each, in order",
            BatchRequest.model_json_schema(), BatchResult.model_json_schema(), defs, auth,
        )},
        "/v1/metadata": {"get": openapi.operation(
            "metadata", "release metadata and evaluation summary", None, {"type": "object"}, defs, auth
        )},
    }
    document = openapi.rewrite(bentoml_document, v1, auth)
    document.setdefault("components", {}).setdefault("schemas", {}).update(defs)
    return document


async def metadata(request):
    return JSONResponse(
        {**METADATA, "bento_tag": f"{bentoml.server_context.bento_name}:{bentoml.server_context.bento_version}"}
    )


v1 = Starlette(routes=[Route("/metadata", metadata, methods=["GET"])])


@bentoml.asgi_app(v1, path="/v1")
@bentoml.service(
    name="iris-classifier",
    workers=1,
    # nb2prod's own access line (JSON, request id, outcome, redaction) replaces BentoML's
    logging={"access": {"enabled": False}},
)
class IrisClassifier:
    @bentoml.on_deployment
    def check_release() -> None:
        # Runs once in the serving process before any worker starts, so a missing token or a
        # tampered model stops `bentoml serve` with this message instead of a respawn loop.
        runtime.api_token(AUTH)
        runtime.check_sha256(MODEL_PATH, MODEL["sha256"])

    def __init__(self) -> None:
        telemetry.configure_logging()
        self.model = runtime.load_model(MODEL_PATH, MODEL["sha256"], MODEL["format"], MODEL["trusted"])
        self.guard = runtime.Guard(
            timeout_ms=250,
            min_confidence=0.3,
            failures=5,
            reset_s=30.0,
            disable_file="/tmp/nb2prod-iris-classifier.disabled",
        )
        self.metrics = telemetry.metrics(MONITORING)
        self.metrics.release.labels(
            name=METADATA["name"],
            version=METADATA["version"],
            contract_sha256=METADATA["contract_sha256"],
            bento_tag=f"{bentoml.server_context.bento_name}:{bentoml.server_context.bento_version}",
        ).set(1)
        self.drift = telemetry.Drift(MONITORING["drift"], self.metrics)
        # batching is on only if the config wants it and a batch answered as its items alone
        self.batcher = (
            runtime.Batcher(self.answer_detached, max_size=64)
            if MONITORING["batching"]["enabled"]
            else None
        )

    @bentoml.api(route="/v1/predict", input_spec=Input, output_spec=Prediction)
    async def predict(self, **fields) -> Prediction:
        # BentoML has validated the body against Input (400 naming the fields otherwise)
        inp = Input.model_construct(**fields)
        self.drift.observe((inp,))
        if self.batcher is None:
            return self.deliver((await self.answer([inp]))[0])
        future = self.batcher.enqueue(inp)
        if self.guard.timeout_s is None:
            return self.deliver(await future)
        try:  # the budget counts from arrival: time waiting for a batch is part of it
            result = await asyncio.wait_for(asyncio.shield(future), self.guard.timeout_s)
        except runtime.TIMEOUT_ERRORS:
            future.cancel()
            result = self.fallback(inp, "timeout")
        return self.deliver(result)

    @bentoml.api(route="/v1/predict_batch", output_spec=BatchResult)
    async def predict_batch(
        self, inputs: Annotated[list[Input], Field(max_length=1000)]
    ) -> BatchResult:
        if not inputs:
            return BatchResult(results=[])
        self.drift.observe(inputs)
        raw = await self.answer(inputs)
        results = [self.deliver(r) for r in raw]
        failed = next((r for r in raw if isinstance(r, runtime.NoAnswer)), None)
        if failed is not None:  # one item neither the model nor the fallback could answer: 503
            telemetry.note_outcome("unavailable", failed.reason)
            return failed.response()
        degraded = next((r for r in results if r.degraded), None)
        if degraded is not None:
            telemetry.note_outcome("degraded", degraded.reason)
        return BatchResult(results=results)

    def deliver(self, result):
        """Count, log and report (to the access line) what a request gets: answer, fallback or 503."""
        if isinstance(result, runtime.NoAnswer):
            self.metrics.fallbacks.labels(reason=result.reason).inc()
            telemetry.note_outcome("unavailable", result.reason)
            return result.response()
        if result.degraded:
            self.metrics.fallbacks.labels(reason=result.reason).inc()
            logger.warning("the fallback answers", extra={"fields": {"reason": result.reason}})
            telemetry.note_outcome("degraded", result.reason)
        return result

    async def answer_detached(self, inputs: list) -> list:
        telemetry.detach()  # the batcher's task serves many requests: no single request id
        return await self.answer(inputs)

    async def answer(self, inputs: list) -> list:
        """One Prediction or NoAnswer per input, in order."""
        reason = self.guard.admit()
        if reason is not None:
            return [self.fallback(inp, reason) for inp in inputs]
        timings: dict = {}
        try:
            # the model runs in the guard's thread pool; this coroutine only waits for it
            outputs = await self.guard.call(runtime.run, pipeline, self.model, inputs, timings)
        except runtime.TIMEOUT_ERRORS:
            self.guard.record(ok=False)
            return [self.fallback(inp, "timeout") for inp in inputs]
        except Exception as exc:
            if len(inputs) > 1:
                # one bad item must not degrade the others: retry the batch item by item
                return [(await self.answer([inp]))[0] for inp in inputs]
            telemetry.log_failure(logger, "model path failed; the fallback answers", exc, inputs, SENSITIVE)
            self.guard.record(ok=False)
            return [self.fallback(inputs[0], "error")]
        self.guard.record(ok=True)
        self.metrics.observe_call(len(inputs), timings)
        results = [
            self.fallback(inp, "low_confidence") if self.guard.low_confidence(out)
            else Prediction(output=out, model_version=MODEL_VERSION, degraded=False, reason=None)
            for inp, out in zip(inputs, outputs)
        ]
        self.metrics.observe_outputs([r.output for r in results if isinstance(r, Prediction) and not r.degraded])
        return results

    def fallback(self, inp, reason: str):
        """The fallback's Prediction, or NoAnswer (a 503) when there is none or it failed.

        Counted where it is delivered (deliver), so an answer computed but not sent is not counted.
        """
        try:
            output = runtime.fallback(pipeline, inp)
        except Exception as exc:
            telemetry.log_failure(logger, "the fallback failed too", exc, [inp], SENSITIVE)
            return runtime.NoAnswer(reason, "the model could not answer and the fallback failed")
        return Prediction(output=output, model_version=MODEL_VERSION, degraded=True, reason=reason)


IrisClassifier.add_asgi_middleware(openapi.CorrectedDocs, build=documented)
# the first middleware added is the outermost: every /v1/* request is measured and logged, 401s too
IrisClassifier.add_asgi_middleware(
    telemetry.Observe,
    monitoring=MONITORING,
    input_fields=list(Input.model_fields),
    model_version=MODEL_VERSION,
    log_bodies=False,
)
IrisClassifier.add_asgi_middleware(runtime.BearerAuth, auth=AUTH)
IrisClassifier.add_asgi_middleware(runtime.JsonOnly)
