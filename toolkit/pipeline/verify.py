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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import httpx

from ..adapters import bento, container
from ..adapters.procfs import tree_memory_bytes
from ..errors import ParityError
from ..image.containerize import check_built_from
from ..probe.explain import PARITY_REL_TOL, single_batch_fix
from ..probe.protocol import ProbeExample
from ..release.reader import Release

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

    def summary(self) -> str:
        return (
            f"{self.examples} examples match the notebook, invalid input -> "
            f"HTTP {self.invalid_status}, ready in {self.cold_start_s:.1f} s"
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
    release: Release, *, check_files: bool = True, stopping: bento.Stopping | None = None
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
    examples = release.examples
    fallback = release.metadata.release.fallback
    token = secrets.token_urlsafe(24)
    with start({"NB2PROD_API_TOKEN": token}) as server:
        report = check_served(
            server.url,
            token,
            expectations(examples, fallback.min_confidence),
            cold_start_s=server.cold_start_s,
        )
        memory = tree_memory_bytes(server.pid) if server.pid is not None else None
    batching = release.monitoring.batching
    return replace(
        report,
        memory_bytes=memory,
        probe_difference=batching.why if batching.items_alone and not batching.enabled else None,
    )


def check_served(
    url: str, token: str, expected: list[Expected], *, cold_start_s: float
) -> VerifyReport:
    headers = {"Authorization": f"Bearer {token}"}
    differences: list[Difference] = []
    with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
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
        invalid = client.post("/v1/predict", json={"__nb2prod_not_a_field__": 1})
        openapi = client.get("/docs.json").json()
    if not 400 <= invalid.status_code < 500:
        raise ParityError(
            f"input that breaks the contract got HTTP {invalid.status_code}, expected a 4xx"
        )
    return VerifyReport(
        len(expected), tuple(differences), invalid.status_code, cold_start_s, openapi,
        single_batch=single_batch_differences(expected, singles, results),
        inputs={e.index: e.input for e in expected},
    )  # fmt: skip


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


def _post(client: httpx.Client, route: str, payload: dict[str, Any]) -> dict[str, Any]:
    response = client.post(route, json=payload)
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
