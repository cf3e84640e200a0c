"""The evaluate stage of ``package``: the notebook's metrics against the quality gates, a trivial baseline and the
previous release, per-slice metrics, the latency of the serving path, and the contract probe's
share of admitted inputs answered (the ``robustness`` gate, 100% unless ``[gates]`` lowers it).

The numbers are measured in the kernel (:mod:`nb2prod.probe`); this stage judges and summarises them.
A failing gate or a regression beyond ``[evaluation] max_regression`` stops packaging before
anything is built or written, unless ``--no-gates`` (then the report records it).
"""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import GateError
from ..notebook.config import Gate
from ..probe.protocol import Holdout, LatencySamples, Robustness
from ..probe.threshold import Threshold

ROBUSTNESS = "robustness"  # the contract probe's gate: share of admitted inputs answered
DEFAULT_ROBUSTNESS = Gate(ROBUSTNESS, ">=", 1.0)


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    value: float

    @property
    def passed(self) -> bool:
        return self.gate.passes(self.value)


_LOWER_IS_BETTER = re.compile(r"(loss|error|mae|mse|rmse|mape)$", re.IGNORECASE)


def lower_is_better(metric: str) -> bool:
    """Metrics named like a loss or an error get better as they fall; all others as they rise."""
    return bool(_LOWER_IS_BETTER.search(metric))


@dataclass(frozen=True)
class Regression:
    """A metric against the previous release, with the allowed worsening."""

    metric: str
    previous: float
    current: float
    allowed: float | None  # None: reported, not gated

    @property
    def worse_by(self) -> float:
        delta = self.current - self.previous
        return (delta if lower_is_better(self.metric) else -delta) + 0.0  # no "-0.0000"

    @property
    def passed(self) -> bool:
        return self.allowed is None or self.worse_by <= self.allowed + 1e-12


@dataclass(frozen=True)
class Latency:
    """The serving path timed in the kernel: preprocess + predict + postprocess, and predict alone."""

    batch: int
    pipeline_ms: tuple[float, ...]
    model_ms: tuple[float, ...]

    @staticmethod
    def _pct(samples: Sequence[float], q: int) -> float:
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    def to_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "requests": len(self.pipeline_ms),
            "p50_ms": self._pct(self.pipeline_ms, 50),
            "p95_ms": self._pct(self.pipeline_ms, 95),
            "p50_ms_per_row": self._pct(self.pipeline_ms, 50) / self.batch,
            "model_p50_ms": self._pct(self.model_ms, 50),
            "model_p95_ms": self._pct(self.model_ms, 95),
            "mean_ms": statistics.fmean(self.pipeline_ms),
        }


@dataclass(frozen=True)
class Evaluation:
    metrics: Mapping[str, float]
    results: tuple[GateResult, ...]
    gates_enforced: bool
    holdout: Mapping[str, Any] | None = None
    latency: tuple[Latency, ...] = ()
    previous_version: str | None = None
    regressions: tuple[Regression, ...] = field(default_factory=tuple)
    robustness: Robustness | None = None

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    @property
    def regressed(self) -> tuple[Regression, ...]:
        return tuple(r for r in self.regressions if not r.passed)

    def to_json(self) -> dict[str, Any]:
        return {
            "metrics": dict(sorted(self.metrics.items())),
            "gates": [
                {
                    "metric": r.gate.metric,
                    "gate": str(r.gate),
                    "value": r.value,
                    "passed": r.passed,
                }
                for r in self.results
            ],
            "gates_enforced": self.gates_enforced,
            "passed": not self.failed and not self.regressed,
            "holdout": dict(self.holdout) if self.holdout else None,
            "latency": [lat.to_json() for lat in self.latency],
            "robustness": self.robustness.model_dump(mode="json") if self.robustness else None,
            "previous_release": {
                "version": self.previous_version,
                "metrics": [
                    {
                        "metric": r.metric,
                        "previous": r.previous,
                        "current": r.current,
                        "worse_by": r.worse_by,
                        "max_regression": r.allowed,
                        "passed": r.passed,
                    }
                    for r in self.regressions
                ],
            }
            if self.previous_version
            else None,
        }

    def headline(self) -> str:
        """One line: each gate with its value and verdict, then the held-out figures with what
        each was computed from."""
        gates = (
            ", ".join(
                f"{r.gate.metric} {r.value:.4g} {r.gate} {'ok' if r.passed else 'FAILED'}"
                for r in self.results
            )
            or "no gates configured"
        )
        return gates + (f"; held-out: {held_out_line(self.holdout)}" if self.holdout else "")

    def summary(self) -> dict[str, Any]:
        """What `/v1/metadata` shows: verdicts and headline figures, not raw samples."""
        data = self.to_json()
        if data["holdout"]:
            data["holdout"] = {
                k: v for k, v in data["holdout"].items() if k not in ("confusion", "residuals")
            }
        if data["robustness"]:
            keep = ("share", "tested", "answered", "batch_agrees")
            data["robustness"] = {k: data["robustness"][k] for k in keep}
        return data


