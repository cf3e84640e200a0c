"""[evaluation] in the kernel: predictions for the held-out rows made the way the service makes
them, then scored by :mod:`.metrics`.

``eval_x`` is either rows of Input (a DataFrame with Input's fields as columns, or a list of
dicts): each row is validated as Input and answered by preprocess -> predict -> postprocess, and
the Output field (``[evaluation] output_field``, default the first) is compared with ``eval_y``.
Or it is what the predict cell takes (the features preprocess makes): the notebook's ``predict``
(or ``model.predict``) answers, and its raw result is read as labels, class probabilities (the most
likely class, or class 1 above 0.5) or values, one per output for a multi-output model.

A classification's labels are compared after :mod:`.labels` read ``eval_y`` in the predictions'
vocabulary (0/1 as a ``bool`` Output field's False/True). On the service's path accuracy and F1 are
scored on the label the service answers (after the notebook's own threshold), and ROC AUC and log
loss on the Output field with its probability (:mod:`.threshold`).
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..runtime import model as runtime
from . import labels, metrics
from .failure import Fail, PipelineSource
from .protocol import EvaluationPlan, Holdout
from .threshold import (
    Probabilities,
    Threshold,
    conventional_positive,
    ordered_positive,
    pick_field,
    probability_values,
    threshold,
)
from .values import as_list, is_number, plain

BATCH = 512  # rows per pipeline call on the service's path

EVAL_X_HINT = (
    "[evaluation] eval_x must name either held-out rows of Input (a DataFrame with Input's fields "
    "as columns, or a list of dicts: nb2prod runs preprocess -> predict -> postprocess on them) "
    "or the features the predict cell takes (what preprocess returns)."
)


THRESHOLD_NOTE = (
    "{labels}: nb2prod's threshold on what predict returns, not necessarily the service's (its "
    "postprocess answers); name held-out rows of Input in [evaluation] eval_x to score the "
    "service's own answers"
)


@dataclass(frozen=True)
class Predictions:
    values: list[Any]  # one per row; a list per row for a multi-output model
    path: str  # how they were made, for the report
    probabilities: bool = False  # read from class probabilities: a classification
    source: str = ""  # what the values are: "Output.label", predict's most likely class, ...
    scores: Probabilities | None = None  # predict's probability of the positive class
    outputs: list[dict[str, Any]] | None = None  # the service's path: every Output, as a dict
    notes: tuple[str, ...] = ()


def evaluate(
    model: Any,
    namespace: Mapping[str, Any],
    plan: EvaluationPlan,
    pipeline: types.ModuleType,
    source: PipelineSource,
    predict_cell: str,
) -> Holdout | None:
    if plan.eval_x not in namespace or plan.eval_y not in namespace:
        return None
    X, y = namespace[plan.eval_x], namespace[plan.eval_y]
    y_true = targets(y)
    if not y_true:
        raise Fail(f"[evaluation] eval_y = {plan.eval_y!r} is empty")
    if input_rows(X, pipeline) is not None:
        predicted = service_path(X, pipeline, model, plan, source, y_true)
    else:
        predicted = predict_path(X, y_true, pipeline, model, plan, source, predict_cell)
    y_pred = predicted.values
    if len(y_pred) != len(y_true):
        raise Fail(
            f"[evaluation] {plan.eval_x} gives {len(y_pred)} predictions but {plan.eval_y} has "
            f"{len(y_true)} rows",
            f"Name held-out features and their targets, row for row. {EVAL_X_HINT}",
        )
    task = choose_task(plan, y_true, y_pred, model, predicted.probabilities)
    notes = list(predicted.notes)
    if task == "classification":
        aligned = labels.align(y_true, y_pred, eval_y=plan.eval_y, predicted=predicted.source)
        y_true, y_pred = aligned.y_true, aligned.y_pred
        notes += [aligned.note] if aligned.note else []
    check_kinds(plan, task, y_true, y_pred, predicted.path)
    scores, bounds = predicted.scores, None
    if predicted.outputs is not None:
        scores, bounds = served_probability(plan, task, y_true, y_pred, predicted)
        if bounds is not None and scores is not None:
            notes.append(bounds.describe(predicted.source, scores.source, scores.positive))
        elif scores is not None:
            notes.append(
                f"{predicted.source} does not follow one threshold on {scores.source} on these rows"
            )
    if scores is not None and len(set(y_true)) < 2:
        notes.append(f"no ROC AUC or log loss: {plan.eval_y} holds one class only")
        scores = None
    slices = {}
    for column in plan.slices:
        if not hasattr(X, "columns") or column not in X.columns:
            raise Fail(
                f"[evaluation] slices names {column!r}, which is not a column of "
                f"{plan.eval_x} (slices need a DataFrame)"
            )
        slices[column] = as_list(X[column])
    return metrics.holdout(
        task,
        y_true,
        y_pred,
        eval_x=plan.eval_x,
        eval_y=plan.eval_y,
        path=predicted.path,
        slices=slices,
        label_source=predicted.source,
        probabilities=scores,
        threshold=(bounds.above, bounds.upto) if bounds else None,
        notes=notes,
    )


def served_probability(
    plan: EvaluationPlan,
    task: metrics.Task,
    y_true: list[Any],
    y_pred: list[Any],
    predicted: Predictions,
) -> tuple[Probabilities | None, Threshold | None]:
    """The Output field with the probability behind the service's labels, which class it is
    of, and the bounds of the threshold the labels follow on it."""
    outputs = predicted.outputs or []
    key = f"[evaluation] probability_field = {plan.probability_field!r}"
    multi = bool(y_true) and isinstance(y_true[0], list)
    binary = task == "classification" and not multi and len(set(y_true) | set(y_pred)) == 2
    field = plan.probability_field
    if field is None:
        field = (
            pick_field(outputs, predicted.source.removeprefix("Output."), y_pred)
            if binary
            else None
        )
        if field is None:
            return None, None
    elif field not in outputs[0]:
        raise Fail(
            f"{key}, but Output has no such field",
            f"Output's fields: {', '.join(outputs[0])}.",
        )
    elif not binary:
        raise Fail(
            f"{key} needs a classification with two classes, but {plan.eval_y} and the "
            f"predictions ({predicted.source}) hold {len(set(map(repr, y_true + y_pred)))}",
            "Remove probability_field: ROC AUC and log loss are scored for two classes only.",
        )
    values = [o[field] for o in outputs]
    if not probability_values(values):
        bad = next(v for v in values if not (labels.kind([v]) == "number" and 0 <= v <= 1))
        raise Fail(
            f"{key}: Output.{field} holds {bad!r}, not a probability between 0 and 1",
            "Name the Output field with the probability of a class, or remove probability_field.",
        )
    positive = ordered_positive(values, y_pred)
    if positive is None:
        positive = conventional_positive(y_true + y_pred)
    if positive is None:
        raise Fail(
            f"{key}: cannot tell which class Output.{field} is the probability of: the labels "
            f"({predicted.source}) do not follow one threshold on it and are "
            f"{', '.join(sorted(map(repr, set(y_pred))))}",
            "Answer the probability of the positive class in that field, or remove "
            "probability_field.",
        )
    return Probabilities(values, positive, f"Output.{field}"), threshold(values, y_pred, positive)


def targets(y: Any) -> list[Any]:
    """One value per row, or a list per row when ``y`` has several columns (multi-output)."""
    rows = as_list(y)
    if rows and isinstance(rows[0], list):
        if all(len(r) == 1 for r in rows):
            return [plain(r[0]) for r in rows]
        return [[plain(v) for v in r] for r in rows]
    return rows


def input_rows(X: Any, pipeline: types.ModuleType) -> list[dict[str, Any]] | None:
    """The rows of ``X`` as Input dicts, when ``X`` holds Input records; else None."""
    fields = pipeline.Input.model_fields
    required = {name for name, field in fields.items() if field.is_required()}
    if isinstance(X, list) and X and all(isinstance(r, dict) for r in X):
        return [{k: plain(v) for k, v in r.items()} for r in X]
    columns = getattr(X, "columns", None)
    if columns is None or not hasattr(X, "to_dict"):
        return None
    present = [f for f in fields if f in set(map(str, columns))]
    if not present or not required <= set(present):
        return None
    records = X[present].to_dict(orient="records")
    return [{k: _missing_as_none(plain(v)) for k, v in r.items()} for r in records]


def _missing_as_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def service_path(
    X: Any,
    pipeline: types.ModuleType,
    model: Any,
    plan: EvaluationPlan,
    source: PipelineSource,
    y_true: list[Any],
) -> Predictions:
    rows = input_rows(X, pipeline) or []
    field = plan.output_field or next(iter(pipeline.Output.model_fields))
    if field not in pipeline.Output.model_fields:
        raise Fail(
            f"[evaluation] output_field = {field!r}, but Output has no such field",
            f"Output's fields: {', '.join(pipeline.Output.model_fields)}.",
        )
    inputs = []
    for i, row in enumerate(rows):
        try:
            inputs.append(pipeline.Input.model_validate(row))
        except Exception as exc:
            raise Fail(
                f"[evaluation] eval_x = {plan.eval_x!r}: row {i} is not a valid Input: {exc}",
                "The held-out rows are answered as the service answers requests, so each must "
                "be a valid Input: fix the rows, or widen the contract.",
            ) from None
    answers: list[dict[str, Any]] = []
    for start in range(0, len(inputs), BATCH):
        try:
            outputs = runtime.run(pipeline, model, inputs[start : start + BATCH])
        except Exception as exc:
            raise Fail(
                f"[evaluation] eval_x = {plan.eval_x!r}: the service pipeline failed on the "
                f"held-out rows: {source.describe(exc)}",
                "Every row of eval_x must be answerable, as a request with it would be.",
            ) from None
        answers += [
            {name: plain(getattr(o, name)) for name in type(o).model_fields} for o in outputs
        ]
    notes: tuple[str, ...] = ()
    if plan.output_field is None and (label := label_field(answers, y_true)) is not None:
        notes = (
            f"Output.{label} compared with {plan.eval_y}: Output's first field, {field}, holds "
            "probabilities (set [evaluation] output_field to choose another)",
        )
        field = label
    return Predictions(
        [a[field] for a in answers],
        f"preprocess -> predict -> postprocess, Output.{field}",
        source=f"Output.{field}",
        outputs=answers,
        notes=notes,
    )


def label_field(answers: list[dict[str, Any]], y_true: list[Any]) -> str | None:
    """When Output's first field holds probabilities and ``y_true`` two classes, the one other
    field that holds labels (bool, str or 0/1): what the service's answer is compared on."""
    fields = list(answers[0]) if answers else []
    multi = bool(y_true) and isinstance(y_true[0], list)
    if not fields or multi or not _binary(y_true):
        return None
    if not _probabilities([a[fields[0]] for a in answers]):
        return None
    found = [name for name in fields[1:] if _labels_like([a[name] for a in answers])]
    return found[0] if len(found) == 1 else None


