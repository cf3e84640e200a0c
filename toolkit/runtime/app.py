"""The behaviour of a generated service; its ``service.py`` only declares the BentoML class.

:class:`Release` reads what a release carries (metadata.json, monitoring.json, model.json) and
builds the pydantic models of SPEC section 6 around the notebook's ``Input`` and ``Output``.
:class:`Handlers` is the service's base class: the answer path (guard, batching, fallback,
metrics) shared by ``/v1/predict`` and ``/v1/predict_batch``. :func:`install` adds the
middlewares and the ``/v1/metadata`` route.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model

from . import auth, guard, limits, model, openapi, routes, telemetry
from .schema import ModelManifest, MonitoringPlan, ServiceMetadata, load

logger = logging.getLogger("nb2prod.service")

Reason = Literal["error", "timeout", "low_confidence", "circuit_open", "disabled"]


@dataclass(frozen=True)
class Release:
    """One release's service: its files, its pipeline module and the API models built on them."""

    root: Path  # the release directory (service/ and model/ are below it)
    pipeline: ModuleType
    metadata: ServiceMetadata
    monitoring: MonitoringPlan
    model: ModelManifest
    Input: type[BaseModel]  # the notebook's Input as bodies are read (limits.body_model)
    Prediction: type[BaseModel]
    BatchRequest: type[BaseModel]
    BatchResult: type[BaseModel]

    @classmethod
    def load(cls, service_dir: Path, pipeline: ModuleType) -> Release:
        root = service_dir.resolve().parent
        metadata = load(ServiceMetadata, service_dir / "metadata.json")
        prediction = create_model(
            "Prediction",
            __doc__="One answer: the model's Output, or the fallback's with degraded=true and a reason.",
            output=(pipeline.Output, ...),
            model_version=(str, ...),
            degraded=(bool, ...),
            reason=(Reason | None, ...),
        )
        rows = metadata.service.max_batch_rows
        inp = limits.body_model(pipeline.Input, metadata.service.input_types)
        return cls(
            root=root,
            pipeline=pipeline,
            metadata=metadata,
            monitoring=load(MonitoringPlan, service_dir / "monitoring.json"),
            model=load(ModelManifest, root / "model" / "model.json"),
            Input=inp,
            Prediction=prediction,
            BatchRequest=limits.body_model(
                create_model(
                    "BatchRequest",
                    __doc__="The body of /v1/predict_batch.",
                    inputs=(Annotated[list[inp], Field(max_length=rows)], ...),  # type: ignore[valid-type,arg-type]
                ),
                metadata.service.input_types,
            ),
            BatchResult=create_model("BatchResult", results=(list[prediction], ...)),
        )

    @property
    def version(self) -> str:
        return self.metadata.release.version

    @property
    def model_path(self) -> Path:
        return self.root / "model" / self.model.file

    @property
    def sensitive(self) -> frozenset[str]:
        return frozenset(self.monitoring.sensitive)

    def check(self) -> None:
        """Before any worker starts: a token when auth wants one, a kill-switch file that can be
        checked, the packaged model's bytes."""
        auth.api_token(self.metadata.release.auth)
        guard.check_kill_switch(self.metadata.service.disable_file)
        model.check_sha256(self.model_path, self.model.sha256)
        for artifact in self.model.artifacts:  # fitted state: the packaged bytes too
            model.check_sha256(self.root / "model" / artifact.file, artifact.sha256)
        if self.metadata.release.auth == "none":
            telemetry.configure_logging()
            logger.warning('AUTH IS OFF: auth = "none" in the config, every /v1/* route is open')


def bento_tag() -> str:
    import bentoml

    return f"{bentoml.server_context.bento_name}:{bentoml.server_context.bento_version}"


