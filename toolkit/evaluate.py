"""Stage 7, evaluate: the notebook's metrics against the quality gates of the config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from toolkit.config import Gate
from toolkit.errors import GateError


@dataclass(frozen=True)
class GateResult:
    gate: Gate
    value: float

    @property
    def passed(self) -> bool:
        return self.gate.passes(self.value)


@dataclass(frozen=True)
class Evaluation:
    metrics: Mapping[str, float]
    results: tuple[GateResult, ...]
    gates_enforced: bool

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if not r.passed)

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
            "passed": not self.failed,
        }


def evaluate(
    metrics: Mapping[str, float] | None, gates: tuple[Gate, ...], *, enforce: bool
) -> Evaluation:
    """Check every gate; raise :class:`GateError` with a table when one fails and ``enforce``."""
    metrics = metrics or {}
    missing = [g.metric for g in gates if g.metric not in metrics]
    if missing:
        produced = ", ".join(sorted(metrics)) or "none (no `evaluate` cell set `metrics`)"
        raise GateError(
            f"gate on '{missing[0]}', but the notebook produced no such metric",
            hint=f"Metrics produced: {produced}.",
        )
    evaluation = Evaluation(
        metrics=dict(metrics),
        results=tuple(GateResult(g, metrics[g.metric]) for g in gates),
        gates_enforced=enforce,
    )
    if enforce and evaluation.failed:
        raise GateError(
            "quality gates failed:\n" + gate_table(evaluation.results),
            hint="Improve the model, change the gate in the config, or pass --no-gates "
            "(recorded in the report).",
        )
    return evaluation


def gate_table(results: tuple[GateResult, ...]) -> str:
    rows = [("metric", "value", "gate", "verdict")]
    rows += [
        (r.gate.metric, f"{r.value:.6g}", str(r.gate), "pass" if r.passed else "FAIL")
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    )
