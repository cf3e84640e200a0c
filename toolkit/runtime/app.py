"""The behaviour of a generated service; its ``service.py`` only declares the BentoML class.

:class:`Release` reads what a release carries (metadata.json, monitoring.json, model.json) and
builds the pydantic models of SPEC section 6 around the notebook's ``Input`` and ``Output``.
:class:`Handlers` is the service's base class: ``/v1/predict`` and ``/v1/predict_batch`` answered
through :class:`~.answer.Answerer` (the answer path batch scoring uses too), with the
server's own concerns around it (time budget, adaptive batching, metrics, logs).
:func:`install` adds the middlewares and the ``/v1/metadata`` route.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model

from . import auth, guard, limits, model, openapi, routes, signature, startup, telemetry, v1, v2
from .answer import Answer, Answerer, Failure, load_model
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

    @cached_property
    def predicted(self) -> Callable[[dict[str, Any]], BaseModel]:
        """A Prediction of every field's value, not validated again (:func:`constructor`)."""
        return constructor(self.Prediction)

    @property
    def model_path(self) -> Path:
        return self.root / "model" / self.model.file

    def examples(self) -> list[dict[str, Any]]:
        """examples.json's examples (Input and the notebook's Output); none if it is unreadable."""
        try:
            found = json.loads((self.root / "examples.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        listed = found.get("examples") if isinstance(found, dict) else None
        return [e for e in listed if isinstance(e, dict)] if isinstance(listed, list) else []

    @property
    def sensitive(self) -> frozenset[str]:
        return frozenset(self.monitoring.sensitive)

    def check(self) -> None:
        """Before any worker starts: a token when auth wants one, the release's signature when a
        public key is configured (runtime/signature.py), a kill-switch file that can be checked,
        the packaged model's bytes."""
        auth.api_token(self.metadata.release.auth)
        signature.check_release(self.root, self.metadata)  # with a public key: release.sig
        guard.check_kill_switch(self.metadata.service.disable_file)
        model.check_sha256(self.model_path, self.model.sha256)
        for artifact in self.model.artifacts:  # fitted state: the packaged bytes too
            model.check_sha256(self.root / "model" / artifact.file, artifact.sha256)
        self.check_files()  # the service code, runtime copy, contract and examples too
        if self.metadata.release.auth == "none":
            telemetry.configure_logging()
            logger.warning('AUTH IS OFF: auth = "none" in the config, every /v1/* route is open')

    def check_files(self) -> None:
        """Every file metadata.json records (service code, the runtime copy, monitoring, model,
        contract, examples) still has its sha256: a bento edited after packaging does not start."""
        # the model and its fitted state were hashed just before, against model.json
        checked = {f"model/{self.model.file}", *(f"model/{a.file}" for a in self.model.artifacts)}
        recorded = {k: v for k, v in self.metadata.carried().items() if k not in checked}
        for relative, sha256 in sorted(recorded.items()):
            path = self.root / relative
            if not path.is_file():
                raise RuntimeError(f"{path}: recorded in service/metadata.json but missing")
            if model.sha256_file(path) != sha256:
                raise RuntimeError(
                    f"{path}: sha256 differs from the one service/metadata.json records; the "
                    "release was modified after packaging. Refusing to start."
                )


def bento_tag() -> str:
    import bentoml

    return f"{bentoml.server_context.bento_name}:{bentoml.server_context.bento_version}"


class Handlers:
    """The served release (its BentoML class inherits this): routes to the answer path.

    Answers come from :class:`~.answer.Answerer`, as batch scoring's do; what is the
    server's is here: the model called on the guard's threads within the time budget,
    adaptive batching, metrics, logs and the HTTP envelope.
    """

    release: Release  # set on the generated class

    def __init__(self) -> None:
        release = self.release
        telemetry.configure_logging()
        loaded = load_model(release.root, release.model, release.pipeline)
        self.answerer = Answerer(release.pipeline, loaded, release.metadata, release.monitoring)
        self.guard = self.answerer.guard
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
        startup.loaded(logger)  # the model is loaded: this worker's start, logged (verify reads it)

    async def predict_one(self, fields: dict[str, Any]) -> Any:
        # BentoML has validated the body against Input (400 naming the fields otherwise)
        inp = self.release.pipeline.Input.model_construct(**fields)
        self.drift.observe((inp,))
        if self.batcher is None:
            return self.deliver((await self.answer([inp]))[0])
        future = self.batcher.enqueue(inp)
        try:  # the budget counts from arrival: time waiting for a batch is part of it
            result = await guard.within(future, self.guard.timeout_s)
        except guard.OverBudget:
            result = self.settle([inp], [self.answerer.fallback(inp, "timeout")])[0]
        return self.deliver(result)

    async def predict_many(self, inputs: list[Any]) -> Any:
        if not inputs:
            return self.release.BatchResult(results=[])
        self.drift.observe(inputs)
        raw = await self.answer(inputs)
        if not any(isinstance(r, guard.NoAnswer) or r.degraded for r in raw):
            # the model answered every input: nothing to count, log or report
            return self.release.BatchResult.model_construct(results=raw)
        results = [self.deliver(r) for r in raw]
        failed = next((r for r in raw if isinstance(r, guard.NoAnswer)), None)
        if failed is not None:  # one item neither the model nor the fallback could answer: 503
            telemetry.note_outcome("unavailable", failed.reason)
            return failed.response()
        degraded = next((r for r in results if r.degraded), None)
        if degraded is not None:
            telemetry.note_outcome("degraded", degraded.reason)
        # built, not validated again: each result is a Prediction settle() made
        return self.release.BatchResult.model_construct(results=results)

    async def answer_rows(self, inputs: list[Any]) -> list[tuple[Any, str | None, str | None]]:
        """The Open Inference Protocol's answers (runtime/v2.py): per input, the Output as JSON
        and the fallback's reason, or no Output and why; counted like /v1/predict_batch's."""
        self.drift.observe(inputs)
        answered: list[tuple[Any, str | None, str | None]] = []
        for result in await self.answer(inputs):
            if isinstance(result, guard.NoAnswer):
                self.metrics.fallbacks.labels(reason=result.reason).inc()
                telemetry.note_outcome("unavailable", result.reason)
                answered.append((None, result.reason, result.message))
                continue
            if result.degraded:
                self.metrics.fallbacks.labels(reason=result.reason).inc()
                telemetry.note_outcome("degraded", result.reason)
            answered.append((result.output.model_dump(mode="json"), result.reason, None))
        return answered

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

    async def answer(self, inputs: list[Any]) -> list[Any]:
        """One Prediction or NoAnswer per input, in order."""
        answers = await self.answerer.answer(inputs, self.call_model)
        answered = [output for output, reason, _ in answers if reason is None]
        if answered:
            self.metrics.observe_outputs(answered)
        return self.settle(inputs, answers)

    async def call_model(self, inputs: list[Any]) -> list[Any]:
        """The model path on the guard's threads, within the time budget (this coroutine
        only waits for it); each stage timed for the histograms."""
        timings: dict[str, float] = {}
        outputs: list[Any] = await self.guard.call(self.answerer.run, inputs, timings)
        self.metrics.observe_call(len(inputs), timings)
        return outputs

    def settle(self, inputs: list[Any], answers: list[Answer]) -> list[Any]:
        """Each answer as the routes return it: a Prediction, or NoAnswer (a 503) when neither
        the model nor the fallback answered; what raised is logged, sensitive fields redacted.

        Counted where it is delivered (deliver), so an answer computed but not sent is not counted.
        """
        prediction, version = self.release.predicted, self.release.version
        if all(reason is None and failure is None for _, reason, failure in answers):
            return [  # the model answered each: the common case, one Prediction per row
                prediction(
                    {"output": output, "model_version": version, "degraded": False,
                     "reason": None}
                )
                for output, _, _ in answers
            ]  # fmt: skip
        results: list[Any] = []
        for inp, (output, reason, failure) in zip(inputs, answers, strict=True):
            if failure is not None:
                self.log(failure, inp)
            if output is None:
                assert reason is not None and failure is not None  # how the Answerer says it
                message = failure.message(reason, detail=False)
                results.append(guard.NoAnswer(reason, message))
            else:
                degraded = reason is not None
                # constructed, not validated again: the Output was validated as it left the
                # model path (answer.py), the version and reason are the service's own
                results.append(
                    prediction(
                        {"output": output, "model_version": version, "degraded": degraded,
                         "reason": reason}
                    )
                )  # fmt: skip
        return results

    def log(self, failure: Failure, inp: Any) -> None:
        sensitive = self.release.sensitive
        if failure.model is not None:
            telemetry.log_failure(
                logger, "model path failed; the fallback answers", failure.model, [inp], sensitive
            )
        if failure.fallback is not None:
            telemetry.log_failure(
                logger, "the fallback failed too", failure.fallback, [inp], sensitive
            )


def constructor(model: type[BaseModel]) -> Callable[[dict[str, Any]], BaseModel]:
    """What ``model.model_construct(**values)`` makes when ``values`` has every field, for a
    model without private attributes or extras, set directly: a batch builds one per row, and
    pydantic's model_construct, which looks each field up for defaults and aliases, takes 3x
    as long. The two are compared once here; should a pydantic release build models otherwise,
    model_construct is used."""
    new, setattr_ = object.__new__, object.__setattr__
    fields = set(model.model_fields)

    def construct(values: dict[str, Any]) -> BaseModel:
        made = new(model)
        setattr_(made, "__dict__", values)
        setattr_(made, "__pydantic_fields_set__", fields.copy())  # each its own, as pydantic's
        setattr_(made, "__pydantic_extra__", None)
        setattr_(made, "__pydantic_private__", None)
        return made

    def slow(values: dict[str, Any]) -> BaseModel:
        return model.model_construct(**values)

    if model.__private_attributes__ or model.model_config.get("extra") == "allow":
        return slow
    try:
        probe = {name: None for name in fields}
        a, b = construct(dict(probe)), model.model_construct(**probe)
        same = a.__dict__ == b.__dict__ and all(
            getattr(a, k) == getattr(b, k)
            for k in ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
        )
    except Exception:  # noqa: BLE001 - any surprise: the documented way
        same = False
    return construct if same else slow


def v1_app(release: Release) -> Any:
    """The ASGI app of /v1 (runtime/v1.py): predict, predict_batch and metadata, answered by the
    running service; mounted at /v1, and what the fast lane hands /v1 requests to."""
    info = release.metadata.release.model_dump(mode="json")

    def service() -> Any:
        import bentoml

        return bentoml.get_current_service()

    return v1.App(
        release.Input, release.BatchRequest, service, lambda: {**info, "bento_tag": bento_tag()}
    )


def protocol_of(release: Release) -> v2.Model:
    """The release as the Open Inference Protocol's one model (runtime/v2.py)."""
    info = release.metadata.release
    return v2.Model(
        name=info.name, version=info.version,
        inputs=v2.tensors(release.pipeline.Input), outputs=v2.tensors(release.pipeline.Output),
    )  # fmt: skip


def v2_app(release: Release) -> Any:
    """The ASGI app mounted at /v2: the Open Inference Protocol over the contract (runtime/v2.py)."""
    protocol = protocol_of(release)

    async def answer(inputs: list[Any]) -> Any:
        import bentoml

        return await bentoml.get_current_service().answer_rows(inputs)

    return v2.App(protocol, release.Input, release.metadata.service.max_batch_rows, answer)


def install(service: Any, release: Release) -> None:
    """The middlewares of every generated service, outermost first."""
    pipeline = release.pipeline
    token = release.metadata.release.auth == "token"

    def documented() -> dict[str, Any]:
        """/docs.json: OpenAPI 3.1 from the models, with the notebook's examples and answers."""
        defs: dict[str, Any] = {}
        info = release.metadata.release

        def envelope(output: Any) -> dict[str, Any]:
            return {"output": output, "model_version": info.version, "degraded": False,
                    "reason": None}  # fmt: skip

        one = openapi.examples_of(release.examples(), envelope)
        batch = (
            [
                (
                    "batch",
                    {"inputs": [body for _, body, _ in one[: openapi.BATCH_EXAMPLES]]},
                    {"results": [out for _, _, out in one[: openapi.BATCH_EXAMPLES]]},
                )
            ]
            if one
            else []
        )
        v1 = {
            "/v1/predict": {"post": openapi.operation(
                "predict", "one Input -> one answer", pipeline.Input.model_json_schema(),
                release.Prediction.model_json_schema(), defs, token, examples=one,
            )},
            "/v1/predict_batch": {"post": openapi.operation(
                "predict_batch", "many Inputs -> one answer each, in order",
                release.BatchRequest.model_json_schema(), release.BatchResult.model_json_schema(),
                defs, token, examples=batch,
            )},
            "/v1/metadata": {"get": openapi.operation(
                "metadata", "release metadata and evaluation summary", None, {"type": "object"},
                defs, token,
            )},
        }  # fmt: skip
        pairs = [(e["input"], e["output"]) for e in release.examples() if "input" in e
                 and "output" in e][: openapi.BATCH_EXAMPLES]  # fmt: skip
        v1.update(v2.paths(protocol_of(release), token, pairs))
        return openapi.document(
            title=info.name, version=info.version, defs=defs, auth=token, routes=v1,
            description=f"{info.name} {info.version}: the notebook's model behind the contract "
            f"(contract sha256 {info.contract_sha256[:12]}).",
        )  # fmt: skip

    # first: below BentoML's metrics, it gives the routes back the path they only saw a label of;
    # when the app starts it puts the fast lane for /v1 outside BentoML's middlewares
    # (built when the app starts, as BentoML builds its middlewares: never in `bentoml build`)
    own = own_middlewares(release)
    service.add_asgi_middleware(routes.BoundedLabels, lane=lambda: v1.chain(v1_app(release), own))
    service.add_asgi_middleware(openapi.CorrectedDocs, build=documented)
    for cls, options in own:
        service.add_asgi_middleware(cls, **options)


def own_middlewares(release: Release) -> list[tuple[type, dict[str, Any]]]:
    """nb2prod's middlewares, outermost first: every path of the service goes through them (the
    /v1 routes in the fast lane, the others under BentoML's). A middleware earlier in the list is
    outside those after it: every request, 401s and refused bodies included, is measured and
    logged."""
    settings = release.metadata.service
    token = release.metadata.release.auth == "token"
    return [
        (telemetry.Observe, {
            "monitoring": release.monitoring,
            "input_fields": list(release.pipeline.Input.model_fields),
            "model_version": release.version,
            "log_bodies": settings.log_bodies,
        }),
        (limits.RateLimit, {"limit": settings.rate_limit}),
        (telemetry.InFlight, {}),  # and each worker's memory, CPU seconds and starts
        *([(auth.BearerAuth, {"auth": "token"})] if token else []),
        (auth.JsonOnly, {}),
        (limits.BodyLimit, {
            "max_bytes": settings.max_body_bytes
            or limits.default_max_body_bytes(settings.max_batch_rows),
            "max_rows": settings.max_batch_rows,
        }),
    ]  # fmt: skip