class Handlers:
    """The answer path of a generated service (its BentoML class inherits this)."""

    release: Release  # set on the generated class

    def __init__(self) -> None:
        release = self.release
        fallback = release.metadata.release.fallback
        telemetry.configure_logging()
        self.model = model.load_model(
            release.model_path,
            release.model.sha256,
            release.model.format,
            list(release.model.trusted),
        )
        # fitted state the notebook's service code reads by name, before the first request
        model.load_artifacts(release.root / "model", release.model.artifacts, release.pipeline)
        self.guard = guard.Guard(
            timeout_ms=fallback.timeout_ms,
            min_confidence=fallback.min_confidence,
            failures=fallback.circuit_breaker.failures,
            reset_s=fallback.circuit_breaker.reset_s,
            disable_file=release.metadata.service.disable_file,
        )
        self.metrics = telemetry.metrics(release.monitoring)
        # nb2prod_model_disabled, read again for every scrape: the kill switch needs no traffic
        self.metrics.switched_off = self.guard.switched_off
        self.metrics.refresh()
        info = release.metadata.release
        self.metrics.release.labels(
            name=info.name, version=info.version, contract_sha256=info.contract_sha256,
            bento_tag=bento_tag(),
        ).set(1)  # fmt: skip
        self.drift = telemetry.Drift(release.monitoring.drift, self.metrics)
        # batching is on only if the config wants it and a batch answered as its items alone
        self.batcher = (
            guard.Batcher(self.answer_detached, max_size=release.metadata.service.batching_max_size)
            if release.monitoring.batching.enabled
            else None
        )

    async def predict_one(self, fields: dict[str, Any]) -> Any:
        # BentoML has validated the body against Input (400 naming the fields otherwise)
        inp = self.release.pipeline.Input.model_construct(**fields)
        self.drift.observe((inp,))
        if self.batcher is None:
            return self.deliver((await self.answer([inp]))[0])
        future = self.batcher.enqueue(inp)
        if self.guard.timeout_s is None:
            return self.deliver(await future)
        try:  # the budget counts from arrival: time waiting for a batch is part of it
            result = await asyncio.wait_for(asyncio.shield(future), self.guard.timeout_s)
        except guard.TIMEOUT_ERRORS:
            future.cancel()
            result = self.fallback(inp, "timeout")
        return self.deliver(result)

    async def predict_many(self, inputs: list[Any]) -> Any:
        if not inputs:
            return self.release.BatchResult(results=[])
        self.drift.observe(inputs)
        if self.release.monitoring.batching.items_alone:  # a batch would change answers
            raw = await self.answer_each(inputs)
        else:
            raw = await self.answer(inputs)
        results = [self.deliver(r) for r in raw]
        failed = next((r for r in raw if isinstance(r, guard.NoAnswer)), None)
        if failed is not None:  # one item neither the model nor the fallback could answer: 503
            telemetry.note_outcome("unavailable", failed.reason)
            return failed.response()
        degraded = next((r for r in results if r.degraded), None)
        if degraded is not None:
            telemetry.note_outcome("degraded", degraded.reason)
        return self.release.BatchResult(results=results)

    def deliver(self, result: Any) -> Any:
        """Count, log and report (to the access line) what a request gets: answer, fallback or 503."""
        if isinstance(result, guard.NoAnswer):
            self.metrics.fallbacks.labels(reason=result.reason).inc()
            telemetry.note_outcome("unavailable", result.reason)
            return result.response()
        if result.degraded:
            self.metrics.fallbacks.labels(reason=result.reason).inc()
            logger.warning("the fallback answers", extra={"fields": {"reason": result.reason}})
            telemetry.note_outcome("degraded", result.reason)
        return result

    async def answer_detached(self, inputs: list[Any]) -> list[Any]:
        telemetry.detach()  # the batcher's task serves many requests: no single request id
        return await self.answer(inputs)

    async def answer_each(self, inputs: list[Any]) -> list[Any]:
        """Each input answered on its own, in order."""
        return [(await self.answer([inp]))[0] for inp in inputs]

    async def answer(self, inputs: list[Any]) -> list[Any]:
        """One Prediction or NoAnswer per input, in order."""
        reason = self.guard.admit()
        if reason is not None:
            return [self.fallback(inp, reason) for inp in inputs]
        timings: dict[str, float] = {}
        pipeline = self.release.pipeline
        try:
            # the model runs in the guard's thread pool; this coroutine only waits for it
            outputs = await self.guard.call(model.run, pipeline, self.model, inputs, timings)
        except guard.TIMEOUT_ERRORS:
            self.guard.record(ok=False)
            return [self.fallback(inp, "timeout") for inp in inputs]
        except Exception as exc:
            if len(inputs) > 1:  # one bad item must not degrade the others
                return await self.answer_each(inputs)
            telemetry.log_failure(
                logger,
                "model path failed; the fallback answers",
                exc,
                inputs,
                self.release.sensitive,
            )
            self.guard.record(ok=False)
            return [self.fallback(inputs[0], "error")]
        self.guard.record(ok=True)
        self.metrics.observe_call(len(inputs), timings)
        prediction = self.release.Prediction
        results = [
            self.fallback(inp, "low_confidence")
            if self.guard.low_confidence(out)
            else prediction(
                output=out, model_version=self.release.version, degraded=False, reason=None
            )
            for inp, out in zip(inputs, outputs, strict=True)
        ]
        self.metrics.observe_outputs(
            [r.output for r in results if isinstance(r, prediction) and not r.degraded]  # type: ignore[attr-defined]
        )
        return results

    def fallback(self, inp: Any, reason: str) -> Any:
        """The fallback's Prediction, or NoAnswer (a 503) when there is none or it failed.

        Counted where it is delivered (deliver), so an answer computed but not sent is not counted.
        """
        if not self.release.metadata.release.fallback.available:
            return guard.NoAnswer(
                reason, "the model could not answer and the notebook defines no fallback"
            )
        try:
            output = model.fallback(self.release.pipeline, inp)
        except Exception as exc:
            telemetry.log_failure(
                logger, "the fallback failed too", exc, [inp], self.release.sensitive
            )
            return guard.NoAnswer(reason, "the model could not answer and the fallback failed")
        return self.release.Prediction(
            output=output, model_version=self.release.version, degraded=True, reason=reason
        )


