"""The contract probe's random inputs, made in a process of their own while the notebook runs.

Making ``[robustness] inputs`` instances of Input's JSON Schema with hypothesis-jsonschema takes
seconds, and needs only the contract, which the rendered ``pipeline.py`` defines before the
notebook has run (unless the contract is inferred). ``package`` therefore starts
``python -m nb2prod.probe.pregen PLAN OUT`` beside the kernel (pipeline/pregen.py): it loads
pipeline.py as the probe does, makes the inputs as :func:`robustness.random_inputs` does, and
writes them with the schema, count and seed they were made for.

The probe (:func:`take`) waits for that process to end and uses its inputs only when they were
made for the very schema, count and seed it would use, and when the notebook has not imported
hypothesis itself (its settings could then differ from a fresh process's); otherwise it makes
them itself, as before. Either way the inputs are those ``random_inputs`` makes in a fresh
process: the same for the same seed and versions.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .protocol import PregenPlan, ProbePlan


def take(
    plan: PregenPlan | None, schema: Mapping[str, Any], count: int, seed: int
) -> list[dict[str, Any]] | str | None:
    """The inputs (or why none could be made) made for ``schema``, ``count`` and ``seed``;
    None when the probe must make them itself."""
    if plan is None or "hypothesis" in sys.modules:
        return None
    try:
        with open(plan.lock, "rb") as held:
            fcntl.flock(held, fcntl.LOCK_SH)  # returns once the pregen process has exited
        data = json.loads(Path(plan.file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = (
        isinstance(data, dict)
        and data.get("schema") == json.loads(json.dumps(schema))
        and data.get("count") == count
        and data.get("seed") == seed
    )
    made = data.get("made") if same else None
    return made if isinstance(made, list | str) else None


def make(plan: ProbePlan, out: Path) -> None:
    """Load ``plan``'s pipeline.py, make its random inputs, write them to ``out`` (atomically)."""
    from .kernel import load_pipeline
    from .robustness import random_inputs

    pipeline, _ = load_pipeline(plan, None)
    schema = pipeline.Input.model_json_schema()
    count, seed = plan.robustness.inputs, plan.robustness.seed
    made = random_inputs(schema, count, seed)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(
        json.dumps({"schema": schema, "count": count, "seed": seed, "made": made}),
        encoding="utf-8",
    )
    os.replace(partial, out)


def main(argv: list[str]) -> int:
    plan = ProbePlan.model_validate_json(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        make(plan, Path(argv[1]))
    except BaseException:  # noqa: BLE001 - the probe then makes them itself and reports what fails
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
