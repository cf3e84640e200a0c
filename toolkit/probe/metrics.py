"""Held-out figures: the model and a trivial baseline, confusion or residuals, slices.

Pure: plain lists of true and predicted values in, a :class:`~nb2prod.probe.protocol.Holdout`
out. The baselines equal scikit-learn's ``DummyClassifier(strategy="most_frequent")`` and
``DummyRegressor(strategy="mean")``, and for ROC AUC and log loss (a binary classification with a
probability) ``DummyClassifier(strategy="prior")``; tests compare with them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from .protocol import Holdout
from .threshold import Probabilities

Task = Literal["classification", "regression"]
MAX_RESIDUALS = 2000  # points in the residual plot
EPS = 2.220446049250313e-16  # probabilities are clipped to [EPS, 1 - EPS], as scikit-learn does


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


def roc_auc(y_true: Sequence[Any], scores: Sequence[float], positive: Any) -> float:
    """The chance that a random positive row scores above a random other row (ties count half),
    as scikit-learn's ``roc_auc_score``."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    ranks = [0.0] * len(scores)
    start = 0
    while start < len(order):  # tied scores share their average rank
        end = start
        while end + 1 < len(order) and scores[order[end + 1]] == scores[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    positives = sum(1 for t in y_true if t == positive)
    negatives = len(y_true) - positives
    rank_sum = sum(r for r, t in zip(ranks, y_true, strict=True) if t == positive)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def log_loss(y_true: Sequence[Any], scores: Sequence[float], positive: Any) -> float:
    """Mean negative log-likelihood of the labels under the probabilities of ``positive``."""
    total = 0.0
    for t, p in zip(y_true, scores, strict=True):
        p = min(max(p, EPS), 1 - EPS)
        total -= math.log(p) if t == positive else math.log(1 - p)
    return total / len(y_true)


def probability_scores(
    y_true: Sequence[Any], scores: Sequence[float], positive: Any
) -> dict[str, float]:
    return {
        "roc_auc": roc_auc(y_true, scores, positive),
        "log_loss": log_loss(y_true, scores, positive),
    }


def _labels(*columns: Sequence[Any]) -> list[Any]:
    return sorted(set().union(*map(set, columns)), key=str)


def _baseline(task: Task, y_true: Sequence[Any]) -> tuple[Any, str]:
    """What the trivial baseline predicts for every row, and how the report names it."""
    if task == "classification":
        majority = max(sorted(set(y_true), key=str), key=list(y_true).count)
        return majority, f"majority class ({majority})"
    mean = sum(y_true) / len(y_true)
    return mean, f"mean ({mean:.4g})"


def _columns(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)]


def multi_scores(task: Task, y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    """:func:`scores`, averaged over the outputs when each row holds several (as scikit-learn's
    ``multioutput="uniform_average"``)."""
    if not y_true or not isinstance(y_true[0], list):
        return scores(task, y_true, y_pred, _labels(y_true, y_pred))
    per_output = [
        scores(task, t, p, _labels(t, p))
        for t, p in zip(_columns(y_true), _columns(y_pred), strict=True)
    ]
    return {name: sum(s[name] for s in per_output) / len(per_output) for name in per_output[0]}


def holdout(
    task: Task,
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    eval_x: str,
    eval_y: str,
    path: str = "",
    slices: Mapping[str, Sequence[Any]] | None = None,
    label_source: str = "",
    probabilities: Probabilities | None = None,
    threshold: tuple[float, float] | None = None,
    notes: Sequence[str] = (),
) -> Holdout:
    """The model against the baseline on the held-out rows; each row of ``y_true``/``y_pred`` is
    one value, or a list of values for a multi-output model. ``slices`` maps a column to its value
    in each row, and each value gets its own figures. ``label_source`` names what ``y_pred`` was
    read from; with ``probabilities`` (a binary classification with both classes in ``y_true``)
    ROC AUC and log loss are scored on them too."""
    n = len(y_true)
    multi = bool(y_true) and isinstance(y_true[0], list)
    if multi:
        columns = _columns(y_true)
        constants = [_baseline(task, column)[0] for column in columns]
        baseline_rows = [list(constants)] * n
        figures: dict[str, Any] = {
            "outputs": len(columns),
            "baseline_name": f"{'majority class' if task == 'classification' else 'mean'} "
            "of each output",
        }
    else:
        constant, name = _baseline(task, y_true)
        baseline_rows = [constant] * n
        figures = {"baseline_name": name}
    figures["model"] = multi_scores(task, y_true, y_pred)
    figures["baseline"] = multi_scores(task, y_true, baseline_rows)
    figures["sources"] = {name: label_source for name in figures["model"]} if label_source else {}
    if probabilities is not None and task == "classification" and not multi:
        positive = probabilities.positive
        prior = sum(1 for t in y_true if t == positive) / n
        figures["model"].update(probability_scores(y_true, probabilities.values, positive))
        figures["baseline"].update(probability_scores(y_true, [prior] * n, positive))
        figures["sources"].update(roc_auc=probabilities.source, log_loss=probabilities.source)
        figures["positive"] = repr(positive)
        figures["baseline_name"] += f", its prior ({prior:.4g}) as the probability"
    if task == "classification" and not multi:
        labels = _labels(y_true, y_pred)
        index = {label: i for i, label in enumerate(labels)}
        matrix = [[0] * len(labels) for _ in labels]
        for t, p in zip(y_true, y_pred, strict=True):
            matrix[index[t]][index[p]] += 1
        figures["labels"] = tuple(str(label) for label in labels)
        figures["confusion"] = tuple(tuple(row) for row in matrix)
    elif task == "regression":
        pairs = (
            [
                (t, p)
                for rt, rp in zip(y_true, y_pred, strict=True)
                for t, p in zip(rt, rp, strict=True)
            ]
            if multi
            else list(zip(y_true, y_pred, strict=True))
        )
        step = max(1, len(pairs) // MAX_RESIDUALS)
        figures["residuals"] = tuple((float(p), float(t - p)) for t, p in pairs[::step])
    groups: dict[str, dict[str, dict[str, float | int]]] = {}
    for column, values in (slices or {}).items():
        groups[column] = {}
        for value in sorted(set(values), key=str):
            rows = [i for i, v in enumerate(values) if v == value]
            t = [y_true[i] for i in rows]
            p = [y_pred[i] for i in rows]
            groups[column][str(value)] = {"rows": len(rows), **multi_scores(task, t, p)}
    return Holdout(
        task=task, rows=n, eval_x=eval_x, eval_y=eval_y, path=path, slices=groups,
        threshold=threshold, notes=tuple(notes), **figures,
    )  # fmt: skip