def classes(model: Any) -> list[Any] | None:
    """The class labels of a classifier: its ``classes_``, a pipeline's last step's, or those of
    the one part of a dict of parts that has them."""
    found = getattr(model, "classes_", None)
    if found is None and isinstance(model, dict):
        parts = [getattr(v, "classes_", None) for v in model.values()]
        parts = [p for p in parts if p is not None]
        found = parts[0] if len(parts) == 1 else None
    return as_list(found) if found is not None else None


def predict_path(
    X: Any,
    y_true: list[Any],
    pipeline: types.ModuleType,
    model: Any,
    plan: EvaluationPlan,
    source: PipelineSource,
    predict_cell: str,
) -> Predictions:
    try:
        raw = pipeline.predict(model, X)
    except Exception as exc:
        raise Fail(
            f"[evaluation] eval_x = {plan.eval_x!r} is neither rows of Input nor what "
            f"{predict_cell} takes: {source.describe(exc)}",
            EVAL_X_HINT,
        ) from None
    path = f"predict(model, {plan.eval_x}) ({predict_cell})"
    values = targets(raw)
    multi_target = bool(y_true) and isinstance(y_true[0], list)
    if not multi_target and values and isinstance(values[0], list):
        # one row of numbers per input for a single target: class probabilities
        names = classes(model)
        best = [max(range(len(row)), key=row.__getitem__) for row in values]
        known = names is not None and len(names) == len(values[0])
        column = names if known and names is not None else list(range(len(values[0])))
        scores = (
            Probabilities([row[1] for row in values], column[1], f"predict's column {column[1]!r}")
            if len(column) == 2 and probability_values([v for row in values for v in row])
            else None
        )
        return Predictions(
            [column[k] for k in best],
            path + (", most likely class" if known else ", most likely class (by column index)"),
            probabilities=True,
            source="predict's most likely class",
            scores=scores,
        )
    if not multi_target and _binary(y_true) and _probabilities(values):
        kind = type(y_true[0])
        return Predictions(
            [kind(v >= 0.5) for v in values],
            path + ", class 1 above 0.5",
            probabilities=True,
            source="predict's probability of 1, above 0.5",
            scores=Probabilities(values, kind(1), "predict's probability of 1"),
            notes=(THRESHOLD_NOTE.format(labels="class 1 above 0.5"),),
        )
    return Predictions(values, path, source="predict's result")


