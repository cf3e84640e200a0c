"""What ops teams see of the service: JSON log lines, Prometheus series, input drift scores.

Copied into every release by nb2prod; needs nothing from nb2prod at run time. Everything here is
configured from monitoring.json (written at package time) and stays out of the model's path:
the middleware measures and logs around a request, the service reports what the model did.
Fields marked sensitive in the contract (``Field(json_schema_extra={"sensitive": True})``) are
redacted from every log line, error messages included, and never become metric labels.
"""

from __future__ import annotations

import bisect
import collections
import contextvars
import enum
import itertools
import json
import logging
import math
import re
import sys
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from . import model
from .routes import API as ROUTES
from .routes import V2_INFER, V2_MODEL
from .schema import DriftReference, MonitoringPlan

REDACTED = "[REDACTED]"
PREDICT_ROUTES = ("/v1/predict", "/v1/predict_batch", V2_INFER)
STAGES = ("preprocess", "predict", "postprocess")  # model.run's timings
# SPEC section 6 (app.Reason): why the fallback answered, or why there was no answer (503)
FALLBACK_REASONS = ("error", "timeout", "low_confidence", "circuit_open", "disabled")
# every (status, outcome, reason) a prediction route answers with, created at 0 when the service
# starts so that a rate or a ratio over them is defined before the first such answer
KNOWN_ANSWERS = (
    ("200", "ok", ""),
    *(("200", "degraded", reason) for reason in FALLBACK_REASONS),
    ("400", "invalid", ""),
    ("401", "unauthorized", ""),
    *(("503", "unavailable", reason) for reason in FALLBACK_REASONS),
    ("500", "error", ""),
)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MIN_DRIFT_OBSERVATIONS = 100  # fewer values give PSI scores that are mostly sampling noise
DRIFT_ROWS_PER_CALL = 32  # a large batch adds an evenly spaced sample of its rows to the window
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

# Per request: its id and what the service reports back to the middleware (outcome, reason).
# A dict in a context variable: the handler runs in the middleware's context and mutates it.
_REQUEST: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "nb2prod_request", default=None
)


def note_outcome(outcome: str, reason: str | None = None) -> None:
    """Called by the handler: `degraded` or `unavailable` instead of the status's default."""
    state = _REQUEST.get()
    if state is not None:
        state["outcome"], state["reason"] = outcome, reason


def detach() -> None:
    """In a task that serves many requests (the batcher): log lines carry no single request id."""
    _REQUEST.set(None)


# ---------------------------------------------------------------- redaction


def redact(value: Any, sensitive: frozenset[str]) -> Any:
    """JSON-like data with every value under a sensitive key replaced, at any depth.

    Keys match whatever their case and surrounding whitespace: a body that spells ``"Email "``
    is refused by the contract, but its value is still logged with the refused body.
    """
    keys = frozenset(_key(k) for k in sensitive)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: REDACTED if _key(k) in keys else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(value)


def _key(name: Any) -> Any:
    return name.strip().casefold() if isinstance(name, str) else name


def secret_values(inputs: list[Any], sensitive: frozenset[str]) -> list[str]:
    """The sensitive values of these inputs as text, longest first, for scrubbing free text."""
    found = {
        str(getattr(inp, name))
        for inp in inputs
        for name in sensitive
        if getattr(inp, name, None) is not None
    }
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def log_failure(
    logger: logging.Logger,
    message: str,
    exc: BaseException,
    inputs: list[Any],
    sensitive: frozenset[str],
) -> None:
    """logger.exception, with the inputs' sensitive values scrubbed from message and traceback."""
    secrets = secret_values(inputs, sensitive)
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    logger.error(
        message,
        extra={"fields": {"error": scrub(f"{type(exc).__name__}: {exc}", secrets),
                          "traceback": scrub(details, secrets)}},
    )  # fmt: skip


# ---------------------------------------------------------------- logs


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        state = _REQUEST.get()
        if state is not None:
            entry["request_id"] = state["id"]
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            # only nb2prod's own code logs here, and it passes no exception text (log_failure)
            entry["error"] = record.exc_info[0].__name__ if record.exc_info[0] else "error"
        return json.dumps(entry, default=str)


