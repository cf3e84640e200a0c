"""Adapter: Locust, run as a library in a child process.

Locust monkey-patches the standard library (gevent) the moment it is imported, so nb2prod never
imports it: the child runs the release's locustfile (``adapters/locustfile.py``, copied into every
release as ``deploy/locustfile.py``), which imports Locust first, drives it through
``locust.env.Environment`` and a local runner, prints a progress line a second and writes its
summary as JSON. This module streams those lines and reads the summary back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LoadTestError, MissingToolError
from .loopback import tail

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass(frozen=True)
class Load:
    """What to send: how many users, how many requests/s in total, for how long."""

    users: int
    rate: float
    duration_s: float


def available() -> bool:
    import importlib.util

    return importlib.util.find_spec("locust") is not None


def run(
    url: str,
    token: str | None,
    locustfile: Path,
    load: Load,
    summary: Path,
    on_line: Callable[[str], None],
) -> dict[str, Any]:
    """Load ``url`` with ``locustfile`` (a copy of LOCUSTFILE with its loadtest.json beside it,
    outside nb2prod's package: a script's directory comes first on ``sys.path``); the summary
    it wrote (also left at ``summary``)."""
    if not available():
        raise MissingToolError(
            "nb2prod loadtest needs Locust, which is not installed",
            hint="pip install locust (it comes with nb2prod; was it installed with --no-deps?)",
        )
    env = dict(os.environ)
    env.pop("NB2PROD_API_TOKEN", None)
    if token:
        env["NB2PROD_API_TOKEN"] = token  # by environment, never on a command line
    command = [
        sys.executable, str(locustfile), "--host", url, "--users", str(load.users),
        "--rate", f"{load.rate:g}", "--duration", f"{load.duration_s:g}", "--json", str(summary),
    ]  # fmt: skip
    output: list[str] = []
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line.rstrip("\n"))
            on_line(line.rstrip("\n"))
        code = proc.wait()
    if code not in (0, 1) or not summary.is_file():
        raise LoadTestError(
            f"the load test stopped with status {code} before writing its summary:\n"
            + tail("\n".join(output)),
        )
    data: dict[str, Any] = json.loads(summary.read_text(encoding="utf-8"))
    return data
