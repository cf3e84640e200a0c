"""The numeric fields of the contract's ``Input`` without bounds, read from the contract cell's syntax.

The contract probe (``probe/robustness.py``) sends every field the edges of what the contract
admits; a number without ``ge``/``le`` admits anything up to the largest float, which most models
cannot answer, and the robustness gate fails after the whole notebook ran. This finds such fields
statically, with bounds suggested from the examples cell's literal values when it has them.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_NUMBERS = {"float", "int", "StrictFloat", "StrictInt", "FiniteFloat"}
_LOWER_ONLY = {"PositiveInt", "PositiveFloat", "NonNegativeInt", "NonNegativeFloat"}
_UPPER_ONLY = {"NegativeInt", "NegativeFloat", "NonPositiveInt", "NonPositiveFloat"}
_LOWER, _UPPER = {"ge", "gt"}, {"le", "lt"}


@dataclass(frozen=True)
class UnboundedField:
    """A numeric field of Input missing a lower bound, an upper bound, or both."""

    name: str
    kind: str  # "float" or "int"
    line: int  # in the contract cell
    lower: bool  # has a lower bound
    upper: bool  # has an upper bound
    has_field: bool  # its default is a ``Field(...)`` call already
    examples: tuple[float, ...] = ()  # the examples cell's literal values for it
    annotation: str = "float"  # as written
    default: str | None = None  # the default as written, when it is not a Field(...) call

    @property
    def missing(self) -> str:
        if not self.lower and not self.upper:
            return "no bounds"
        return "no upper bound (le/lt)" if self.lower else "no lower bound (ge/gt)"

    def declaration(self) -> str:
        """The field declared with the suggested bounds: ``age: float | None = Field(None,
        ge=0, le=76)``."""
        default = f"{self.default}, " if self.default is not None else ""
        return f"{self.name}: {self.annotation} = Field({default}{self.suggestion()})"

    def suggestion(self) -> str:
        """``Field(ge=0, le=160)`` (from the examples) or a template, for the missing sides."""
        low, high = _suggested(self.examples, self.kind == "int")
        parts = []
        if not self.lower:
            parts.append(f"ge={low}")
        if not self.upper:
            parts.append(f"le={high}")
        return ", ".join(parts)


def unbounded_fields(
    contract: ast.ClassDef,
    classes: Mapping[str, ast.ClassDef],
    examples: Sequence[Mapping[str, Any]] | None,
) -> tuple[UnboundedField, ...]:
    """The numeric fields of ``contract`` (with those of its bases among ``classes``) that lack a
    bound, in declared order; ``examples`` (literal dicts, or None) give suggested bounds."""
    found: dict[str, UnboundedField] = {}
    for node in _with_bases(contract, classes):
        for stmt in node.body:
            if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
                continue
            name = stmt.target.id
            found.pop(name, None)  # a subclass redeclares it
            field = _numeric(stmt)
            if field is None:
                continue
            kind, lower, upper, has_field = field
            if lower and upper:
                continue
            values = tuple(
                float(row[name])
                for row in examples or ()
                if isinstance(row.get(name), int | float) and not isinstance(row[name], bool)
            )
            default = ast.unparse(stmt.value) if stmt.value is not None and not has_field else None
            found[name] = UnboundedField(
                name, kind, stmt.lineno, lower, upper, has_field, values,
                annotation=ast.unparse(stmt.annotation), default=default,
            )  # fmt: skip
    return tuple(found.values())


def literal_examples(tree: ast.Module) -> list[dict[str, Any]] | None:
    """The examples cell's ``examples = [{...}, ...]`` when it is a literal, else None."""
    value = None
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and stmt.targets[0].id == "examples"
        ):
            value = stmt.value
    if value is None:
        return None
    try:
        rows = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(rows, list | tuple) or not all(isinstance(r, dict) for r in rows):
        return None
    return list(rows)


def _with_bases(node: ast.ClassDef, classes: Mapping[str, ast.ClassDef]) -> list[ast.ClassDef]:
    """``node`` after the classes it inherits from (those defined in the notebook), bases first."""
    chain: list[ast.ClassDef] = []

    def visit(current: ast.ClassDef, depth: int) -> None:
        if depth > 10 or current in chain:
            return
        for base in current.bases:
            name = ast.unparse(base)
            if name in classes and name != current.name:
                visit(classes[name], depth + 1)
        chain.append(current)

    visit(node, 0)
    return chain


