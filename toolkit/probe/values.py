"""Plain Python values from what notebooks hold: numpy scalars and arrays, pandas objects."""

from __future__ import annotations

from typing import Any


def plain(value: Any) -> Any:
    """A numpy scalar as its Python value (``np.float64(1.5)`` -> ``1.5``); anything else as is."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value


def as_list(values: Any) -> list[Any]:
    """One Python value per row of a list, array, Series or DataFrame (rows become lists)."""
    if hasattr(values, "to_numpy"):
        values = values.to_numpy()
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [plain(v) for v in values]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def a(noun: str) -> str:
    """``a DataFrame``, ``an array`` (numpy's ``ndarray`` is called an array)."""
    noun = "array" if noun == "ndarray" else noun
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
