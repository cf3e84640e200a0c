"""Held-out labels read in the service's vocabulary, before a classification is scored.

``eval_y`` often spells the classes differently from what the service answers: 0/1 against a
``label: bool`` Output field, ``"yes"``/``"no"`` against True/False, 1.0 against 1, numpy scalars.
:func:`align` reads each label of ``eval_y`` as the kind the predictions have (the contract's Output
field on the service's path, else what ``predict`` returns) when exactly one reading exists; when
none or several do, it refuses with the config key, both kinds, examples of their values and the
fix. Pure: plain lists in and out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .failure import Fail
from .values import is_number

# words read as booleans (compared case-insensitively), in true/false pairs
WORD_PAIRS = (
    ("true", "false"),
    ("yes", "no"),
    ("y", "n"),
    ("t", "f"),
    ("1", "0"),
    ("positive", "negative"),
    ("pos", "neg"),
)
TRUE_WORDS = {t for t, _ in WORD_PAIRS}
FALSE_WORDS = {f for _, f in WORD_PAIRS}
EXAMPLES = 3  # distinct values shown in a refusal


@dataclass(frozen=True)
class Aligned:
    """``eval_y`` as the predictions spell it (one value per row, or a list per row)."""

    y_true: list[Any]
    y_pred: list[Any]
    note: str | None = None  # how eval_y was read, for the report; None: as it is


def kind(values: Sequence[Any]) -> str | None:
    """``bool``, ``number`` or ``str`` when every value is one; else None (mixed, or other)."""
    if values and all(isinstance(v, bool) for v in values):
        return "bool"
    if values and all(is_number(v) for v in values):
        return "number"
    if values and all(isinstance(v, str) for v in values):
        return "str"
    return None


def as_bool(value: Any) -> bool | None:
    """True/False, 0/1 (or 0.0/1.0) and the words of :data:`WORD_PAIRS` as booleans; else None."""
    if isinstance(value, bool):
        return value
    if is_number(value):
        return bool(value) if value in (0, 1) else None
    if isinstance(value, str):
        word = value.strip().lower()
        return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None
    return None


def as_number(value: Any) -> int | float | None:
    """A number, a boolean as 0/1, or a string that spells a number; integral values as int."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not is_number(value) or value != value:  # NaN has no place among labels
        return None
    return int(value) if float(value).is_integer() else value


def align(y_true: list[Any], y_pred: list[Any], *, eval_y: str, predicted: str) -> Aligned:
    """``y_true`` read as ``y_pred``'s kind, output by output for a multi-output model.

    ``predicted`` says where the predictions came from (``Output.label``), for messages."""
    if not y_true or not isinstance(y_true[0], list):
        return _align_column(y_true, y_pred, eval_y, predicted)
    width = len(y_true[0])
    if not all(isinstance(row, list) and len(row) == width for row in y_true + y_pred):
        return Aligned(y_true, y_pred)  # shapes differ: check_kinds says so
    columns = [
        _align_column(
            [row[i] for row in y_true],
            [row[i] for row in y_pred],
            f"{eval_y}[:, {i}]",
            f"{predicted}[{i}]",
        )  # fmt: skip
        for i in range(width)
    ]
    notes = [c.note for c in columns if c.note]
    return Aligned(
        [list(row) for row in zip(*(c.y_true for c in columns), strict=True)],
        [list(row) for row in zip(*(c.y_pred for c in columns), strict=True)],
        "; ".join(notes) or None,
    )


def _align_column(truth: list[Any], pred: list[Any], eval_y: str, predicted: str) -> Aligned:
    t_kind, p_kind = kind(truth), kind(pred)
    if t_kind is None or p_kind is None:
        return Aligned(truth, pred)  # mixed values: compared as they are (check_kinds judges)
    if t_kind == p_kind == "number":
        return _integral(truth, pred, eval_y)
    if t_kind == p_kind == "str" and not set(truth) <= set(pred):
        mapped = _spelled(truth, pred) or _case_folded(truth, pred)
        if mapped is None:
            return Aligned(truth, pred)  # classes the service never answered: they count as misses
    elif t_kind == p_kind:
        return Aligned(truth, pred)
    elif p_kind == "bool":
        mapped = _each(truth, as_bool)
    elif p_kind == "number":
        mapped = _each(truth, as_number)
        if mapped is None and {as_number(v) for v in pred} <= {0, 1}:
            mapped = _each(truth, lambda v: None if as_bool(v) is None else int(bool(as_bool(v))))
    else:
        mapped = _spelled(truth, pred)
    if mapped is None:
        raise _refusal(truth, pred, eval_y, predicted, p_kind)
    shown = {(_show(t), _show(m)) for t, m in zip(truth, mapped, strict=True)}
    pairs = sorted((t, m) for t, m in shown if t != m)  # as shown: 0 and False differ
    if not pairs:
        return Aligned(mapped, pred)
    note = (
        f"{eval_y}'s {_types(truth)} labels read as {predicted}'s {_types(mapped)}: "
        + ", ".join(f"{t} as {m}" for t, m in pairs)
    )
    return Aligned(mapped, pred, note)


