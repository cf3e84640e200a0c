"""Why the model's raw predictions do not fill Output, when there is no postprocess cell.

Without a postprocess cell, each item of ``raw`` fills Output's one field (arrays become lists).
When that fails inside the generated default, the user's fix is in the predict cell or the
contract, so the message names those, the shape that arrived and the field it could not fill.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from .values import a


def describe_value(value: Any) -> str:
    """``an array of shape (3, 2)``, ``a list of 3 items``, ``a float (0.5)``."""
    shape = getattr(value, "shape", None)
    if isinstance(shape, tuple):
        return f"{a(type(value).__name__)} of shape {shape}"
    if isinstance(value, list | tuple):
        return f"{a(type(value).__name__)} of {len(value)} items"
    text = repr(value)
    return f"{a(type(value).__name__)} ({text if len(text) <= 40 else text[:37] + '...'})"


def field_type(output: type[BaseModel], field: str) -> str:
    """``float``, ``list[float]``, ``Literal['a', 'b']``: the field's annotation as written."""
    annotation = output.model_fields[field].annotation
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def fill_problem(raw: Any, count: int, output: type[BaseModel], field: str) -> str | None:
    """What goes wrong filling ``Output.<field>`` from each item of ``raw`` for ``count``
    inputs, or None when it fits."""
    items = raw.to_numpy() if hasattr(raw, "to_numpy") else raw
    try:
        length = len(items)
    except TypeError:
        return f"it returns {describe_value(raw)}, not one item per input"
    if length != count:
        return (
            f"it returns {describe_value(raw)} for {count} inputs: its first axis must have "
            "one item per input"
        )
    for item in items:
        value = item.tolist() if hasattr(item, "tolist") else item
        try:
            output.model_validate({field: value})
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            return (
                f"each item is {describe_value(item)}, which cannot fill Output.{field} "
                f"({field_type(output, field)}): {reason}"
            )
    return None
