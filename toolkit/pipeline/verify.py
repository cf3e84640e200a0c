"""The verify stage of ``package`` (and ``nb2prod verify``): the served bento (or its image) must answer every example as the notebook did.

Sends each example to ``POST /v1/predict`` (and all of them at once to ``/v1/predict_batch``),
compares the answers with the notebook's own outputs from ``examples.json``, and checks that
input breaking the contract is refused with a 4xx. Floats are compared with a relative tolerance
of 1e-9 (JSON round-trips floats exactly; the tolerance only absorbs BLAS reordering).
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import httpx

from ..adapters import bento, container
from ..adapters.children import Stopping
from ..adapters.procfs import tree_memory_bytes
from ..errors import ParityError
from ..image.containerize import check_built_from
from ..probe.explain import PARITY_REL_TOL, single_batch_fix
from ..probe.protocol import ProbeExample
from ..release.manifest import ColdStart
from ..release.reader import METADATA_JSON, Release
from ..runtime import startup
from ..runtime.model import sha256_file

REL_TOL = PARITY_REL_TOL


@dataclass(frozen=True)
class Expected:
    index: int
    input: Mapping[str, Any]
    output: Mapping[str, Any]
    degraded: bool
    reason: str | None


@dataclass(frozen=True)
class Difference:
    index: int
    route: str
    path: str
    expected: Any
    got: Any

    def __str__(self) -> str:
        return (
            f"example {self.index} via {self.route}: {self.path}: notebook {self.expected!r}, "
            f"service {self.got!r}"
        )


@dataclass(frozen=True)
class SingleBatch:
    """An example the service answered differently alone (``/v1/predict``) than in a batch
    (``/v1/predict_batch``)."""

    index: int
    input: Mapping[str, Any]
    path: str
    single: Any
    batch: Any

    def __str__(self) -> str:
        return (
            f"example {self.index}: {self.path}: alone {self.single!r}, in a batch {self.batch!r} "
            f"(input {json.dumps(self.input, sort_keys=True)})"
        )


@dataclass(frozen=True)
class VerifyReport:
    examples: int
    differences: tuple[Difference, ...]
    invalid_status: int
    cold_start_s: float
    openapi: Mapping[str, Any]
    single_batch: tuple[SingleBatch, ...] = ()  # served single answers unlike served batch ones
    # the release's batching verdict: why the contract probe switched batching off, when it saw a
    # batch answered differently from its items alone (None: it did not)
    probe_difference: str | None = None
    inputs: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)  # by example index
    healthy: bool | None = None  # an image's HEALTHCHECK, when one was run
    # PSS of the server's processes after answering every example; None where /proc cannot
    # see them. deploy.py sizes memory requests and limits from it.
    memory_bytes: int | None = None
    # the cold start in phases (import, model load, first answer): None where the server's log
    # or /proc could not tell (an image's container)
    cold_start: ColdStart | None = None

    def phases(self) -> str:
        """The cold start's phases as the summary shows them after "ready in N s" ("" unmeasured)."""
        cold = self.cold_start
        if cold is None:
            return ""
        return (
            f" (import {cold.import_s:.1f} s, model load {cold.model_load_s:.1f} s, "
            f"first answer {cold.first_answer_s:.1f} s)"
        )

    def summary(self) -> str:
        return (
            f"{self.examples} examples match the notebook, invalid input -> "
            f"HTTP {self.invalid_status}, ready in {self.cold_start_s:.1f} s{self.phases()}"
        )


def expectations(examples: Sequence[ProbeExample], min_confidence: float | None) -> list[Expected]:
    """What the service must answer: the model's output, or the fallback's where the guard
    would route a low-confidence answer to it."""
    expected = []
    for example in examples:
        output = example.output
        confidence = output.get("confidence")
        low = (
            min_confidence is not None
            and isinstance(confidence, (int, float))
            and confidence < min_confidence
        )
        if low and example.fallback_output is not None:
            expected.append(
                Expected(example.index, example.input, example.fallback_output, True,
                         "low_confidence")
            )  # fmt: skip
        else:
            expected.append(Expected(example.index, example.input, output, False, None))
    return expected


class Served(Protocol):
    """A running service: a bento served on loopback or a container with a loopback port."""

    @property
    def url(self) -> str: ...

    @property
    def cold_start_s(self) -> float: ...

    @property
    def pid(self) -> int | None: ...  # the server's main process on this host, when known


