"""The import layers of pyproject.toml name every module of nb2prod: a new module is never
outside the architecture `make lint` checks (import-linter ignores modules no contract names)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"
]
# each contract's own subject, and the modules it is about, need not be named
EXEMPT = {
    "the kernel probe runs in the user's kernel": {"nb2prod.runtime"},
    "outside tools only through adapters": {"nb2prod.adapters", "nb2prod.probe", "nb2prod.runtime"},
    "bentoml only in adapters": {"nb2prod.adapters", "nb2prod.probe", "nb2prod.runtime"},
    "the CLI framework only in the CLI": {"nb2prod.cli", "nb2prod.probe"},
    "nothing imports the CLI": {"nb2prod.probe"},
    "PySpark only in nb2prod.spark": {"nb2prod.spark"},
}


def modules() -> set[str]:
    toolkit = ROOT / "toolkit"
    files = {p.stem for p in toolkit.glob("*.py")} - {"__init__", "__main__"}
    packages = {p.name for p in toolkit.iterdir() if (p / "__init__.py").is_file()}
    return {f"nb2prod.{name}" for name in files | packages}


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c["name"][:40])
def test_every_module_is_in_every_layer_contract(contract: dict[str, object]) -> None:
    named = {*contract["source_modules"], *contract["forbidden_modules"]}  # type: ignore[misc]
    exempt = next((v for k, v in EXEMPT.items() if contract["name"].startswith(k)), set())  # type: ignore[attr-defined]
    assert modules() - named - exempt == set()