class _DropValidationTracebacks(logging.Filter):
    """BentoML logs every rejected body with pydantic's traceback, whose text holds the rejected
    values (sensitive ones too). The access line already names the failing fields: drop it."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (exc is not None and type(exc).__name__ == "ValidationError")


def configure_logging() -> None:
    """nb2prod's loggers write JSON lines to stdout; BentoML's validation tracebacks are dropped."""
    logger = logging.getLogger("nb2prod")
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    bentoml_http = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, _DropValidationTracebacks) for f in bentoml_http.filters):
        bentoml_http.addFilter(_DropValidationTracebacks())


# ---------------------------------------------------------------- metrics

_METRICS: Metrics | None = None


def metrics(monitoring: MonitoringPlan) -> Metrics:
    """The process's metrics, created on first use.

    Not at import: BentoML switches prometheus_client to multiprocess mode only after the service
    module has been imported, and series created before that would never reach /metrics.
    """
    global _METRICS
    if _METRICS is None:
        _METRICS = Metrics(monitoring)
    return _METRICS


class Metrics:
    def __init__(self, monitoring: MonitoringPlan) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "nb2prod_requests",
            "Requests by route, status, outcome and (degraded or unavailable) fallback reason",
            ["route", "status", "outcome", "reason"],
        )
        slo = monitoring.slo
        self.latency = Histogram(
            "nb2prod_request_duration_seconds", "End-to-end latency by route", ["route"],
            # the SLO's thresholds are bucket bounds: the share of slower requests is exact
            buckets=sorted({*LATENCY_BUCKETS, slo.p95_ms / 1000, slo.p99_ms / 1000}),
        )  # fmt: skip
        self.stages = Histogram(
            "nb2prod_stage_duration_seconds", "Seconds per model call, by pipeline stage", ["stage"],
            buckets=LATENCY_BUCKETS,
        )  # fmt: skip
        self.batch_size = Histogram(
            "nb2prod_batch_size", "Inputs per model call", buckets=BATCH_BUCKETS
        )
        self.validation = Counter(
            "nb2prod_validation_failures", "Rejected inputs by route and field", ["route", "field"]
        )
        self.fallbacks = Counter(
            "nb2prod_fallback", "Requests answered by the fallback, by reason", ["reason"]
        )
        self.release = Gauge(
            "nb2prod_release_info", "The release this service runs (always 1)",
            ["name", "version", "contract_sha256", "bento_tag"], multiprocess_mode="livemax",
        )  # fmt: skip
        self.drift = Gauge(
            "nb2prod_input_drift_psi",
            "Population stability index of each Input field: recent values against the reference",
            ["field"], multiprocess_mode="livemax",
        )  # fmt: skip
        self.drift_observations = Gauge(
            "nb2prod_input_drift_observations", "Values in the drift window, per Input field",
            ["field"], multiprocess_mode="livemax",
        )  # fmt: skip
        self.disabled = Gauge(
            "nb2prod_model_disabled",
            "1 while the model is switched off (kill-switch file or NB2PROD_MODEL_DISABLED)",
            multiprocess_mode="livemostrecent",
        )
        self.switched_off: Callable[[], bool] | None = None  # set by the service (its guard)
        self.outputs = monitoring.outputs
        self.drift_fields = tuple(monitoring.drift.fields)
        self.classes = Counter(
            "nb2prod_predictions", "Model answers by Output field and value", ["field", "value"]
        )
        self.values = {
            name: Histogram(
                f"nb2prod_prediction_{re.sub(r'[^a-zA-Z0-9_]', '_', name)}",
                f"Distribution of Output.{name} in model answers",
                **({"buckets": list(spec.buckets)} if spec.buckets else {}),  # type: ignore[arg-type]
            )
            for name, spec in self.outputs.items()
            if spec.kind == "numeric"
        }
        self.known = {
            name: frozenset(spec.values)
            for name, spec in self.outputs.items()
            if spec.kind == "categorical"
        }
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self.start_at_zero()

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once per label set (prometheus_client takes a
        lock and builds a key for every call). Only for label sets known to be bounded: routes,
        statuses, outcomes, fallback reasons, stages, an Output field's known values."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def start_at_zero(self) -> None:
        """Create every series whose labels are known in advance, at 0: fallback reasons,
        answers, latency of the prediction routes, class labels. A series that appears only with its first event cannot be rated
        (an alert on it would stay silent from a fresh start)."""
        for route in PREDICT_ROUTES:
            self.latency.labels(route=route)
            for status, outcome, reason in KNOWN_ANSWERS:
                self.requests.labels(route=route, status=status, outcome=outcome, reason=reason)
        for reason in FALLBACK_REASONS:
            self.fallbacks.labels(reason=reason)
        for name, known in sorted(self.known.items()):
            for value in sorted(known | {"other"}):
                self.classes.labels(field=name, value=value)
        for stage in STAGES:
            self.stages.labels(stage=stage)
        # 0, not NaN, until a score is published: the workers' gauges are merged with max(), and
        # NaN compares false, so one worker without a score would hide another's. The window's
        # size (nb2prod_input_drift_observations, 0 here) tells "no score yet" from "no drift".
        for name in sorted(self.drift_fields):
            self.drift.labels(field=name).set(0)
            self.drift_observations.labels(field=name).set(0)

    def expect_invalid(self, input_fields: Iterable[str]) -> None:
        """Create nb2prod_validation_failures_total at 0 for each prediction route and field
        (the Input's own, "(other)" for unknown keys, "(body)" when none is named)."""
        for route in PREDICT_ROUTES:
            for field in (*input_fields, "(other)", "(body)"):
                self.validation.labels(route=route, field=field)

    def refresh(self) -> None:
        """Before a scrape: the gauges of state that changes without requests."""
        if self.switched_off is not None:
            self.disabled.set(1 if self.switched_off() else 0)

    def observe_call(self, size: int, timings: dict[str, float]) -> None:
        """One model call: its size, and the seconds of each stage."""
        self.batch_size.observe(size)
        for stage, seconds in timings.items():
            self.child(self.stages, stage).observe(seconds)

    def observe_outputs(self, outputs: list[Any]) -> None:
        """Count a batch's answers: one metric update per distinct value and bucket, not per row."""
        for name, known in self.known.items():
            counts: dict[str, int] = {}
            for (_, value), count in _tally([getattr(out, name, None) for out in outputs]).items():
                label = _label(value)
                label = label if label in known else "other"
                counts[label] = counts.get(label, 0) + count
            for label, count in counts.items():
                self.child(self.classes, name, label).inc(count)
        for name, histogram in self.values.items():
            values = [getattr(out, name, None) for out in outputs]
            observe_many(
                histogram,
                [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)],
            )


