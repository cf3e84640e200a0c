"""Parity rules: what counts as answering like the notebook (no server: the HTTP part is e2e)."""

from __future__ import annotations

from nb2prod.pipeline.verify import Expected, _compare_envelope, expectations
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