def _integral(truth: list[Any], pred: list[Any], eval_y: str) -> Aligned:
    """Numbers that are all whole (1 and 1.0) are compared, and shown, as ints."""
    values = truth + pred
    floats = any(isinstance(v, float) for v in values)
    if not floats or not all(float(v).is_integer() for v in values):
        return Aligned(truth, pred)
    note = (
        f"{eval_y}'s whole-number labels and the predictions compared as int"
        if any(isinstance(v, float) for v in truth)
        else None
    )
    return Aligned([int(v) for v in truth], [int(v) for v in pred], note)


def _each(values: list[Any], read: Any) -> list[Any] | None:
    out = [read(v) for v in values]
    return None if any(v is None for v in out) else out


def _spelled(truth: list[Any], pred: list[str]) -> list[str] | None:
    """Booleans or numbers in ``truth`` as the strings the predictions use for them."""
    for read in (as_number, as_bool) if kind(truth) == "number" else (as_bool,):
        keys = [read(s) for s in pred]
        if any(k is None for k in keys):
            continue
        spelling: dict[Any, str] = {}
        for key, text in zip(keys, pred, strict=True):
            if spelling.setdefault(key, text) != text:
                return None  # two spellings of one class ("Yes" and "yes"): no single reading
        out = []
        for value in truth:
            key = read(value)
            if key is None:
                return None
            out.append(spelling.get(key) or _unseen(key, spelling, read))
        return out
    return None


def _case_folded(truth: list[str], pred: list[str]) -> list[str] | None:
    """``truth`` as the predictions spell the same words in another case ("No" for "no")."""
    spelling: dict[str, str] = {}
    for text in pred:
        if spelling.setdefault(text.casefold(), text) != text:
            return None
    if not all(t.casefold() in spelling for t in truth):
        return None
    return [spelling[t.casefold()] for t in truth]


def _unseen(key: Any, spelling: dict[Any, str], read: Any) -> str:
    """How the predictions would spell a class they never answered, by its pair's spelling."""
    if read is as_number:
        return str(key)
    seen = next(iter(spelling.values()))
    for pair in WORD_PAIRS:
        if seen.strip().lower() in pair:
            word = pair[0] if key else pair[1]
            return word.upper() if seen.isupper() else word.title() if seen.istitle() else word
    return str(key)


def _refusal(truth: list[Any], pred: list[Any], eval_y: str, predicted: str, p_kind: str) -> Fail:
    if p_kind == "bool":
        unmatched = [v for v in _distinct(truth) if as_bool(v) is None]
        detail = f"{_listed(unmatched)} cannot be read as True or False"
    elif p_kind == "number":
        unmatched = [v for v in _distinct(truth) if as_number(v) is None]
        detail = f"{_listed(unmatched)} cannot be read as a number"
    else:
        detail = "no value of one can be read as exactly one value of the other"
    example = ", ".join(f"{_show(v)}: ..." for v in _distinct(truth)[:2])
    return Fail(
        f"[evaluation] eval_y = {eval_y!r} holds {_types(truth)} labels (e.g. "
        f"{_listed(_distinct(truth))}) but the predictions ({predicted}) are {_types(pred)} "
        f"(e.g. {_listed(_distinct(pred))}): {detail}",
        "Make eval_y hold the labels the service answers, in the notebook (for example "
        f"`{eval_y} = {eval_y}.map({{{example}}})` with the service's value for each), or set "
        "[evaluation] output_field to the Output field that holds such labels.",
    )


def _distinct(values: Sequence[Any]) -> list[Any]:
    return sorted(set(values), key=lambda v: (type(v).__name__, str(v)))


def _listed(values: Sequence[Any]) -> str:
    shown = ", ".join(_show(v) for v in values[:EXAMPLES])
    return shown + (", ..." if len(values) > EXAMPLES else "")


def _show(value: Any) -> str:
    return repr(value)


def _types(values: Sequence[Any]) -> str:
    return "/".join(sorted({type(v).__name__ for v in values}))