def held_out_line(holdout: Mapping[str, Any]) -> str:
    """``accuracy 0.91, f1_macro 0.9 from Output.label (threshold about 0.8 on
    Output.probability); roc_auc 0.97, log_loss 0.21 from Output.probability``."""
    figures: Mapping[str, float] = holdout["model"]
    sources: Mapping[str, str] = holdout.get("sources") or {}
    groups: dict[str, list[str]] = {}
    for metric in figures:
        groups.setdefault(sources.get(metric, ""), []).append(metric)
    bounds = holdout.get("threshold")
    probability = sources.get("roc_auc")
    parts = []
    for source, names in groups.items():
        text = ", ".join(f"{name} {figures[name]:.4g}" for name in names)
        text += f" from {source}" if source else ""
        if bounds and probability and source != probability:
            named = Threshold(*bounds).named()
            where = (
                f"about {named:g}"
                if named is not None
                else f"in ({bounds[0]:.4g}, {bounds[1]:.4g}]"
            )
            text += f" (threshold {where} on {probability})"
        parts.append(text)
    return "; ".join(parts)


def evaluate(
    metrics: Mapping[str, float] | None,
    gates: tuple[Gate, ...],
    *,
    enforce: bool,
    holdout: Holdout | None = None,
    latency: Mapping[str, LatencySamples] | None = None,
    previous: tuple[str, Mapping[str, float]] | None = None,
    max_regression: Mapping[str, float] | None = None,
    robustness: Robustness | None = None,
) -> Evaluation:
    """Judge the notebook's metrics and the contract probe; raise :class:`GateError` with a table
    when a gate fails or a metric regressed beyond ``max_regression`` against ``previous``
    (version, metrics), and ``enforce``. ``[gates] robustness`` sets the contract probe's gate."""
    metrics = metrics or {}
    max_regression = max_regression or {}
    robust_gate = next((g for g in gates if g.metric == ROBUSTNESS), DEFAULT_ROBUSTNESS)
    gates = tuple(g for g in gates if g.metric != ROBUSTNESS)
    missing = [g.metric for g in gates if g.metric not in metrics]
    if missing:
        produced = ", ".join(sorted(metrics)) or "none (no `evaluate` cell set `metrics`)"
        raise GateError(
            f"gate on '{missing[0]}', but the notebook produced no such metric",
            hint=f"Metrics produced: {produced}.",
        )
    unknown = sorted(set(max_regression) - set(metrics))
    if unknown:
        raise GateError(
            f"[evaluation] max_regression names '{unknown[0]}', but the notebook produced no "
            "such metric",
            hint=f"Metrics produced: {', '.join(sorted(metrics)) or 'none'}.",
        )
    regressions: tuple[Regression, ...] = ()
    if previous is not None:
        _, before = previous
        regressions = tuple(
            Regression(name, before[name], value, max_regression.get(name))
            for name, value in sorted(metrics.items())
            if name in before
        )
    evaluation = Evaluation(
        metrics=dict(metrics),
        results=tuple(GateResult(g, metrics[g.metric]) for g in gates)
        + ((GateResult(robust_gate, robustness.share),) if robustness else ()),
        gates_enforced=enforce,
        holdout=holdout.model_dump(mode="json", exclude_none=True) if holdout else None,
        latency=tuple(
            Latency(int(size), t.pipeline_ms, t.model_ms)
            for size, t in sorted((latency or {}).items(), key=lambda item: int(item[0]))
        ),
        previous_version=previous[0] if previous else None,
        regressions=regressions,
        robustness=robustness,
    )
    if enforce and evaluation.failed:
        robust = next((r for r in evaluation.failed if r.gate.metric == ROBUSTNESS), None)
        raise GateError(
            "quality gates failed:\n"
            + gate_table(evaluation.results)
            + (f"\n{robustness_failure(robustness)}" if robust and robustness else ""),
            hint="Improve the model, change the gate in the config, or pass --no-gates "
            "(recorded in the report)."
            + (
                " For robustness: make the pipeline answer every input the contract admits "
                "(or narrow the contract), or lower [gates] robustness."
                if robust
                else ""
            ),
        )
    if enforce and evaluation.regressed:
        rows: list[tuple[str, ...]] = [
            ("metric", previous[0] if previous else "previous", "now", "worse by", "allowed")
        ]
        rows += [
            (
                r.metric,
                f"{r.previous:.6g}",
                f"{r.current:.6g}",
                f"{r.worse_by:.6g}",
                f"{r.allowed:g}",
            )
            for r in evaluation.regressed
        ]
        raise GateError(
            "metrics regressed against the previous release beyond [evaluation] max_regression:\n"
            + _table(rows),
            hint="Improve the model, raise max_regression, or pass --no-gates (recorded).",
        )
    return evaluation


def robustness_failure(robustness: Robustness) -> str:
    """What the contract probe found unanswered, for the gate's error message."""
    text = (
        f"robustness: {robustness.tested - robustness.answered} of {robustness.tested} inputs "
        "the contract admits got no valid Output"
    )
    smallest = robustness.smallest_failure
    if smallest is not None:
        text += (
            f"; shrunk to the fields that make it fail: {smallest.cause}"
            if smallest.cause
            else f"; the smallest: {json.dumps(smallest.input, sort_keys=True)} -> {smallest.error}"
        )
    return text


def gate_table(results: tuple[GateResult, ...]) -> str:
    rows: list[tuple[str, ...]] = [("metric", "value", "gate", "verdict")]
    rows += [
        (r.gate.metric, f"{r.value:.6g}", str(r.gate), "pass" if r.passed else "FAIL")
        for r in results
    ]
    return _table(rows)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    )