def v1_app(release: Release) -> Any:
    """The ASGI app mounted at /v1 for what is not a BentoML API: ``GET /v1/metadata``."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    info = release.metadata.release.model_dump(mode="json")

    async def metadata(request: Any) -> Any:
        return JSONResponse({**info, "bento_tag": bento_tag()})

    return Starlette(routes=[Route("/metadata", metadata, methods=["GET"])])


def install(service: Any, release: Release) -> None:
    """The middlewares of every generated service, outermost first."""
    pipeline = release.pipeline
    token = release.metadata.release.auth == "token"

    def documented(bentoml_document: dict[str, Any]) -> dict[str, Any]:
        """/docs.json: BentoML's document with the /v1 routes described from the models."""
        defs: dict[str, Any] = {}
        v1 = {
            "/v1/predict": {"post": openapi.operation(
                "predict", "one Input -> one answer", pipeline.Input.model_json_schema(),
                release.Prediction.model_json_schema(), defs, token,
            )},
            "/v1/predict_batch": {"post": openapi.operation(
                "predict_batch", "many Inputs -> one answer each, in order",
                release.BatchRequest.model_json_schema(), release.BatchResult.model_json_schema(),
                defs, token,
            )},
            "/v1/metadata": {"get": openapi.operation(
                "metadata", "release metadata and evaluation summary", None, {"type": "object"},
                defs, token,
            )},
        }  # fmt: skip
        document = openapi.rewrite(bentoml_document, v1, token)
        document.setdefault("components", {}).setdefault("schemas", {}).update(defs)
        return document

    # first: below BentoML's metrics, it gives the routes back the path they only saw a label of
    service.add_asgi_middleware(routes.BoundedLabels)
    service.add_asgi_middleware(openapi.CorrectedDocs, build=documented)
    # a middleware added earlier is outside those added later: every /v1/* request, 401s and
    # refused bodies included, is measured and logged
    service.add_asgi_middleware(
        telemetry.Observe,
        monitoring=release.monitoring,
        input_fields=list(pipeline.Input.model_fields),
        model_version=release.version,
        log_bodies=release.metadata.service.log_bodies,
    )
    if token:
        service.add_asgi_middleware(auth.BearerAuth, auth="token")
    service.add_asgi_middleware(auth.JsonOnly)
    settings = release.metadata.service
    service.add_asgi_middleware(
        limits.BodyLimit,
        max_bytes=settings.max_body_bytes or limits.default_max_body_bytes(settings.max_batch_rows),
        max_rows=settings.max_batch_rows,
    )