def _labels_like(values: list[Any]) -> bool:
    """At most two values, each a bool, a string or an int 0/1: labels, not a score."""
    return (
        all(isinstance(v, bool | int | str) for v in values)
        and len(set(values)) <= 2
        and (labels.kind(values) in ("bool", "str") or set(values) <= {0, 1})
    )


def _binary(values: Sequence[Any]) -> bool:
    return {plain(v) for v in values} <= {0, 1}


def _probabilities(values: Sequence[Any]) -> bool:
    return (
        bool(values)
        and all(is_number(v) and 0 <= v <= 1 for v in values)
        and any(v not in (0, 1) for v in values)
    )


def choose_task(
    plan: EvaluationPlan,
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    model: Any,
    probabilities: bool,
) -> metrics.Task:
    if plan.task != "auto":
        return plan.task

    def numeric(values: Sequence[Any]) -> bool:
        return all(
            is_number(v) for row in values for v in (row if isinstance(row, list) else [row])
        )

    # labels on either side (eval_y's, or the service's bool or str answers): a classification
    if probabilities or not numeric(y_true) or not numeric(y_pred) or classes(model) is not None:
        return "classification"
    return "regression"


def check_kinds(
    plan: EvaluationPlan,
    task: metrics.Task,
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    path: str,
) -> None:
    """Predictions and targets must be comparable: numbers for a regression, the same kind of
    label for a classification."""

    def kinds(values: Sequence[Any]) -> set[str]:
        flat = [v for row in values for v in (row if isinstance(row, list) else [row])]
        return {"number" if is_number(v) else type(v).__name__ for v in flat}

    truth, predicted = kinds(y_true), kinds(y_pred)
    example_true, example_pred = y_true[0], y_pred[0]
    if task == "regression" and not (truth == predicted == {"number"}):
        raise Fail(
            f"[evaluation] a regression needs numbers, but {plan.eval_y} holds "
            f"{example_true!r} and the predictions ({path}) {example_pred!r}",
            'Set [evaluation] task = "classification" if the targets are labels.',
        )
    if task == "classification" and truth != predicted:
        raise Fail(
            f"[evaluation] {plan.eval_y} holds {'/'.join(sorted(truth))} labels (e.g. "
            f"{example_true!r}) but the predictions ({path}) are {'/'.join(sorted(predicted))} "
            f"(e.g. {example_pred!r}): they cannot be compared",
            "Make eval_y the labels the service answers, or set [evaluation] output_field to "
            "the Output field that holds them.",
        )
    if isinstance(example_true, list) != isinstance(example_pred, list) or (
        isinstance(example_true, list) and len(example_true) != len(example_pred)
    ):
        raise Fail(
            f"[evaluation] {plan.eval_y} has {len(example_true) if isinstance(example_true, list) else 1} "
            f"output(s) per row but the predictions ({path}) have "
            f"{len(example_pred) if isinstance(example_pred, list) else 1}",
            EVAL_X_HINT,
        )
