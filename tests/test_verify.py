"""Parity rules: what counts as answering like the notebook, and what a difference is named (a
loopback HTTP server stands in for the bento; the bento itself is e2e)."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from nb2prod.errors import ParityError
from nb2prod.pipeline.verify import (
    Expected,
    _compare_envelope,
    check_served,
    expectations,
    raise_for_differences,
    raise_for_other_files,
)
from nb2prod.probe.protocol import ProbeExample

EXAMPLE = ProbeExample(
    index=0,
    input={"x": 1.0},
    output={"label": "a", "confidence": 0.25},
    fallback_output={"label": "b", "confidence": None},
)


def envelope(output, degraded=False, reason=None):  # type: ignore[no-untyped-def]
    return {"output": output, "model_version": "1.0.0", "degraded": degraded, "reason": reason}


def test_identical_answer_has_no_difference() -> None:
    (item,) = expectations([EXAMPLE], None)
    assert _compare_envelope(item, envelope({"label": "a", "confidence": 0.25}), "/r") == []


def test_float_noise_below_tolerance_is_accepted_but_real_change_is_not() -> None:
    (item,) = expectations([EXAMPLE], None)
    assert not _compare_envelope(item, envelope({"label": "a", "confidence": 0.25 + 1e-17}), "/r")
    (diff,) = _compare_envelope(item, envelope({"label": "a", "confidence": 0.2501}), "/r")
    assert (diff.path, diff.expected, diff.got) == ("output.confidence", 0.25, 0.2501)
    assert "example 0 via /r" in str(diff)


def test_missing_and_extra_fields_and_degraded_answers_are_differences() -> None:
    item = Expected(0, {"x": 1}, {"label": "a"}, False, None)
    diffs = _compare_envelope(item, envelope({"other": 1}, degraded=True, reason="error"), "/r")
    assert {d.path for d in diffs} == {"output.label", "output.other", "degraded", "reason"}


def test_low_confidence_examples_expect_the_fallback() -> None:
    (item,) = expectations([EXAMPLE], 0.5)
    assert (item.output, item.degraded, item.reason) == (
        EXAMPLE.fallback_output, True, "low_confidence"
    )  # fmt: skip
    (item,) = expectations([EXAMPLE], 0.2)
    assert item.output == EXAMPLE.output and not item.degraded


# ---------------------------------------------------------------- what differs, named (issue 22)


Answer = Callable[[dict[str, Any], bool], dict[str, Any]]  # (input, in a batch) -> output


@contextmanager
def serving(answer: Answer, limited: int = 0) -> Iterator[str]:
    """A real HTTP server on a free loopback port that speaks the service's routes; the first
    ``limited`` POSTs get 429 with Retry-After, as a small [service] rate_limit answers."""
    refused = [0]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200, {"openapi": "3.0.2"})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if refused[0] < limited:
                refused[0] += 1
                data = b'{"error": "too many requests"}'
                self.send_response(429)
                self.send_header("Retry-After", "0.2")  # seconds; the service sends whole ones
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if self.path == "/v1/predict_batch":
                results = [envelope(answer(i, True)) for i in body["inputs"]]
                self._send(200, {"results": results})
            elif "__nb2prod_not_a_field__" in body:
                self._send(400, {"error": "invalid"})
            else:
                self._send(200, envelope(answer(body, False)))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


TITANIC = [
    Expected(0, {"Age": 22.0, "Sex": "female"}, {"y": 22.0}, False, None),
    Expected(1, {"Age": None, "Sex": "male"}, {"y": 30.0}, False, None),
]


def age_or(alone: float, batch: float) -> Answer:
    """Finding 2: a lone row with Age None loses its Age column; in a batch it is filled."""

    def answer(inp: dict[str, Any], in_batch: bool) -> dict[str, Any]:
        age = inp["Age"]
        return {"y": age if age is not None else (batch if in_batch else alone)}

    return answer


def verified(answer: Answer) -> Any:
    with serving(answer) as url:
        return check_served(url, "t" * 24, TITANIC, cold_start_s=0.1)


def test_served_single_answers_unlike_served_batch_ones_are_a_single_batch_difference() -> None:
    report = verified(age_or(0.0, 30.0))
    assert [str(d) for d in report.single_batch] == [
        'example 1: output.y: alone 0.0, in a batch 30.0 (input {"Age": null, "Sex": "male"})'
    ]
    with pytest.raises(ParityError) as err:
        raise_for_differences(report)
    assert err.value.message.startswith(
        "a single/batch difference: the served bento answered 1 example field(s) differently "
        "alone (/v1/predict) than in a batch (/v1/predict_batch):"
    )
    assert "a None in `Age` makes an object column" in (err.value.hint or "")
    assert "serialization" not in (err.value.hint or "")


def test_served_unlike_the_notebook_says_whether_the_probe_saw_a_single_batch_difference() -> None:
    report = verified(age_or(0.0, 0.0))  # answered alone on both routes, unlike the notebook
    assert report.single_batch == () and len(report.differences) == 2
    with pytest.raises(ParityError) as err:
        raise_for_differences(report)
    assert "2 example field(s) differently from the notebook" in err.value.message
    assert "not a single/batch difference" in (err.value.hint or "")
    assert "did not survive serialization" in (err.value.hint or "")

    probed = replace(report, probe_difference="off: a single/batch difference: input {...}")
    with pytest.raises(ParityError) as err:
        raise_for_differences(probed)
    assert "the contract probe found batching off: a single/batch difference" in err.value.message
    hint = err.value.hint or ""
    assert hint.startswith("This is a single/batch difference, not serialization.")
    assert "a None in `Age`" in hint


def test_answers_like_the_notebook_raise_nothing() -> None:
    report = verified(age_or(30.0, 30.0))
    assert report.single_batch == () and report.differences == ()
    raise_for_differences(report)


def test_verify_waits_out_the_services_own_rate_limit() -> None:
    """A release with a small [service] rate_limit still verifies: a 429 is retried after its
    Retry-After, for every route verify calls (the invalid input too: its 4xx must be a 400)."""
    with serving(age_or(30.0, 30.0), limited=3) as url:
        report = check_served(url, "t" * 24, TITANIC, cold_start_s=0.1)
    assert report.differences == ()
    with (
        serving(age_or(30.0, 30.0), limited=10_000) as url,
        pytest.raises(ParityError, match="HTTP 429"),
    ):
        check_served(url, "t" * 24, TITANIC, cold_start_s=0.1)


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)
    return root


def test_a_bento_carrying_other_files_than_the_served_ones_is_refused_naming_each(
    tmp_path: Path,
) -> None:
    files = {"service/service.py": b"x = 1\n", "model/model.skops": b"weights"}
    served = {relative: hashlib.sha256(data).hexdigest() for relative, data in files.items()}
    same = _tree(tmp_path / "same", {**files, "bentofile.yaml": b"service: s\n"})
    (same / "service" / "__pycache__").mkdir()
    (same / "service" / "__pycache__" / "service.cpython-311.pyc").write_bytes(b"\0")
    raise_for_other_files(same, served)  # BentoML's own bentofile.yaml and bytecode aside
    other = _tree(tmp_path / "other", {
        "service/service.py": b"x = 2\n", "examples.json": b"[]", "bentofile.yaml": b"",
    })  # fmt: skip
    with pytest.raises(ParityError) as raised:
        raise_for_other_files(other, served)
    message = raised.value.message
    assert "examples.json: in the bento, not served" in message
    assert "model/model.skops: served, not in the bento" in message
    assert "service/service.py: the bento's copy differs from the served file" in message
