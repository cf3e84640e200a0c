"""The contract probe's random inputs, made in a process of their own while the notebook runs.

Making ``[robustness] inputs`` instances of Input's JSON Schema with hypothesis-jsonschema takes
seconds, and needs only the contract, which the rendered ``pipeline.py`` defines before the
notebook has run (unless the contract is inferred). ``package`` therefore starts
``python -m nb2prod.probe.pregen PLAN OUT`` beside the kernel (pipeline/pregen.py): it loads
pipeline.py as the probe does, makes the inputs as :func:`robustness.random_inputs` does, and
writes them with the schema, count and seed they were made for.

The probe (:func:`take`) waits for that process to end and uses its inputs only when they were
made for the very schema, count and seed it would use, with the same constants, and when the
notebook has not imported hypothesis itself (its settings could then differ from a fresh
process's); otherwise it makes them itself, as before. The constants: hypothesis also draws
the literals of the *local* modules loaded (not the standard library's or site-packages': the
rendered pipeline.py, the notebook's own modules next to it, nb2prod when installed editable),
so the process imports the probe's modules as the kernel has them, and both sides compare a
digest of those constants. The inputs used are thus always those the kernel would make.
"""

from __future__ import annotations

import fcntl
import hashlib
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
    if plan is None or hypothesis_imported():
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
        and data.get("constants") == constants_digest()
    )
    made = data.get("made") if same else None
    return made if isinstance(made, list | str) else None


def hypothesis_imported() -> bool:
    """Whether hypothesis is imported in this process already (the notebook did, or a plugin)."""
    return "hypothesis" in sys.modules


def constants_digest() -> str | None:
    """A digest of the constants hypothesis draws from the local modules loaded in this process
    (scanning the modules loaded since it last did); None when this hypothesis draws none."""
    try:
        from hypothesis.internal.conjecture.providers import _get_local_constants
    except ImportError:
        return None
    found = _get_local_constants()
    kinds = (found.integers, found.floats, found.bytes, found.strings)
    shown = repr(tuple(sorted(repr(value) for value in kind) for kind in kinds))
    return hashlib.sha256(shown.encode()).hexdigest()


def make(plan: ProbePlan, out: Path) -> None:
    """Load ``plan``'s pipeline.py, make its random inputs, write them to ``out`` (atomically)."""
    # the probe's modules, as the kernel has them loaded when it makes the inputs
    from . import lineage, snapshot  # noqa: F401
    from .kernel import load_pipeline
    from .robustness import random_inputs

    pipeline, _ = load_pipeline(plan, None)
    schema = pipeline.Input.model_json_schema()
    count, seed = plan.robustness.inputs, plan.robustness.seed
    made = random_inputs(schema, count, seed)
    payload = {"schema": schema, "count": count, "seed": seed, "made": made,
               "constants": constants_digest()}  # fmt: skip
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(json.dumps(payload), encoding="utf-8")
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
