"""Held-out figures: the model and a trivial baseline, confusion or residuals, slices.

Pure: plain lists of true and predicted values in, a :class:`~nb2prod.runtime.schema.Holdout`
out. The baselines equal scikit-learn's ``DummyClassifier(strategy="most_frequent")`` and
``DummyRegressor(strategy="mean")``; tests compare with them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ..runtime.schema import Holdout

Task = Literal["classification", "regression"]
MAX_RESIDUALS = 2000  # points in the residual plot


def macro_f1(y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any]) -> float:
    scores = []
    for label in labels:
        tp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == label and p == label)
        fp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t != label and p == label)
        fn = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == label and p != label)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def scores(
    task: Task, y_true: Sequence[Any], y_pred: Sequence[Any], labels: Sequence[Any] = ()
) -> dict[str, float]:
    """accuracy and macro F1, or MAE, RMSE and R²."""
    n = len(y_true)
    if task == "classification":
        hits = sum(t == p for t, p in zip(y_true, y_pred, strict=True))
        return {"accuracy": hits / n, "f1_macro": macro_f1(y_true, y_pred, labels)}
    mean = sum(y_true) / n
    ss_res = sum((t - p) ** 2 for t, p in zip(y_true, y_pred, strict=True))
    ss_tot = sum((t - mean) ** 2 for t in y_true)
    return {
        "mae": sum(abs(t - p) for t, p in zip(y_true, y_pred, strict=True)) / n,
        "rmse": math.sqrt(ss_res / n),
        "r2": 1 - ss_res / ss_tot if ss_tot else 0.0,
    }


def _labels(*columns: Sequence[Any]) -> list[Any]:
    return sorted(set().union(*map(set, columns)), key=str)


def holdout(
    task: Task,
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    eval_x: str,
    eval_y: str,
    slices: Mapping[str, Sequence[Any]] | None = None,
) -> Holdout:
    """The model against the baseline on the held-out rows; ``slices`` maps a column to its
    value in each row, and each value gets its own figures."""
    n = len(y_true)
    if task == "classification":
        labels = _labels(y_true, y_pred)
        majority = max(sorted(set(y_true), key=str), key=list(y_true).count)
        index = {label: i for i, label in enumerate(labels)}
        matrix = [[0] * len(labels) for _ in labels]
        for t, p in zip(y_true, y_pred, strict=True):
            matrix[index[t]][index[p]] += 1
        figures: dict[str, Any] = {
            "labels": tuple(str(label) for label in labels),
            "confusion": tuple(tuple(row) for row in matrix),
            "baseline_name": f"majority class ({majority})",
            "model": scores(task, y_true, y_pred, labels),
            "baseline": scores(task, y_true, [majority] * n, _labels(y_true)),
        }
    else:
        mean = sum(y_true) / n
        step = max(1, n // MAX_RESIDUALS)
        pairs = list(zip(y_true, y_pred, strict=True))[::step]
        figures = {
            "baseline_name": f"mean ({mean:.4g})",
            "model": scores(task, y_true, y_pred),
            "baseline": scores(task, y_true, [mean] * n),
            "residuals": tuple((float(p), float(t - p)) for t, p in pairs),
        }
    groups: dict[str, dict[str, dict[str, float | int]]] = {}
    for column, values in (slices or {}).items():
        groups[column] = {}
        for value in sorted(set(values), key=str):
            rows = [i for i, v in enumerate(values) if v == value]
            t = [y_true[i] for i in rows]
            p = [y_pred[i] for i in rows]
            groups[column][str(value)] = {"rows": len(rows), **scores(task, t, p, _labels(t, p))}
    return Holdout(task=task, rows=n, eval_x=eval_x, eval_y=eval_y, slices=groups, **figures)