def verify_target(
    release: Release, *, check_files: bool = True, stopping: Stopping | None = None
) -> VerifyReport:
    """Serve ``release`` on a free loopback port with a fresh token and check it; its files are
    checked first (:meth:`Release.check_integrity`) unless ``check_files`` is false. With
    ``stopping``, the server is stopped in the background once checked (``stopping`` waits)."""
    return _verify(
        release,
        check_files,
        lambda env: bento.serve(release.bento_tag, env=env, stopping=stopping),
    )


def verify_image(release: Release, image: str, engine: container.Engine) -> VerifyReport:
    """Run ``image`` on a free loopback port with a fresh token and check it against
    ``release``'s examples; the container is removed whatever happens. ``healthy`` is the
    image's own HEALTHCHECK run once after the checks (podman; None with docker)."""
    check_built_from(image, engine, release.bento_tag)
    health: list[bool | None] = []

    @contextmanager
    def start(env: Mapping[str, str]) -> Iterator[Served]:
        with container.run_service(engine, image, env=env) as running:
            yield running
            health.append(container.healthcheck(engine, running.name))

    report = _verify(release, True, start)
    return replace(report, healthy=health[0] if health else None)


def _verify(
    release: Release,
    check_files: bool,
    start: Callable[[Mapping[str, str]], AbstractContextManager[Served, Any]],
) -> VerifyReport:
    if check_files:
        release.check_integrity()
    token = secrets.token_urlsafe(24)
    with start({TOKEN_ENV: token}) as server:
        return _checked(release, server, token)


TOKEN_ENV = "NB2PROD_API_TOKEN"


@contextmanager
def serving_staged(
    served: Path, service: str, *, stopping: Stopping | None = None
) -> Iterator[Callable[[Release], VerifyReport]]:
    """``bentoml serve SERVICE`` of ``served``, a tree of exactly the files the bento will carry,
    started now, so that it starts while the bento is built; yields the check, to be called with
    the built release: it proves the bento carries those files, byte for byte (the answers heard
    are then the bento's), waits for the server and checks it as :func:`verify_target` does."""
    token = secrets.token_urlsafe(24)
    with bento.starting(
        service, working_dir=served, env={TOKEN_ENV: token}, stopping=stopping, kill=True
    ) as server:

        def check(release: Release) -> VerifyReport:
            # what the served tree's metadata.json records, which the server checks every file
            # of it against before it is ready: the bento's copies must match it
            recorded = {**release.metadata.carried(),
                        METADATA_JSON: sha256_file(served / METADATA_JSON)}  # fmt: skip
            raise_for_other_files(bento.path_of(release.bento_tag) / "src", recorded)
            return _checked(release, server.ready(), token)

        yield check


# The one file of a bento's src/ that BentoML writes itself: a copy of the bentofile it built from.
BENTO_OWN_SRC = frozenset({"bentofile.yaml"})


def raise_for_other_files(bento_src: Path, served: Mapping[str, str]) -> None:
    """Refuse a bento whose src/ is not the served tree, given as each served file's sha256
    (relative path -> sha256): the same relative paths (BentoML's own bentofile.yaml aside) and,
    for each, the same sha256."""
    carried = _tree(bento_src) - BENTO_OWN_SRC
    problems = [f"{p}: in the bento, not served" for p in sorted(carried - served.keys())]
    problems += [f"{p}: served, not in the bento" for p in sorted(served.keys() - carried)]
    for relative in sorted(carried & served.keys()):
        if sha256_file(bento_src / relative) != served[relative]:
            problems.append(f"{relative}: the bento's copy differs from the served file")
    if problems:
        raise ParityError(
            f"the bento ({bento_src}) does not carry the files verify served:\n  "
            + "\n  ".join(problems[:20]),
            hint="bentoml build changed or left out a file of the release; nothing was released.",
        )


