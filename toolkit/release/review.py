"""What reviewers read: a contract as tables (``contract show``: markdown, or plain columns for a
pipe) and the classified difference between two contracts (``contract diff``): every change
breaking, compatible or cosmetic.

Works on the JSON Schemas in ``contract.json`` (what pydantic emits). For ``Input`` (what callers
send) narrowing what is accepted breaks callers; for ``Output`` (what callers receive) widening
what may come back breaks them. docs/contracts.md lists every rule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import astuple, dataclass
from typing import Any, Literal

Side = Literal["input", "output"]
Severity = Literal["breaking", "compatible", "cosmetic"]
_ORDER = {"breaking": 0, "compatible": 1, "cosmetic": 2}


@dataclass(frozen=True)
class Change:
    side: Side
    field: str | None  # None: the model as a whole
    what: str
    severity: Severity

    def __str__(self) -> str:
        where = f"{self.side.capitalize()}.{self.field}" if self.field else self.side.capitalize()
        return f"{self.severity:<10} {where}: {self.what}"

    def to_json(self) -> dict[str, Any]:
        return {
            "side": self.side,
            "field": self.field,
            "change": self.what,
            "severity": self.severity,
        }


@dataclass(frozen=True)
class ContractDiff:
    changes: tuple[Change, ...]

    @property
    def breaking(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.severity == "breaking")

    @property
    def verdict(self) -> Severity | Literal["identical"]:
        if not self.changes:
            return "identical"
        return min((c.severity for c in self.changes), key=_ORDER.__getitem__)

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "changes": [c.to_json() for c in self.changes]}

    def to_text(self) -> str:
        if not self.changes:
            return "no changes"
        return "\n".join(str(c) for c in self.changes)

    def to_markdown(self) -> str:
        lines = [
            f"**Contract diff: {self.verdict}**",
            "",
            "| severity | where | change |",
            "| --- | --- | --- |",
        ]
        for c in self.changes:
            where = f"{c.side.capitalize()}.{c.field}" if c.field else c.side.capitalize()
            lines.append(f"| {c.severity} | `{where}` | {c.what} |")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class FieldSpec:
    """One property, normalised from JSON Schema."""

    types: frozenset[str]  # JSON types; "null" when None is allowed
    enum: frozenset[str] | None  # JSON-encoded values of an enum / Literal / const
    lower: tuple[float, bool] | None  # (bound, exclusive)
    upper: tuple[float, bool] | None
    min_length: int | None
    max_length: int | None
    pattern: str | None
    required: bool
    default: str | None  # JSON-encoded
    description: str | None
    structure: str | None  # canonical JSON of nested object/array schemas
    sensitive: bool = False  # Field(json_schema_extra={"sensitive": True}): redacted in logs


def diff_contracts(old: Mapping[str, Any], new: Mapping[str, Any]) -> ContractDiff:
    changes: list[Change] = []
    for side in ("input", "output"):
        changes += _diff_model(side, old[side], new[side])
    changes.sort(key=lambda c: (_ORDER[c.severity], c.side, c.field or "", c.what))
    return ContractDiff(tuple(changes))


def _diff_model(side: Side, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    before, after = fields(old), fields(new)
    narrows = "breaking" if side == "input" else "compatible"
    widens = "compatible" if side == "input" else "breaking"
    for name in sorted(set(before) - set(after)):
        yield Change(side, name, "field removed", "breaking")
    for name in sorted(set(after) - set(before)):
        spec = after[name]
        if side == "input":
            severity = "breaking" if spec.required else "compatible"
            kind = "required" if spec.required else "optional"
            yield Change(side, name, f"{kind} field added", severity)  # type: ignore[arg-type]
        else:
            yield Change(side, name, "field added", "compatible")
    for name in sorted(set(before) & set(after)):
        yield from _diff_field(side, name, before[name], after[name], narrows, widens)
    old_extra, new_extra = _forbids_extra(old), _forbids_extra(new)
    if old_extra != new_extra and side == "input":
        if new_extra:
            yield Change(side, None, "extra fields are now forbidden", "breaking")
        else:
            yield Change(side, None, "extra fields are now allowed", "compatible")
    if old.get("description") != new.get("description"):  # titles are class names: noise
        yield Change(side, None, "description changed", "cosmetic")


def _diff_field(
    side: Side, name: str, a: FieldSpec, b: FieldSpec, narrows: str, widens: str
) -> Iterator[Change]:
    def change(what: str, severity: str) -> Change:
        return Change(side, name, what, severity)  # type: ignore[arg-type]

    if a.required != b.required:
        if side == "input":
            yield change(
                "optional field made required" if b.required else "required field made optional",
                "breaking" if b.required else "compatible",
            )
        else:
            yield change(
                "field may now be missing" if not b.required else "field is now always present",
                "breaking" if not b.required else "compatible",
            )
    if a.types != b.types:
        what = f"type {_types(a.types)} -> {_types(b.types)}"
        if b.types < a.types or (a.types == {"number"} and b.types == {"integer"}):
            yield change(what + " (narrower)", narrows)
        elif a.types < b.types or (a.types == {"integer"} and b.types == {"number"}):
            yield change(what + " (wider)", widens)
        else:
            yield change(what, "breaking")
    if a.enum != b.enum:
        if a.enum is None or (b.enum is not None and b.enum < a.enum):
            removed = sorted((a.enum or frozenset()) - (b.enum or frozenset()))
            what = (
                f"values {', '.join(removed)} removed"
                if a.enum
                else "restricted to a set of values"
            )
            yield change(what, narrows)
        elif b.enum is None or b.enum > a.enum:
            added = sorted((b.enum or frozenset()) - a.enum)
            yield change(
                f"values {', '.join(added)} added"
                if b.enum
                else "no longer restricted to a set of values",
                widens,
            )
        else:
            yield change(f"values {sorted(a.enum)} -> {sorted(b.enum)}", "breaking")
    for label, old_bound, new_bound, is_lower in (
        ("lower bound", a.lower, b.lower, True),
        ("upper bound", a.upper, b.upper, False),
    ):
        if old_bound != new_bound:
            tighter = _tighter(old_bound, new_bound, is_lower)
            what = f"{label} {_bound(old_bound, is_lower)} -> {_bound(new_bound, is_lower)}"
            yield change(
                what + (" (narrower)" if tighter else " (wider)"), narrows if tighter else widens
            )
    for label, old_len, new_len, is_min in (
        ("minimum length", a.min_length, b.min_length, True),
        ("maximum length", a.max_length, b.max_length, False),
    ):
        if old_len != new_len:
            lo = (float(old_len), False) if old_len is not None else None
            hi = (float(new_len), False) if new_len is not None else None
            tighter = _tighter(lo, hi, is_min)
            yield change(f"{label} {old_len} -> {new_len}", narrows if tighter else widens)
    if a.pattern != b.pattern:
        if b.pattern is None:
            yield change("pattern removed", widens)
        elif a.pattern is None:
            yield change(f"pattern {b.pattern!r} added", narrows)
        else:
            yield change(f"pattern {a.pattern!r} -> {b.pattern!r}", "breaking")
    if a.structure != b.structure:
        yield change("nested structure changed", "breaking")
    if a.default != b.default:
        yield change(f"default {a.default or '(none)'} -> {b.default or '(none)'}", "compatible")
    if a.description != b.description:
        yield change("description changed", "cosmetic")
    if a.sensitive != b.sensitive:
        yield change(
            "marked sensitive: its values are now redacted in logs"
            if b.sensitive
            else "no longer marked sensitive: its values may now appear in logs",
            "compatible",
        )


def _tighter(old: tuple[float, bool] | None, new: tuple[float, bool] | None, lower: bool) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    if old[0] != new[0]:
        return new[0] > old[0] if lower else new[0] < old[0]
    return new[1] and not old[1]  # same value, now exclusive


def _bound(bound: tuple[float, bool] | None, lower: bool) -> str:
    if bound is None:
        return "none"
    value, exclusive = bound
    return f"{'>' if lower else '<'}{'' if exclusive else '='} {value:g}"


def _types(types: frozenset[str]) -> str:
    return "|".join(sorted(types)) or "any"


def _forbids_extra(schema: Mapping[str, Any]) -> bool:
    return schema.get("additionalProperties") is False


def declared(contract: Mapping[str, Any], side: str) -> Mapping[str, Any]:
    """The ``side`` ("input"/"output") schema of a contract with its properties in declared
    order: contract.json's keys are sorted, its ``field_order`` keeps the order (a contract
    without one, written before it existed, stays in the order it has)."""
    schema = contract[side]
    order = (contract.get("field_order") or {}).get(side) or []
    properties = schema.get("properties", {})
    ranked = [n for n in order if n in properties] + [n for n in properties if n not in order]
    return {**schema, "properties": {name: properties[name] for name in ranked}}


def fields(schema: Mapping[str, Any]) -> dict[str, FieldSpec]:
    """Every property of a model schema, normalised (``$ref`` to ``$defs`` resolved)."""
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    return {
        name: _spec(prop, defs, name in required)
        for name, prop in schema.get("properties", {}).items()
    }


def _resolve(prop: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = defs.get(ref.removeprefix("#/$defs/"), {})
        return {**target, **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop


def _spec(prop: Mapping[str, Any], defs: Mapping[str, Any], required: bool) -> FieldSpec:
    prop = _resolve(prop, defs)
    variants = [_resolve(v, defs) for v in prop.get("anyOf", [prop])]
    types: set[str] = set()
    enum: set[str] | None = None
    structure = []
    keys: dict[str, Any] = {}
    for variant in variants:
        kind = variant.get("type")
        values = variant.get("enum", [variant["const"]] if "const" in variant else None)
        if values is not None:
            enum = (enum or set()) | {json.dumps(v, sort_keys=True) for v in values}
            types |= {_json_type(v) for v in values}
        elif isinstance(kind, list):
            types |= set(kind)
        elif kind is not None:
            types.add(kind)
        if kind in ("object", "array"):
            structure.append(json.dumps(variant, sort_keys=True))
        for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
                    "minLength", "maxLength", "pattern"):  # fmt: skip
            if key in variant:
                keys[key] = variant[key]
    if enum is not None and "null" in types and len(enum) == len(enum - {"null"}):
        pass  # Optional[Literal[...]]: null comes from the other variant, not the enum
    lower = _bound_of(keys, "minimum", "exclusiveMinimum", max)
    upper = _bound_of(keys, "maximum", "exclusiveMaximum", min)
    return FieldSpec(
        types=frozenset(types),
        enum=frozenset(enum) if enum is not None else None,
        lower=lower,
        upper=upper,
        min_length=keys.get("minLength"),
        max_length=keys.get("maxLength"),
        pattern=keys.get("pattern"),
        required=required,
        default=json.dumps(prop["default"], sort_keys=True) if "default" in prop else None,
        description=prop.get("description"),
        structure="|".join(sorted(structure)) or None,
        sensitive=any(v.get("sensitive") is True for v in [prop, *variants]),
    )


def _bound_of(
    keys: Mapping[str, Any], inclusive: str, exclusive: str, pick: Any
) -> tuple[float, bool] | None:
    candidates = []
    if inclusive in keys:
        candidates.append((float(keys[inclusive]), False))
    if exclusive in keys:
        candidates.append((float(keys[exclusive]), True))
    if not candidates:
        return None
    value = pick(c[0] for c in candidates)
    return value, any(c[1] for c in candidates if c[0] == value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float) and math.isfinite(value):
        return "number"
    return "string"


# The columns of ``contract show``, in FieldRow's order.
SHOW_COLUMNS = ("field", "type", "required", "constraints", "description", "example")


@dataclass(frozen=True)
class FieldRow:
    field: str
    type: str
    required: str
    constraints: str
    description: str
    example: str


def field_rows(schema: Mapping[str, Any], example: Mapping[str, Any] | None) -> list[FieldRow]:
    """One row per field of a model schema, for ``contract show``."""
    rows = []
    for name, spec in fields(schema).items():
        constraints = []
        if spec.lower:
            constraints.append(_bound(spec.lower, True))
        if spec.upper:
            constraints.append(_bound(spec.upper, False))
        if spec.min_length is not None:
            constraints.append(f"length >= {spec.min_length}")
        if spec.max_length is not None:
            constraints.append(f"length <= {spec.max_length}")
        if spec.pattern:
            constraints.append(f"pattern {spec.pattern}")
        if spec.enum is not None:
            constraints.append("one of " + ", ".join(sorted(spec.enum)))
        if spec.structure:
            constraints.append("nested")
        if spec.sensitive:
            constraints.append("SENSITIVE: redacted in logs")
        required = (
            "yes" if spec.required else f"no (default {spec.default})" if spec.default else "no"
        )
        value = (example or {}).get(name)
        rows.append(
            FieldRow(
                field=name,
                type=_types(spec.types),
                required=required,
                constraints="; ".join(constraints),
                description=spec.description or "",
                example=(
                    "[REDACTED]"
                    if spec.sensitive and example and name in example
                    else json.dumps(value)
                    if example and name in example
                    else ""
                ),  # fmt: skip
            )
        )
    return rows


def _extra_note(side: str, schema: Mapping[str, Any]) -> str:
    return " (extra fields forbidden)" if _forbids_extra(schema) and side == "input" else ""


def contract_markdown(contract: Mapping[str, Any]) -> str:
    """The contract as markdown tables, for a pull-request comment."""
    first = (contract.get("examples") or [{}])[0]
    out = [
        f"### Contract {contract.get('contract_version', '?')} (sha256 `{contract['sha256'][:12]}`)"
        + (" (inferred)" if contract.get("inferred") else ""),
        "",
    ]
    for side in ("input", "output"):
        schema = declared(contract, side)
        out += [f"**{side.capitalize()}**{_extra_note(side, schema)}", ""]
        out += ["| field | type | required | constraints | description | example |"]
        out += ["| --- | --- | --- | --- | --- | --- |"]
        for row in field_rows(schema, first.get(side)):
            cells = [f"`{row.field}`", row.type, row.required, row.constraints, row.description]
            cells.append(f"`{row.example}`" if row.example else "")
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def contract_text(contract: Mapping[str, Any]) -> str:
    """The contract as plain aligned columns, for a pipe, a file or a CI log: one line per field
    and nothing wrapped at any width, so every field name can be found (and grepped) whole."""
    first = (contract.get("examples") or [{}])[0]
    inferred = "  (inferred: review before relying on it)" if contract.get("inferred") else ""
    out = [
        f"contract {contract.get('contract_version')}  sha256 {contract['sha256'][:12]}{inferred}"
    ]
    for side in ("input", "output"):
        schema = declared(contract, side)
        rows = [SHOW_COLUMNS] + [
            tuple(" ".join(cell.splitlines()) for cell in astuple(row))
            for row in field_rows(schema, first.get(side))
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(len(SHOW_COLUMNS))]
        out += ["", f"{side.capitalize()}{_extra_note(side, schema)}"]
        out += [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
    return "\n".join(out) + "\n"