def _numeric(stmt: ast.AnnAssign) -> tuple[str, bool, bool, bool] | None:
    """(kind, has a lower bound, has an upper bound, default is a Field call) for a numeric
    field; None for any other."""
    kind, lower, upper = _annotation(stmt.annotation)
    if kind is None:
        return None
    has_field = any(  # Annotated[int, Field(...)]
        isinstance(node, ast.Call) and _called(node) == "Field"
        for node in ast.walk(stmt.annotation)
    )
    if isinstance(stmt.value, ast.Call) and _called(stmt.value) == "Field":
        has_field = True
        lower, upper = lower or _has(stmt.value, _LOWER), upper or _has(stmt.value, _UPPER)
    return kind, lower, upper, has_field


def _annotation(node: ast.expr) -> tuple[str | None, bool, bool]:
    """(numeric kind or None, lower bound, upper bound) an annotation gives."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None, False, False
    if isinstance(node, ast.Name | ast.Attribute):
        name = ast.unparse(node).rsplit(".", 1)[-1]
        if name in _NUMBERS:
            return ("int" if "Int" in name or name == "int" else "float"), False, False
        if name in _LOWER_ONLY | _UPPER_ONLY:
            kind = "int" if "Int" in name else "float"
            return kind, name in _LOWER_ONLY, name in _UPPER_ONLY
        return None, False, False
    if isinstance(node, ast.Call) and _called(node) in ("confloat", "conint"):
        number = "int" if _called(node) == "conint" else "float"
        return number, _has(node, _LOWER), _has(node, _UPPER)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # float | None
        return _union([node.left, node.right])
    if isinstance(node, ast.Subscript):
        outer = ast.unparse(node.value).split(".")[-1]
        items = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if outer == "Optional":
            return _annotation(items[0])
        if outer == "Union":
            return _union(items)
        if outer == "Annotated" and items:
            base, lower, upper = _annotation(items[0])
            for meta in items[1:]:
                lower = lower or _meta_bound(meta, _LOWER)
                upper = upper or _meta_bound(meta, _UPPER)
            return base, lower, upper
    return None, False, False


def _union(members: list[ast.expr]) -> tuple[str | None, bool, bool]:
    """A union of one numeric type and None is that number; anything else is not numeric."""
    rest = [m for m in members if not (isinstance(m, ast.Constant) and m.value is None)]
    if len(rest) != 1:
        return None, False, False
    return _annotation(rest[0])


def _meta_bound(meta: ast.expr, keys: set[str]) -> bool:
    """Whether ``Annotated`` metadata (``Field(ge=0)``, ``Ge(0)``, ``Interval(le=1)``) bounds
    the field on the side ``keys`` name."""
    if not isinstance(meta, ast.Call):
        return False
    called = _called(meta)
    if called in ("Field", "Interval"):
        return _has(meta, keys)
    return called.lower() in keys


def _called(call: ast.Call) -> str:
    return ast.unparse(call.func).split(".")[-1]


def _has(call: ast.Call, keys: set[str]) -> bool:
    return any(
        k.arg in keys and not (isinstance(k.value, ast.Constant) and k.value.value is None)
        for k in call.keywords
    )


def _suggested(values: Sequence[float], integer: bool) -> tuple[str, str]:
    """Bounds around the examples' range, widened by that range (at least the largest magnitude)
    and rounded outwards to two significant digits; placeholders without examples."""
    if not values:
        return "<lowest valid>", "<highest valid>"
    lo, hi = min(values), max(values)
    margin = max(hi - lo, abs(hi), abs(lo)) or 1.0
    low = 0.0 if lo >= 0 else _rounded(lo - margin, up=False)
    high = _rounded(hi + margin, up=True)
    return _shown(low, integer), _shown(high, integer)


def _rounded(value: float, up: bool) -> float:
    if value == 0:
        return 0.0
    step = 10 ** (math.floor(math.log10(abs(value))) - 1)
    return (math.ceil if up else math.floor)(value / step) * step


def _shown(value: float, integer: bool) -> str:
    if integer or float(value).is_integer():
        return str(int(round(value)))
    return f"{value:.6g}"
