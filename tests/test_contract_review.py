"""Every contract diff rule, on contracts made from real pydantic models; `contract show` as
piped and as at a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from click.testing import CliRunner
from nb2prod.cli import main
from nb2prod.pipeline.contract import Contract
from nb2prod.release.review import diff_contracts, field_rows
from pydantic import BaseModel, ConfigDict, Field


class In(BaseModel):
    x: float = Field(ge=0, le=10, description="x in cm")
    kind: Literal["a", "b"] = "a"
    name: str | None = Field(None, max_length=20)


class Out(BaseModel):
    label: Literal["yes", "no"]
    score: float = Field(ge=0, le=1)


def contract(inp: type[BaseModel] = In, out: type[BaseModel] = Out) -> dict:  # type: ignore[type-arg]
    return {
        "input": inp.model_json_schema(),
        "output": out.model_json_schema(),
        "sha256": "x",
        "examples": [],
    }


def only_change(old: dict, new: dict) -> tuple[str, str | None, str, str]:  # type: ignore[type-arg]
    (change,) = diff_contracts(old, new).changes
    return change.side, change.field, change.severity, change.what


# Input: narrowing what callers may send breaks them ---------------------------------------------


def test_identical_contracts() -> None:
    assert diff_contracts(contract(), contract()).verdict == "identical"


def test_input_field_removed_is_breaking() -> None:
    class New(BaseModel):
        x: float = Field(ge=0, le=10, description="x in cm")
        kind: Literal["a", "b"] = "a"

    assert only_change(contract(), contract(New))[1:3] == ("name", "breaking")


@pytest.mark.parametrize(("required", "severity"), [(True, "breaking"), (False, "compatible")])
def test_input_field_added(required: bool, severity: str) -> None:
    class New(In):
        extra: int = Field(...) if required else 0  # type: ignore[assignment]

    side, field, sev, what = only_change(contract(), contract(New))
    assert (field, sev) == ("extra", severity)
    assert what == ("required field added" if required else "optional field added")


def test_optional_made_required_breaks_and_the_reverse_does_not() -> None:
    class Required(In):
        kind: Literal["a", "b"]  # type: ignore[assignment]

    changes = diff_contracts(contract(), contract(Required)).changes
    assert {(c.field, c.severity, c.what) for c in changes} == {
        ("kind", "breaking", "optional field made required"),
        ("kind", "compatible", 'default "a" -> (none)'),
    }
    changes = diff_contracts(contract(Required), contract()).changes
    assert {(c.severity, c.what) for c in changes} == {
        ("compatible", "required field made optional"),
        ("compatible", 'default (none) -> "a"'),
    }


@pytest.mark.parametrize(
    ("field_def", "severity", "fragment"),
    [
        (
            Field(ge=1, le=10, description="x in cm"),
            "breaking",
            "lower bound >= 0 -> >= 1 (narrower)",
        ),
        (
            Field(ge=0, le=9, description="x in cm"),
            "breaking",
            "upper bound <= 10 -> <= 9 (narrower)",
        ),
        (
            Field(gt=0, le=10, description="x in cm"),
            "breaking",
            "lower bound >= 0 -> > 0 (narrower)",
        ),
        (Field(ge=-5, le=10, description="x in cm"), "compatible", "(wider)"),
        (Field(ge=0, description="x in cm"), "compatible", "upper bound <= 10 -> none (wider)"),
    ],
)
def test_input_bounds(field_def: object, severity: str, fragment: str) -> None:
    class New(In):
        x: float = field_def  # type: ignore[assignment]

    side, field, sev, what = only_change(contract(), contract(New))
    assert (side, field, sev) == ("input", "x", severity) and fragment in what


def test_input_type_narrowed_breaks_widened_does_not() -> None:
    class Narrow(In):
        x: int = Field(ge=0, le=10, description="x in cm")  # type: ignore[assignment]

    assert only_change(contract(), contract(Narrow))[2:] == (
        "breaking", "type number -> integer (narrower)"
    )  # fmt: skip
    assert only_change(contract(Narrow), contract())[2] == "compatible"


def test_input_null_no_longer_accepted_is_breaking() -> None:
    class NoNull(In):
        name: str = Field("", max_length=20)  # type: ignore[assignment]

    severities = {c.what: c.severity for c in diff_contracts(contract(), contract(NoNull)).changes}
    assert severities["type null|string -> string (narrower)"] == "breaking"


def test_input_enum_value_removed_breaks_added_does_not() -> None:
    class Fewer(In):
        kind: Literal["a"] = "a"  # type: ignore[assignment]

    class More(In):
        kind: Literal["a", "b", "c"] = "a"  # type: ignore[assignment]

    assert only_change(contract(), contract(Fewer))[2:] == ("breaking", 'values "b" removed')
    assert only_change(contract(), contract(More))[2:] == ("compatible", 'values "c" added')


def test_input_string_restricted_to_an_enum_breaks() -> None:
    class Free(In):
        kind: str = "a"  # type: ignore[assignment]

    assert only_change(contract(Free), contract())[2:] == (
        "breaking", "restricted to a set of values"
    )  # fmt: skip
    assert only_change(contract(), contract(Free))[2] == "compatible"


def test_input_length_and_pattern() -> None:
    class Shorter(In):
        name: str | None = Field(None, max_length=10)  # type: ignore[assignment]

    class Patterned(In):
        name: str | None = Field(None, max_length=20, pattern="^[a-z]+$")  # type: ignore[assignment]

    assert only_change(contract(), contract(Shorter))[2:] == ("breaking", "maximum length 20 -> 10")
    assert only_change(contract(), contract(Patterned))[2] == "breaking"
    assert only_change(contract(Patterned), contract())[2:] == ("compatible", "pattern removed")


def test_forbidding_extra_fields_breaks() -> None:
    class Strict(In):
        model_config = ConfigDict(extra="forbid")

    assert only_change(contract(), contract(Strict))[1:3] == (None, "breaking")
    assert only_change(contract(Strict), contract())[1:3] == (None, "compatible")


# Output: letting more come back breaks callers ------------------------------------------------


def test_output_field_removed_breaks_added_does_not() -> None:
    class Less(BaseModel):
        label: Literal["yes", "no"]

    class More(Out):
        reason: str = ""

    assert only_change(contract(out=Out), contract(out=Less))[:3] == ("output", "score", "breaking")
    assert only_change(contract(), contract(out=More))[:3] == ("output", "reason", "compatible")


def test_output_new_enum_value_breaks_fewer_does_not() -> None:
    class More(Out):
        label: Literal["yes", "no", "maybe"]  # type: ignore[assignment]

    class Fewer(Out):
        label: Literal["yes"]  # type: ignore[assignment]

    assert only_change(contract(), contract(out=More))[2] == "breaking"
    assert only_change(contract(), contract(out=Fewer))[2] == "compatible"


def test_output_wider_bound_or_type_or_optional_breaks() -> None:
    class WiderBound(Out):
        score: float = Field(ge=0, le=100)

    class Nullable(Out):
        score: float | None = Field(None, ge=0, le=1)  # type: ignore[assignment]

    assert only_change(contract(), contract(out=WiderBound))[2] == "breaking"
    severities = {
        c.what: c.severity for c in diff_contracts(contract(), contract(out=Nullable)).changes
    }
    assert severities["field may now be missing"] == "breaking"
    assert severities["type number -> null|number (wider)"] == "breaking"


def test_output_narrower_bound_is_compatible() -> None:
    class Narrower(Out):
        score: float = Field(ge=0, le=0.5)

    assert only_change(contract(), contract(out=Narrower))[2] == "compatible"


def test_description_only_changes_are_cosmetic() -> None:
    class Described(In):
        x: float = Field(ge=0, le=10, description="x in millimetres")

    assert only_change(contract(), contract(Described))[2:] == ("cosmetic", "description changed")
    assert diff_contracts(contract(), contract(Described)).breaking == ()


def test_show_rows_carry_type_constraints_and_example() -> None:
    rows = {r.field: r for r in field_rows(In.model_json_schema(), {"x": 2.5})}
    assert (rows["x"].type, rows["x"].required, rows["x"].constraints) == (
        "number",
        "yes",
        ">= 0; <= 10",
    )
    assert rows["x"].description == "x in cm" and rows["x"].example == "2.5"
    assert (
        rows["kind"].constraints == 'one of "a", "b"'
        and rows["kind"].required == 'no (default "a")'
    )
    assert rows["name"].type == "null|string" and rows["name"].constraints == "length <= 20"


class Private(In):
    name: str | None = Field(None, max_length=20, json_schema_extra={"sensitive": True})


def test_marking_a_field_sensitive_shows_in_diff_and_table() -> None:
    assert only_change(contract(), contract(Private))[1:] == (
        "name", "compatible", "marked sensitive: its values are now redacted in logs",
    )  # fmt: skip
    assert only_change(contract(Private), contract())[3] == (
        "no longer marked sensitive: its values may now appear in logs"
    )
    rows = {r.field: r for r in field_rows(Private.model_json_schema(), {"name": "Ann"})}
    assert rows["name"].constraints == "length <= 20; SENSITIVE: redacted in logs"
    assert rows["name"].example == "[REDACTED]"


# contract show, as a reviewer reads it in a terminal, a file or a CI log ------------------------


class Customer(BaseModel):
    tenure_months_since_signup: int = Field(
        ge=0, description="Whole months between the signup date and the scoring date, as billed"
    )
    monthly_charges_in_local_currency: float = Field(gt=0, description="Last invoice, net of tax")
    preferred_contact_channel_for_offers: Literal["email", "phone", "letter"] | None = None


class Churn(BaseModel):
    probability_of_churn_within_ninety_days: float = Field(ge=0, le=1)


LONG_NAMES = [*Customer.model_fields, *Churn.model_fields]


def show(tmp_path: Path, stdout: int | None = subprocess.PIPE, **env: str) -> str:
    """`nb2prod contract show` of a contract with long field names, in a subprocess."""
    path = tmp_path / "contract.json"
    if not path.exists():
        contract = Contract(
            "1.0.0",
            Customer.model_json_schema(),
            Churn.model_json_schema(),
            (
                {
                    "input": {
                        "tenure_months_since_signup": 26,
                        "monthly_charges_in_local_currency": 70.5,
                    },
                    "output": {"probability_of_churn_within_ninety_days": 0.125},
                },
            ),
        )
        path.write_text(json.dumps(contract.to_json()))
    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR")}
    proc = subprocess.run(
        [sys.executable, "-m", "nb2prod", "contract", "show", str(path)],
        stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=60, check=False,
        env={**environment, **env},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout or ""


@pytest.mark.parametrize("columns", [None, "40"])
def test_piped_contract_show_never_breaks_a_field_name(tmp_path: Path, columns: str | None) -> None:
    lines = show(tmp_path, **({"COLUMNS": columns} if columns else {})).splitlines()
    for name in LONG_NAMES:
        (row,) = [line for line in lines if line.startswith(name + " ")]
        assert "│" not in row  # plain columns, not a table drawn for a terminal
    (tenure,) = [line for line in lines if line.startswith("tenure_months_since_signup")]
    assert tenure.split("  ")[0] == "tenure_months_since_signup"
    assert "Whole months between the signup date and the scoring date, as billed" in tenure
    assert tenure.rstrip().endswith("26") and ">= 0" in tenure
    assert lines[0].startswith("contract 1.0.0  sha256 ")
    assert "Input" in lines and "Output" in lines


def test_contract_show_at_a_terminal_draws_tables_that_fit_it(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    try:
        show(tmp_path, stdout=follower, COLUMNS="100")
        os.close(follower)
        follower = -1
        received = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the writer is gone
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(leader)
        if follower != -1:
            os.close(follower)
    text = re.sub(r"\x1b\[[0-9;]*m", "", received.decode())  # rich's colours
    lines = text.splitlines()
    assert all(len(line) <= 100 for line in lines)
    assert any("┃ field" in line for line in lines)
    for name in LONG_NAMES:  # the other columns give way first
        assert any(f"│ {name} " in line for line in lines), name


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [("1.4.0", "1.5.0", 1), ("1.4.0", "2.0.0", 0), ("0.3.0", "0.4.0", 0), ("0.3.0", "0.3.1", 1)],
)
def test_contract_diff_allows_a_breaking_change_only_with_a_major_bump(
    tmp_path: Path, old: str, new: str, code: int
) -> None:
    """`contract diff --allow-major-bump` applies package's rule (the CI workflow's gate)."""

    class Narrower(BaseModel):
        x: float = Field(ge=0, le=5, description="x in cm")
        kind: Literal["a", "b"] = "a"
        name: str | None = Field(None, max_length=20)

    paths = []
    for version, model in ((old, In), (new, Narrower)):
        path = tmp_path / f"{version}.json"
        path.write_text(json.dumps({**contract(model), "contract_version": version}))
        paths.append(str(path))
    plain = CliRunner().invoke(main, ["contract", "diff", *paths])
    allowed = CliRunner().invoke(main, ["contract", "diff", *paths, "--allow-major-bump"])
    assert plain.exit_code == 1 and "breaking" in plain.output
    assert allowed.exit_code == code, allowed.output


def test_contract_show_lists_fields_in_declared_order_though_the_file_sorts_keys(
    tmp_path: Path,
) -> None:
    class Features(BaseModel):  # a torch model's feature order: not alphabetical
        zeta: float = Field(ge=0, le=1)
        alpha: float = Field(ge=0, le=1)
        mid: int = Field(ge=0, le=9)

    made = Contract(
        "1.0.0", Features.model_json_schema(), Out.model_json_schema(), (),
        field_order={"input": tuple(Features.model_fields), "output": tuple(Out.model_fields)},
    )  # fmt: skip
    path = tmp_path / "contract.json"
    path.write_text(json.dumps(made.to_json(), sort_keys=True))  # canonical_json sorts keys
    assert list(json.loads(path.read_text())["input"]["properties"]) == ["alpha", "mid", "zeta"]
    assert made.sha256 == Contract("1.0.0", made.input_schema, made.output_schema, ()).sha256
    for fmt in ("text", "markdown"):
        out = CliRunner().invoke(main, ["contract", "show", str(path), "--format", fmt]).output
        assert out.index("zeta") < out.index("alpha") < out.index("mid"), out
        assert out.index("label") < out.index("score")
    # a contract written before field_order existed keeps the order it has
    old = json.loads(path.read_text())
    del old["field_order"]
    path.write_text(json.dumps(old))
    out = CliRunner().invoke(main, ["contract", "show", str(path), "--format", "text"]).output
    assert out.index("alpha") < out.index("mid") < out.index("zeta")