def _tree(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def _checked(release: Release, server: Served, token: str) -> VerifyReport:
    """Every example, the invalid input and the cold start of ``server``, which serves ``release``."""
    examples = release.examples
    fallback = release.metadata.release.fallback
    expected = expectations(examples, fallback.min_confidence)
    first_s = first_answer_s(server.url, token, expected[0]) if expected else None
    report = check_served(server.url, token, expected, cold_start_s=server.cold_start_s)
    memory = tree_memory_bytes(server.pid) if server.pid is not None else None
    cold_start = served_cold_start(server, first_s)
    batching = release.monitoring.batching
    return replace(
        report,
        memory_bytes=memory,
        cold_start=cold_start,
        probe_difference=batching.why if batching.items_alone and not batching.enabled else None,
    )


# ---------------------------------------------------------------- the cold start in phases


def first_answer_s(url: str, token: str, item: Expected) -> float:
    """How long the service took to answer its first request (one example, POST /v1/predict);
    the answer itself is checked with the others by :func:`check_served`."""
    with httpx.Client(base_url=url, timeout=30.0) as client:
        sent = time.monotonic()
        _post(client, "/v1/predict", dict(item.input), {"Authorization": f"Bearer {token}"})
        return time.monotonic() - sent


def served_cold_start(server: Served, first_s: float | None) -> ColdStart | None:
    """The cold start of a ``bentoml serve`` in phases, from the server's process start
    (/proc) and its workers' startup lines in its log (runtime/startup.py); None for what
    cannot tell (an image: the engine's start is not the process's, or no log)."""
    if first_s is None or server.pid is None or not isinstance(server, bento.Server):
        return None
    started = startup.process_start(server.pid)
    try:
        log = server.log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    if started is None:
        return None
    return cold_start_phases(started, startup_marks(log), started + server.cold_start_s, first_s)


def startup_marks(log: str) -> list[dict[str, Any]]:
    """Every worker's startup marks in a server's log: the JSON lines runtime/startup.py writes
    (``{"message": "started", "startup": {...}}``), other lines ignored."""
    found = []
    for line in log.splitlines():
        start = line.find("{")
        if start < 0 or f'"{startup.FIELD}"' not in line:
            continue
        try:
            entry = json.loads(line[start:])
        except ValueError:
            continue
        marks = entry.get(startup.FIELD) if isinstance(entry, dict) else None
        if entry.get("message") == startup.MESSAGE and isinstance(marks, dict):
            found.append(marks)
    return found


def cold_start_phases(
    started: float, marks: Sequence[Mapping[str, Any]], ready: float, first_s: float
) -> ColdStart | None:
    """The phases from the server's start, the first worker to load its model, /readyz's first
    200 (all seconds since boot) and the first request's duration: import (start -> that worker
    imported the service module), model load (-> its model loaded), first answer (-> ready, then
    one request answered). None without a worker's complete marks in order."""
    usable = [
        m for m in marks
        if isinstance(m.get("imported_s"), (int, float)) and isinstance(m.get("loaded_s"), (int, float))
        and started <= m["imported_s"] <= m["loaded_s"]
    ]  # fmt: skip
    if not usable:
        return None
    first = min(usable, key=lambda m: float(m["loaded_s"]))
    imported, loaded = float(first["imported_s"]), float(first["loaded_s"])
    import_s, model_load_s = imported - started, loaded - imported
    # /readyz is polled: it may have been seen a moment after the worker said it was loaded,
    # never (up to /proc's tick) before it
    first_answer = max(0.0, ready - loaded) + first_s
    return ColdStart(
        import_s=round(import_s, 3),
        model_load_s=round(model_load_s, 3),
        first_answer_s=round(first_answer, 3),
        total_s=round(import_s + model_load_s + first_answer, 3),
    )


def check_served(
    url: str, token: str, expected: list[Expected], *, cold_start_s: float
) -> VerifyReport:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
        answers = compare_examples(client, expected)
        invalid = _send(client, "/v1/predict", INVALID_INPUT)
        openapi = client.get("/docs.json").json()
    if not 400 <= invalid.status_code < 500:
        raise ParityError(
            f"input that breaks the contract got HTTP {invalid.status_code}, expected a 4xx"
        )
    return VerifyReport(
        len(expected), answers.differences, invalid.status_code, cold_start_s, openapi,
        single_batch=answers.single_batch, inputs={e.index: e.input for e in expected},
    )  # fmt: skip


INVALID_INPUT = {"__nb2prod_not_a_field__": 1}  # breaks every contract: a 4xx is due


@dataclass(frozen=True)
class Answers:
    """How a service answered the examples, alone and in one batch."""

    differences: tuple[Difference, ...]  # from the notebook's outputs
    single_batch: tuple[SingleBatch, ...]  # alone unlike in the batch


def compare_examples(client: httpx.Client, expected: list[Expected]) -> Answers:
    """Send every example to ``/v1/predict`` and all of them to ``/v1/predict_batch`` through
    ``client`` (its base URL and token), and compare the answers with the notebook's; a route
    answering other than 200 is a :class:`ParityError`."""
    differences: list[Difference] = []
    singles = [_post(client, "/v1/predict", dict(item.input)) for item in expected]
    for item, body in zip(expected, singles, strict=True):
        differences += _compare_envelope(item, body, "/v1/predict")
    batch = _post(client, "/v1/predict_batch", {"inputs": [dict(e.input) for e in expected]})
    results = batch.get("results", [])
    if len(results) != len(expected):
        differences.append(
            Difference(-1, "/v1/predict_batch", "results", len(expected), len(results))
        )
    for item, result in zip(expected, results, strict=False):
        differences += _compare_envelope(item, result, "/v1/predict_batch")
    return Answers(tuple(differences), single_batch_differences(expected, singles, results))


def single_batch_differences(
    expected: Sequence[Expected],
    singles: Sequence[Mapping[str, Any]],
    results: Sequence[Mapping[str, Any]],
) -> tuple[SingleBatch, ...]:
    """Where the service's answer to an example alone differs from its answer in the batch."""
    return tuple(
        SingleBatch(item.index, item.input, path, single, batch)
        for item, alone, together in zip(expected, singles, results, strict=False)
        for path, single, batch in _diff(alone.get("output"), together.get("output"), "output")
    )


def raise_for_differences(report: VerifyReport) -> None:
    """A :class:`ParityError` naming what differs: the service's single answers from its batch
    answers (a single/batch difference in the pipeline), or the service from the notebook (with
    the contract probe's single/batch finding when it had one, else serialization or notebook
    state)."""
    if report.single_batch:
        first = report.single_batch[0]
        shown = "\n".join(f"  {d}" for d in report.single_batch[:20])
        raise ParityError(
            f"a single/batch difference: the served bento answered {len(report.single_batch)} "
            "example field(s) differently alone (/v1/predict) than in a batch "
            f"(/v1/predict_batch):\n{shown}",
            hint=single_batch_fix(first.input) + ".",
        )
    if not report.differences:
        return
    shown = "\n".join(f"  {d}" for d in report.differences[:20])
    message = (
        f"the served bento answered {len(report.differences)} example field(s) differently "
        f"from the notebook:\n{shown}"
    )
    if report.probe_difference is not None:
        index = next((d.index for d in report.differences if d.index >= 0), -1)
        raise ParityError(
            message + "\nThe served bento answers every input alone, as the notebook did not: "
            "the notebook's answers to the examples were computed in one batch, and the "
            f"contract probe found batching {report.probe_difference}",
            hint="This is a single/batch difference, not serialization. "
            + single_batch_fix(report.inputs.get(index, {}))
            + ".",
        )
    raise ParityError(
        message,
        hint="The service answers each example the same alone and in a batch, so this is not a "
        "single/batch difference: the service runs the same pipeline.py, and a difference "
        "means the model did not survive serialization or the code depends on notebook state.",
    )


RATE_LIMITED_TRIES = 10  # a bento with a small [service] rate_limit: wait as it says, this often
MAX_RETRY_AFTER_S = 5.0


def _send(
    client: httpx.Client,
    route: str,
    payload: dict[str, Any],
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST, waiting out a 429 of the service's own rate limit as its Retry-After says."""
    for _ in range(RATE_LIMITED_TRIES):
        response = client.post(route, json=payload, headers=headers)
        if response.status_code != 429:
            break
        try:
            wait = float(response.headers.get("retry-after", "1"))
        except ValueError:
            wait = 1.0
        time.sleep(min(max(wait, 0.1), MAX_RETRY_AFTER_S))
    return response


def _post(
    client: httpx.Client,
    route: str,
    payload: dict[str, Any],
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    response = _send(client, route, payload, headers)
    if response.status_code != 200:
        raise ParityError(
            f"POST {route} answered HTTP {response.status_code}: {response.text[:500]}"
        )
    data = response.json()
    assert isinstance(data, dict)
    return data


def _compare_envelope(item: Expected, body: Mapping[str, Any], route: str) -> list[Difference]:
    diffs = [
        Difference(item.index, route, path, exp, got)
        for path, exp, got in _diff(item.output, body.get("output"), "output")
    ]
    for key, exp in (("degraded", item.degraded), ("reason", item.reason)):
        if body.get(key) != exp:
            diffs.append(Difference(item.index, route, key, exp, body.get(key)))
    return diffs


def _diff(expected: Any, got: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(expected, dict) and isinstance(got, dict):
        for key in sorted(set(expected) | set(got)):
            yield from _diff(expected.get(key), got.get(key), f"{path}.{key}")
    elif isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            yield from _diff(e, g, f"{path}[{i}]")
    elif (
        isinstance(expected, float) and isinstance(got, (int, float)) and not isinstance(got, bool)
    ):
        if not math.isclose(expected, got, rel_tol=REL_TOL, abs_tol=0.0):
            yield path, expected, got
    elif expected != got:
        yield path, expected, got
