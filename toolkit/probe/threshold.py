"""The probability behind a binary classifier's answers, and the threshold the service applied.

A service often answers a label and the probability it came from (``label: bool`` and
``probability: float``, the label True from 0.80). Accuracy and F1 are scored on the label the
service answers; ROC AUC and log loss on the probability. Which Output field holds the probability
is ``[evaluation] probability_field``, else the one number field in [0, 1] whose values order the
labels (every row answered with the positive class has a higher probability than every other). The
threshold itself is not in the contract: the held-out rows bound it (the highest probability
answered negative, the lowest answered positive). Pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .labels import as_bool, kind
from .values import is_number

MAX_DECIMALS = 3  # a threshold is named (about 0.8) when one number this short fits the bounds


@dataclass(frozen=True)
class Probabilities:
    """The probability of ``positive``, one per row, and where it was read."""

    values: list[float]
    positive: Any
    source: str  # "Output.probability", or the predict path's column


@dataclass(frozen=True)
class Threshold:
    """The labels follow the probability: ``positive`` from somewhere in (``above``, ``upto``]."""

    above: float  # the highest probability answered with the other class
    upto: float  # the lowest probability answered with the positive class

    def named(self) -> float | None:
        """The one shortest decimal within the bounds (0.8 for (0.7913, 0.8125]), if just one."""
        for decimals in range(1, MAX_DECIMALS + 1):
            scale = 10**decimals
            fits = [
                k / scale
                for k in range(math.ceil(self.above * scale), math.floor(self.upto * scale) + 1)
                if self.above < k / scale <= self.upto
            ]
            if fits:
                return fits[0] if len(fits) == 1 else None
        return None

    def describe(self, label: str, probability: str, positive: Any) -> str:
        named = self.named()
        bounds = f"between {self.above:.4g} and {self.upto:.4g} on these rows"
        return f"{label} is {positive!r} where {probability} >= " + (
            f"about {named:g} ({bounds})" if named is not None else f"a threshold {bounds}"
        )


def probability_values(values: Sequence[Any]) -> bool:
    """Numbers (not booleans) between 0 and 1, every one."""
    return bool(values) and all(is_number(v) and 0 <= v <= 1 for v in values)


def conventional_positive(labels: Sequence[Any]) -> Any | None:
    """The positive class of two labels when their kind says it: True, 1, "yes" and the like."""
    distinct = set(labels)
    if len(distinct) != 2 or kind(list(distinct)) is None:
        return None
    readings = {as_bool(v): v for v in distinct}
    return readings.get(True) if set(readings) == {True, False} else None


def threshold(
    probabilities: Sequence[float], predicted: Sequence[Any], positive: Any
) -> Threshold | None:
    """Bounds of the threshold when ``predicted`` is ``positive`` exactly above one; else None."""
    above = [p for p, y in zip(probabilities, predicted, strict=True) if y != positive]
    upto = [p for p, y in zip(probabilities, predicted, strict=True) if y == positive]
    if not above or not upto or max(above) >= min(upto):
        return None
    return Threshold(max(above), min(upto))


def ordered_positive(probabilities: Sequence[float], predicted: Sequence[Any]) -> Any | None:
    """The label answered above a threshold of ``probabilities``, when one of two is."""
    distinct = sorted(set(predicted), key=str)
    if len(distinct) != 2:
        return None
    for label in distinct:
        if threshold(probabilities, predicted, label) is not None:
            return label
    return None


def pick_field(
    outputs: Sequence[dict[str, Any]], label_field: str, predicted: Sequence[Any]
) -> str | None:
    """The one Output field (other than the label's) holding probabilities that order the
    service's labels; a field named like ``prob*`` is preferred among several."""
    fields = [name for name in outputs[0] if name != label_field] if outputs else []
    candidates = [
        name
        for name in fields
        if probability_values(values := [o[name] for o in outputs])
        and ordered_positive(values, predicted) is not None
    ]
    if len(candidates) > 1:
        candidates = [name for name in candidates if "prob" in name.lower()]
    return candidates[0] if len(candidates) == 1 else None
