{% set c = cookiecutter._ctx %}"""{{ c.name }} {{ c.version }}: the BentoML service nb2prod {{ c.nb2prod_version }} generated from {{ c.notebook }}.

Routes (nb2prod SPEC section 6):
  POST /v1/predict        one Input as flat JSON -> {"output", "model_version", "degraded", "reason"}
  POST /v1/predict_batch  {"inputs": [Input, ...]} -> {"results": [envelope, ...]}
  GET  /v1/metadata       release metadata and evaluation summary
  GET  /livez /readyz /metrics  (BentoML's own)
The notebook's code lives in pipeline.py; this file only wires it to HTTP. Do not edit by hand.
"""

import json
import logging
from pathlib import Path
from typing import Literal, Optional

import bentoml
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import pipeline, runtime

logger = logging.getLogger("nb2prod.service")

HERE = Path(__file__).resolve().parent
MODEL = json.loads((HERE.parent / "model" / "model.json").read_text(encoding="utf-8"))
MODEL_PATH = HERE.parent / "model" / MODEL["file"]
METADATA = json.loads((HERE / "metadata.json").read_text(encoding="utf-8"))
MODEL_VERSION = {{ c.version | tojson }}
AUTH = {{ c.auth | tojson }}

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


async def metadata(request):
    return JSONResponse(
        {**METADATA, "bento_tag": f"{bentoml.server_context.bento_name}:{bentoml.server_context.bento_version}"}
    )


v1 = Starlette(routes=[Route("/metadata", metadata, methods=["GET"])])


@bentoml.asgi_app(v1, path="/v1")
@bentoml.service(name={{ c.name | tojson }}, workers={{ c.workers }})
class {{ c.class_name }}:
    @bentoml.on_deployment
    def check_release() -> None:
        # Runs once in the serving process before any worker starts, so a missing token or a
        # tampered model stops `bentoml serve` with this message instead of a respawn loop.
        runtime.api_token(AUTH)
        runtime.check_sha256(MODEL_PATH, MODEL["sha256"])
{%- if c.auth == "none" %}
        logger.warning('AUTH IS OFF: auth = "none" in the config, every /v1/* route is open')
{%- endif %}

    def __init__(self) -> None:
        self.model = runtime.load_model(MODEL_PATH, MODEL["sha256"], MODEL["format"], MODEL["trusted"])
        self.guard = runtime.Guard(
            timeout_ms={{ c.timeout_ms }},
            min_confidence={{ c.min_confidence }},
            failures={{ c.circuit_failures }},
            reset_s={{ c.circuit_reset_s }},
            disable_file={{ c.disable_file | tojson }},
        )
        self.metrics = runtime.Metrics()

    @bentoml.api(route="/v1/predict", input_spec=Input, output_spec=Prediction)
    async def predict(self, **fields) -> Prediction:
        # BentoML has validated the body against Input (400 naming the fields otherwise)
        try:
            return (await self.answer([Input.model_construct(**fields)]))[0]
        except runtime.NoAnswer as exc:
            return exc.response()

    @bentoml.api(route="/v1/predict_batch", output_spec=BatchResult)
    async def predict_batch(self, inputs: list[Input]) -> BatchResult:
        try:
            return BatchResult(results=await self.answer(inputs))
        except runtime.NoAnswer as exc:
            return exc.response()

    async def answer(self, inputs: list) -> list[Prediction]:
        reason = self.guard.admit()
        if reason is not None:
            return [self.fallback(inp, reason) for inp in inputs]
        try:
            # the model runs in the guard's thread pool; this coroutine only waits for it
            outputs = await self.guard.call(runtime.run, pipeline, self.model, inputs)
        except runtime.TIMEOUT_ERRORS:
            self.guard.record(ok=False)
            return [self.fallback(inp, "timeout") for inp in inputs]
        except Exception:
            if len(inputs) > 1:
                # one bad item must not degrade the others: retry the batch item by item
                return [(await self.answer([inp]))[0] for inp in inputs]
            logger.exception("model path failed; the fallback answers")
            self.guard.record(ok=False)
            return [self.fallback(inputs[0], "error")]
        self.guard.record(ok=True)
        return [
            self.fallback(inp, "low_confidence") if self.guard.low_confidence(out)
            else Prediction(output=out, model_version=MODEL_VERSION, degraded=False, reason=None)
            for inp, out in zip(inputs, outputs)
        ]

    def fallback(self, inp, reason: str) -> Prediction:
        self.metrics.fallbacks.labels(reason=reason).inc()
        logger.warning("the fallback answers (reason: %s)", reason)
{%- if c.has_fallback %}
        try:
            output = runtime.fallback(pipeline, inp)
        except Exception:
            logger.exception("the fallback failed too (reason %s)", reason)
            raise runtime.NoAnswer(reason, "the model could not answer and the fallback failed") from None
        return Prediction(output=output, model_version=MODEL_VERSION, degraded=True, reason=reason)
{%- else %}
        # the notebook has no `fallback` cell, so there is nothing to answer with
        raise runtime.NoAnswer(reason, "the model could not answer and the notebook defines no fallback")
{%- endif %}

{% if c.auth == "token" %}
{{ c.class_name }}.add_asgi_middleware(runtime.BearerAuth, auth=AUTH)
{%- endif %}
