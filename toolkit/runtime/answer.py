"""The answer path of a release, one for every transport: guard -> preprocess -> predict ->
postprocess -> fallback -> Output validation.

:class:`Answerer` answers a list of inputs for the served release (``runtime.app.Handlers``:
``/v1/predict``, ``/v1/predict_batch``, in the event loop, the model on the guard's threads
within the time budget) and for batch scoring (``nb2prod score`` and ``nb2prod.score``, locally
and on Spark: :meth:`Answerer.answer_now`, the model called directly). So a row gets what a
request gets:

- the kill switch (``disabled``) and an open circuit breaker (``circuit_open``) send every input
  to the fallback before the model is tried;
- a batch the model path raises on is answered again item by item, so one bad item never
  degrades the others; a single item that raises gets the fallback (``error``); every item of a
  call past the time budget (serving only) gets it too (``timeout``);
- an Output whose ``confidence`` is below ``[fallback] min_confidence`` is replaced by the
  fallback's (``low_confidence``);
- a release whose batches answer differently from their items alone (``monitoring.json``) has
  every item answered alone;
- without a fallback, or when it raises too, the input is unanswered (the service's 503).

Each answer says what happened; what a transport adds (metrics, logs, the HTTP envelope, the
errors file) it adds from that, outside this module.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import model
from .guard import Guard, OverBudget

if TYPE_CHECKING:
    from .schema import ArtifactManifest, ModelManifest, MonitoringPlan, ServiceMetadata

WHY = {  # the reasons whose cause is not an exception, said in full for the errors file
    "disabled": "the model is switched off (NB2PROD_MODEL_DISABLED)",
    "low_confidence": "the model's confidence is below [fallback] min_confidence",
}


def summary(exc: BaseException) -> str:
    """An exception in one line of at most 300 characters."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass(frozen=True)
class Failure:
    """What went wrong for one input; made only when something did."""

    model: BaseException | None  # what the model path raised (reason "error")
    fallback: BaseException | None  # what the fallback raised; None and no output: none defined

    def message(self, reason: str, *, detail: bool) -> str:
        """Why the input got no answer. Without ``detail`` (an HTTP body) no exception text,
        which may hold input values; with it (batch scoring's errors file) the exceptions."""
        why = "the model could not answer"
        if detail:
            why = WHY.get(reason) or f"{why} ({summary(self.model) if self.model else reason})"
        if self.fallback is None:
            return f"{why} and the notebook defines no fallback"
        return f"{why} and the fallback failed" + (f" ({summary(self.fallback)})" if detail else "")


# One input's answer: (the validated Output, or None when neither the model nor a fallback
# answered; the reason the fallback was asked, None when the model answered; the Failure, None
# when nothing raised). A plain tuple: batch scoring makes one per row.
Answer = tuple[Any, str | None, Failure | None]
# How the model path is called: inputs -> outputs, raising OverBudget past the time budget.
Call = Callable[[list[Any]], Awaitable[list[Any]]]


def load_model(root: Path, manifest: ModelManifest, pipeline: ModuleType) -> Any:
    """The release's model, with its fitted state set in the pipeline module, where the notebook's
    service code reads it by name; each file's sha256 checked against ``model/model.json``."""
    directory = root / "model"
    stored: list[ModelManifest | ArtifactManifest] = [manifest, *manifest.artifacts]
    skops = [s.estimators for s in stored if s.format == "skops"]
    if skops:  # skops is imported once: with the estimators of every file, or (one unrecorded) all
        model.import_skops_io(None if None in skops else {e for s in skops for e in s or ()})
    loaded = model.load_model(
        directory / manifest.file, manifest.sha256, manifest.format, list(manifest.trusted)
    )
    model.load_artifacts(directory, manifest.artifacts, pipeline)
    return loaded


class Answerer:
    """One release's answer path: its pipeline and model behind its guard, then its fallback.

    Serving (the default): the time budget, the circuit breaker and the kill switch of
    ``service/metadata.json`` (NB2PROD_MODEL_DISABLED at start, the kill-switch file on every
    call). Scoring: a batch job waits for the model and tries every row, so no budget and no
    breaker; the kill switch is ``disabled`` (by default NB2PROD_MODEL_DISABLED, read now).
    """

    def __init__(
        self,
        pipeline: ModuleType,
        loaded_model: Any,
        metadata: ServiceMetadata,
        monitoring: MonitoringPlan,
        *,
        scoring: bool = False,
        disabled: bool | None = None,
    ) -> None:
        settings = metadata.release.fallback
        self.pipeline = pipeline
        self.model = loaded_model
        self.has_fallback = settings.available
        # the contract probe saw a batch answered differently from its items alone
        self.items_alone = monitoring.batching.items_alone
        self.guard = Guard(
            timeout_ms=None if scoring else settings.timeout_ms,
            min_confidence=settings.min_confidence,
            failures=None if scoring else settings.circuit_breaker.failures,
            reset_s=settings.circuit_breaker.reset_s,
            disable_file=None if scoring else metadata.service.disable_file,
            disabled=disabled,
        )

    def run(self, inputs: list[Any], timings: dict[str, float] | None = None) -> list[Any]:
        """The model path alone: preprocess -> predict -> postprocess, each Output validated."""
        return model.run(self.pipeline, self.model, inputs, timings)

    async def answer(self, inputs: list[Any], call: Call | None = None) -> list[Answer]:
        """One Answer per input, in order. ``call`` runs the model path (default: directly)."""
        if self.items_alone and len(inputs) > 1:
            return [(await self.answer([inp], call))[0] for inp in inputs]
        guard = self.guard
        reason = guard.admit()
        if reason is not None:
            return [self.fallback(inp, reason) for inp in inputs]
        try:
            outputs = await (call or self._direct)(inputs)
        except OverBudget:
            guard.record(ok=False)
            return [self.fallback(inp, "timeout") for inp in inputs]
        except Exception as exc:
            if len(inputs) > 1:  # one bad item must not degrade the others: each alone
                return [(await self.answer([inp], call))[0] for inp in inputs]
            guard.record(ok=False)
            return [self.fallback(inputs[0], "error", exc)]
        guard.record(ok=True)
        low = guard.low_confidence(outputs)
        if not low:
            return [(out, None, None) for out in outputs]
        return [
            self.fallback(inp, "low_confidence") if i in low else (out, None, None)
            for i, (inp, out) in enumerate(zip(inputs, outputs, strict=True))
        ]

    def answer_now(self, inputs: list[Any]) -> list[Answer]:
        """:meth:`answer` in this thread, with no event loop (batch scoring).

        The model is called directly, so nothing on the path waits and the coroutine finishes on
        its first step; driving it by hand also works where a loop is already running (Jupyter).
        """
        steps = self.answer(inputs)
        try:
            steps.send(None)
        except StopIteration as done:
            answers: list[Answer] = done.value
            return answers
        steps.close()
        raise RuntimeError("the answer path waited for something: call answer() in an event loop")

    def fallback(self, inp: Any, reason: str, exc: BaseException | None = None) -> Answer:
        """The fallback's answer for ``inp`` (validated as Output), or none (output None) when
        the notebook defines no fallback or it raised. ``exc``: what the model raised."""
        if not self.has_fallback:
            return (None, reason, Failure(exc, None))
        try:
            output = model.fallback(self.pipeline, inp)
        except Exception as fallback_exc:
            return (None, reason, Failure(exc, fallback_exc))
        return (output, reason, None if exc is None else Failure(exc, None))

    async def _direct(self, inputs: list[Any]) -> list[Any]:
        return self.run(inputs)
