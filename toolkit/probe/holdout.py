"""[evaluation] in the kernel: predict the held-out rows, then score them (:mod:`.metrics`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..runtime.schema import EvaluationPlan, Holdout
from . import metrics
from .failure import Fail
from .values import as_list, is_number


def evaluate(model: Any, namespace: Mapping[str, Any], plan: EvaluationPlan) -> Holdout | None:
    if plan.eval_x not in namespace or plan.eval_y not in namespace:
        return None
    X, y = namespace[plan.eval_x], namespace[plan.eval_y]
    y_true = as_list(y)
    try:
        y_pred = as_list(model.predict(X))
    except Exception as exc:
        raise Fail(
            f"model.predict({plan.eval_x}) failed: {type(exc).__name__}: {exc}",
            f"`{plan.eval_x}` must be what model.predict takes ([evaluation] eval_x)",
        ) from None
    if len(y_pred) != len(y_true) or not y_true:
        raise Fail(f"{plan.eval_x} and {plan.eval_y} do not have the same number of rows")
    numeric = all(is_number(v) for v in y_true)
    task: metrics.Task = (
        "classification" if hasattr(model, "classes_") or not numeric else "regression"
    )
    slices = {}
    for column in plan.slices:
        if not hasattr(X, "columns") or column not in X.columns:
            raise Fail(
                f"[evaluation] slices names {column!r}, which is not a column of "
                f"{plan.eval_x} (slices need a DataFrame)"
            )
        slices[column] = as_list(X[column])
    return metrics.holdout(
        task, y_true, y_pred, eval_x=plan.eval_x, eval_y=plan.eval_y, slices=slices
    )
