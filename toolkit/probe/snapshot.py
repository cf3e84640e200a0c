"""The trained state of a run, inside the kernel: saved after the last training cell, restored
instead of training when only cells that cannot change the model changed.

:func:`save` pickles (cloudpickle) the values the later cells and the probe read from the
training cells; a value that cannot be pickled is written down with why (no reuse next time) and
never fails the notebook. :func:`restore` puts them back into a fresh kernel's namespace.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "state.pkl"
NAMES_FILE = "names.json"
FAILURE_FILE = "snapshot-failure.json"


def save(namespace: dict[str, Any], names: list[str], out_dir: str) -> None:
    """Pickle ``names`` (those the namespace has) into ``out_dir``; never raises."""
    import cloudpickle

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    values = {n: namespace[n] for n in names if n in namespace}
    try:
        data = cloudpickle.dumps(values)
    except Exception:
        problem = "the trained state could not be pickled"
        for name, value in values.items():
            try:
                cloudpickle.dumps(value)
            except Exception as exc:
                problem = f"`{name}` could not be pickled ({type(exc).__name__}: {exc})"
                break
        (out / FAILURE_FILE).write_text(json.dumps({"problem": problem}), encoding="utf-8")
        return
    partial = out / (STATE_FILE + ".part")
    partial.write_bytes(data)
    os.replace(partial, out / STATE_FILE)
    (out / NAMES_FILE).write_text(json.dumps(sorted(values)), encoding="utf-8")


def restore(namespace: dict[str, Any], state_file: str) -> None:
    """Put the values saved in ``state_file`` back into ``namespace``."""
    import cloudpickle

    with open(state_file, "rb") as f:
        namespace.update(cloudpickle.load(f))