def observe_many(histogram: Any, values: list[float]) -> None:
    """Histogram.observe for many values at once (in multiprocess mode each update is a file write).

    Uses prometheus_client's bucket counters directly, as Histogram.observe does; falls back to
    observe() should a future prometheus_client lay them out differently.
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1  # the first bucket with value <= bound
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
    total.inc(sum(values))


def _tally(values: list[Any]) -> dict[tuple[type, Any], int]:
    """How often each (type, value) occurs, counted in C by collections.Counter; by type too, as
    ``True`` and ``1`` are one dict key but two labels. Values that cannot be dict keys (a list
    in a field declared categorical) are counted by their label instead."""
    try:
        return collections.Counter(zip(map(type, values), values, strict=True))
    except TypeError:
        return collections.Counter((str, _label(v)) for v in values)


def _label(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ---------------------------------------------------------------- drift


class Drift:
    """Running distribution of each Input field over the last `window` values, scored with PSI.

    PSI = sum over bins of (actual - expected) * ln(actual / expected), bins from the reference
    (quantile bins for numbers, one per category plus "other"), shares floored at 1e-4.
    """

    def __init__(self, reference: DriftReference, metrics: Metrics, every: int = 50) -> None:
        self.metrics = metrics
        self.every = every
        self.pending = 0
        window = reference.window
        self.specs: dict[str, dict[str, Any]] = {}
        for name, field in reference.fields.items():
            expected = list(field.expected)
            if field.kind == "categorical":
                expected.append(0.0)  # "other": a category the reference never had
            self.specs[name] = {
                "kind": field.kind,
                "edges": list(field.edges),
                "index": {c: i for i, c in enumerate(field.categories)},
                "expected": expected,
                "window": deque(maxlen=window),
                "counts": [0] * len(expected),
            }

    def observe(self, inputs: Any) -> None:
        if not self.specs:
            return
        if len(inputs) > DRIFT_ROWS_PER_CALL:
            inputs = inputs[:: -(-len(inputs) // DRIFT_ROWS_PER_CALL)]
        for name, spec in self.specs.items():
            window, counts = spec["window"], spec["counts"]
            values = [v for v in (getattr(inp, name, None) for inp in inputs) if v is not None]
            if spec["kind"] == "numeric":
                edges, left = spec["edges"], bisect.bisect_left
                indexes = [left(edges, float(v)) for v in values]
            else:
                index, other = spec["index"], len(counts) - 1
                indexes = [index.get(model.category_key(v), other) for v in values]
            leaving = len(window) + len(indexes) - (window.maxlen or 0)
            for i in itertools.islice(window, max(0, min(leaving, len(window)))):
                counts[i] -= 1  # the oldest values leave the window
            window.extend(indexes)
            for i in indexes[-(window.maxlen or 0) :]:  # those the window kept
                counts[i] += 1
        self.pending += len(inputs)
        if self.pending >= self.every:
            self.publish()

    def publish(self) -> None:
        self.pending = 0
        for name, spec in self.specs.items():
            n = len(spec["window"])
            metrics = self.metrics
            metrics.child(metrics.drift_observations, name).set(n)
            if n >= min(MIN_DRIFT_OBSERVATIONS, spec["window"].maxlen):
                metrics.child(metrics.drift, name).set(psi(spec["expected"], spec["counts"], n))


def psi(expected: list[float], counts: list[int], n: int) -> float:
    total = 0.0
    for share, count in zip(expected, counts, strict=True):
        e = max(share, 1e-4)
        a = max(count / n, 1e-4)
        total += (a - e) * math.log(a / e)
    return total


# ---------------------------------------------------------------- the middleware


def _route(path: str) -> str:
    """The ``route`` label of a /v1 or /v2 request: the route, or one label for the rest."""
    if path in ROUTES:
        return path
    if path.startswith("/v2/"):
        if path.startswith("/v2/models/"):
            return V2_INFER if path.endswith("/infer") else V2_MODEL
        return path if path in ("/v2/health/live", "/v2/health/ready") else "/v2/other"
    return "/v1/other"


class Observe:
    """ASGI middleware around /v1/*: request id, latency, status and outcome, one JSON log line.

    Outermost, so 401s and rejected bodies are counted and logged like everything else.
    """

    def __init__(
        self,
        app: Any,
        *,
        monitoring: MonitoringPlan,
        input_fields: list[str],
        model_version: str,
        log_bodies: bool,
    ) -> None:
        self.app = app
        self.monitoring = monitoring
        self.sensitive = frozenset(monitoring.sensitive)
        self.input_fields = frozenset(input_fields)
        self.model_version = model_version
        self.log_bodies = log_bodies
        self.log = logging.getLogger("nb2prod.access")
        configure_logging()
        metrics(monitoring).expect_invalid(input_fields)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(("/v1/", "/v2/")):
            if scope["type"] == "http" and scope["path"] == "/metrics" and _METRICS is not None:
                _METRICS.refresh()  # the kill switch is a file: read it for every scrape
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        state: dict[str, Any] = {"id": request_id, "outcome": None, "reason": None, "status": 500}
        token = _REQUEST.set(state)
        request_body = bytearray() if self.log_bodies else None
        response_body = bytearray()

        async def receive_body() -> Any:
            message = await receive()
            if request_body is not None and message["type"] == "http.request":
                request_body.extend(message.get("body", b""))
            return message

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode()),
                    ],
                }
            elif message["type"] == "http.response.body" and (
                self.log_bodies or 400 <= state["status"] < 500
            ):
                response_body.extend(message.get("body", b""))
            await send(message)

        try:
            await self.app(
                scope, receive_body if request_body is not None else receive, send_with_id
            )
        finally:
            try:  # still in the request's context: the line carries its id
                self.record(scope, state, time.perf_counter() - start, request_body, response_body)
            finally:
                _REQUEST.reset(token)

    def record(
        self,
        scope: dict[str, Any],
        state: dict[str, Any],
        seconds: float,
        request_body: bytearray | None,
        response_body: bytearray,
    ) -> None:
        route = _route(scope["path"])
        status = state["status"]
        outcome = state["outcome"] or _outcome(status)
        m = metrics(self.monitoring)
        reason = state["reason"] if outcome in ("degraded", "unavailable") else None
        m.child(m.requests, route, str(status), outcome, reason or "").inc()
        m.child(m.latency, route).observe(seconds)
        fields: dict[str, Any] = {
            "method": scope.get("method"),
            "route": route,
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
            "model_version": self.model_version,
            "outcome": outcome,
        }
        if state["reason"]:
            fields["reason"] = state["reason"]
        if outcome == "invalid":
            invalid = self.invalid_fields(response_body)
            fields["invalid_fields"] = invalid
            for field in invalid or ["(body)"]:
                m.validation.labels(route=route, field=field).inc()
        if self.log_bodies:
            fields["request_body"] = self.redacted_json(request_body or b"")
            fields["response_body"] = self.redacted_json(response_body)
        self.log.info("request", extra={"fields": fields})

    def invalid_fields(self, body: bytes | bytearray) -> list[str]:
        """The Input fields a 400 names (never their values: BentoML leaves inputs out)."""
        try:
            detail = json.loads(body).get("detail", [])
        except (ValueError, AttributeError):
            return []
        found: list[str] = []
        for error in detail if isinstance(detail, list) else []:
            names = [p for p in error.get("loc", []) if isinstance(p, str)]
            known = [p for p in names if p in self.input_fields]
            field = known[-1] if known else "(other)"
            if field not in found:
                found.append(field)
        return found

    def redacted_json(self, body: bytes | bytearray) -> Any:
        try:
            return redact(json.loads(body), self.sensitive)
        except ValueError:
            return f"<{len(body)} bytes, not JSON>"


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status == 401:
        return "unauthorized"
    if status in (400, 422):
        return "invalid"
    if status == 503:
        return "unavailable"
    return "rejected" if status < 500 else "error"


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


# ---------------------------------------------------------------- the serving processes

RESOURCE_REFRESH_S = 5.0  # every worker re-reads its memory and CPU this often (and per scrape)
_RESOURCES: Resources | None = None


class Resources:
    """Memory, CPU seconds, in-flight requests and starts of the serving worker processes.

    prometheus_client's process collector reads only the process that answers the scrape, and
    BentoML answers /metrics from any worker with what the others wrote to its multiprocess
    directory: so each worker writes its own series there (memory and start time per ``pid``,
    CPU seconds and starts as counters summed over the workers, dead ones included) and refreshes
    them every :data:`RESOURCE_REFRESH_S` seconds, and the worker answering a scrape before it.
    """

    def __init__(
        self, clock: Callable[[], float] = time.process_time, registry: Any = None
    ) -> None:
        import threading

        from prometheus_client import Counter, Gauge

        # a registry of its own in unit tests; in multiprocess mode the values go to files
        to: dict[str, Any] = {"registry": registry} if registry is not None else {}

        self.memory = Gauge(
            "nb2prod_process_resident_memory_bytes", "Resident memory (RSS) of each serving worker",
            multiprocess_mode="liveall", **to,  # one series per live worker, labelled with its pid
        )  # fmt: skip
        self.cpu = Counter(
            "nb2prod_process_cpu_seconds",
            "CPU seconds (user and system) the serving workers used, all workers since the start",
            **to,
        )
        self.in_flight = Gauge(
            "nb2prod_requests_in_flight", "/v1 and /v2 requests being answered now, all workers",
            multiprocess_mode="livesum", **to,
        )  # fmt: skip
        self.starts = Counter(
            "nb2prod_worker_starts",
            "Serving worker processes started since the server started; above the worker count, "
            "workers were restarted",
            **to,
        )
        self.started = Gauge(
            "nb2prod_process_start_time_seconds", "When each serving worker started (Unix time)",
            multiprocess_mode="liveall", **to,
        )  # fmt: skip
        self.clock = clock
        self.lock = threading.Lock()  # the refresh thread and a scrape may refresh together
        self.cpu_seen = 0.0
        self.starts.inc()
        self.started.set(time.time())
        self.refresh()

    def refresh(self) -> None:
        """This worker's memory now, and the CPU seconds it used since the last refresh."""
        with self.lock:
            used = self.clock()
            if used > self.cpu_seen:
                self.cpu.inc(used - self.cpu_seen)
                self.cpu_seen = used
            rss = resident_bytes()
            if rss is not None:
                self.memory.set(rss)

    def watch(self, every: float = RESOURCE_REFRESH_S) -> None:
        """Refresh in a daemon thread, so that workers that answer no scrape stay current."""
        import threading

        def loop() -> None:
            while not stop.wait(every):
                self.refresh()

        stop = threading.Event()
        threading.Thread(target=loop, name="nb2prod-resources", daemon=True).start()


def worker_resources() -> Resources:
    """This worker's :class:`Resources`, created (and counted as a start) on first use."""
    global _RESOURCES
    if _RESOURCES is None:
        _RESOURCES = Resources()
        _RESOURCES.watch()
    return _RESOURCES


def resident_bytes() -> int | None:
    """This process's resident memory: /proc/self/statm on Linux, else the peak getrusage says."""
    import os
    import resource

    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


class InFlight:
    """ASGI middleware: counts the /v1 and /v2 requests being answered, and refreshes this
    worker's :class:`Resources` before a scrape of /metrics. Built in each worker as it starts,
    which counts the start (``nb2prod_worker_starts_total``)."""

    def __init__(self, app: Any, resources: Resources | None = None) -> None:
        self.app = app
        self.resources = resources or worker_resources()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path == "/metrics":
            self.resources.refresh()
        if not path.startswith(("/v1/", "/v2/")):
            await self.app(scope, receive, send)
            return
        self.resources.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.resources.in_flight.dec()
