"""The contract stage of ``package``: the versioned input/output contract (``contract.json``).

JSON Schema (draft 2020-12, as pydantic emits it) of ``Input`` and ``Output``, the examples, the
contract version and a sha256. The sha256 covers the two schemas only, serialized canonically,
so it changes exactly when what callers may send or receive changes. contract.json is written with
sorted keys, so each model's fields in declared order are kept beside the schemas, in
``field_order`` (outside the sha256: the order changes nothing a caller may send).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..release.writer import canonical_json, sha256_bytes
from .capture import Capture

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class Contract:
    version: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any]
    examples: tuple[Mapping[str, Any], ...]  # {"input": ..., "output": ...} from the notebook
    inferred_from: Mapping[str, Any] | None = None  # set when Input/Output were inferred
    # "input"/"output" -> field names in declared order (the schemas' keys are sorted)
    field_order: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def sha256(self) -> str:
        return sha256_bytes(
            canonical_json({"input": self.input_schema, "output": self.output_schema})
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "$schema": SCHEMA_DIALECT,
            "contract_version": self.version,
            "inferred": self.inferred_from is not None,
            **({"inferred_from": dict(self.inferred_from)} if self.inferred_from else {}),
            "input": dict(self.input_schema),
            "output": dict(self.output_schema),
            "examples": [dict(e) for e in self.examples],
            **(
                {"field_order": {k: list(v) for k, v in self.field_order.items()}}
                if self.field_order
                else {}
            ),
            "sha256": self.sha256,
        }


def build_contract(capture: Capture, version: str) -> Contract:
    return Contract(
        version=version,
        input_schema=capture.result.input_schema,
        output_schema=capture.result.output_schema,
        examples=tuple(
            {"input": dict(e.input), "output": dict(e.output)} for e in capture.result.examples
        ),
        inferred_from=inferred.model_dump() if (inferred := capture.result.inferred_from) else None,
        field_order={
            side: names
            for side, names in (
                ("input", capture.result.input_fields),
                ("output", capture.result.output_fields),
            )
            if names
        },
    )
