"""The kernel probe: what nb2prod collects inside the notebook's kernel after the notebook ran.

The host appends one cell to the notebook, ``run(globals(), '<plan json>')``, with a
:class:`~nb2prod.probe.protocol.ProbePlan`. The probe imports the rendered ``service/pipeline.py``
and runs it with the notebook's own objects through nb2prod's runtime, then writes a
:class:`~nb2prod.probe.protocol.ProbeResult` (``probe.json``) and the stored model into the plan's
``out_dir``, or a :class:`~nb2prod.probe.protocol.ProbeFailure` (``probe-failure.json``) saying
what the user must change. It never raises into the notebook, so papermill never reports it as a
failing cell.

| module | what |
| --- | --- |
| ``protocol`` | the plan the host hands in and the result (or failure) the probe writes back |
| ``kernel`` | the steps, in order, reading the notebook's namespace |
| ``infer`` | contract inference from examples and training data (pure) |
| ``metrics`` | held-out figures against a trivial baseline (pure) |
| ``holdout`` | [evaluation]: the held-out rows predicted the way the service answers |
| ``labels`` | eval_y read in the predictions' vocabulary (0/1 as a bool field's False/True) (pure) |
| ``threshold`` | the Output field with the probability, its class, the threshold's bounds (pure) |
| ``robustness`` | the contract probe: admitted inputs answered alone and in batches |
| ``pregen`` | the contract probe's random inputs, made in a process of their own while the notebook runs |
| ``explain`` | why an input went wrong: single/batch causes, failures shrunk to their fields |
| ``reference`` | drift reference statistics (binning pure) |
| ``serialize`` | the safest storage format that round-trips |
| ``latency`` | timings of the serving path |
| ``environment`` | installed distributions, and which ones the service needs |
| ``failure`` | user-facing failures; pipeline.py lines mapped back to notebook cells |
| ``artifacts`` | fitted state: refused if code or training data, stored, loaded back |
| ``fill`` | why predictions do not fill Output without a postprocess cell |
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

from ..runtime.schema import Frozen, dump
from .protocol import ProbeFailure, ProbePlan

RESULT_FILE = "probe.json"
FAILURE_FILE = "probe-failure.json"
TRACEBACK_FILE = "probe-traceback.txt"


def run(namespace: dict[str, Any], plan_json: str) -> None:
    """Probe the notebook's namespace as ``plan_json`` says; write the result or the failure."""
    from .failure import Fail
    from .kernel import probe

    plan = ProbePlan.model_validate_json(plan_json)
    out = Path(plan.out_dir)
    result: Frozen
    try:
        result, name = probe(namespace, plan), RESULT_FILE
    except Fail as failure:
        result, name = ProbeFailure(message=failure.message, hint=failure.hint), FAILURE_FILE
    except Exception as exc:  # nb2prod's own bug: say so, keep the traceback for the report
        (out / TRACEBACK_FILE).write_text(traceback.format_exc(), encoding="utf-8")
        result = ProbeFailure(
            message=f"nb2prod's probe failed unexpectedly: {type(exc).__name__}: {exc}",
            hint=f"This is a bug in nb2prod; please report it with its traceback ({TRACEBACK_FILE}).",
        )
        name = FAILURE_FILE
    (out / name).write_text(json.dumps(dump(result), sort_keys=True), encoding="utf-8")
