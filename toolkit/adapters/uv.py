"""Adapter: resolve a full, hashed lock with uv (the only module that runs uv).

The index is uv's default unless ``UV_INDEX_URL`` / ``UV_DEFAULT_INDEX`` say otherwise; no index
URL is written into the lock (``--no-emit-index-url``), so a lock is portable between mirrors.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import LockError, MissingToolError

PLATFORM = "x86_64-unknown-linux-gnu"


@dataclass(frozen=True)
class Resolution:
    text: str  # requirements.lock body as uv wrote it


def uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ImportError:  # pragma: no cover - uv is a dependency of nb2prod
        raise MissingToolError(
            "uv is not installed in this environment", hint="pip install uv"
        ) from None
    return str(find_uv_bin())


def compile_lock(
    requirements: list[str], constraints: list[str], *, python_version: str
) -> Resolution:
    """Resolve ``requirements`` (pinned direct dependencies) to every transitive pin with hashes."""
    with tempfile.TemporaryDirectory(prefix="nb2prod-lock-") as scratch:
        req = Path(scratch) / "requirements.in"
        con = Path(scratch) / "constraints.txt"
        req.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        con.write_text("\n".join(constraints) + "\n", encoding="utf-8")
        command = [
            uv_binary(), "pip", "compile", str(req),
            "--constraint", str(con),
            "--generate-hashes",
            "--python-version", python_version,
            "--python-platform", PLATFORM,
            "--no-header",
            "--no-emit-index-url",
            "--quiet",
        ]  # fmt: skip
        env = {**os.environ, "UV_NATIVE_TLS": os.environ.get("UV_NATIVE_TLS", "1")}
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        reason = _resolver_reason(proc.stderr)
        raise LockError(
            f"the environment could not be locked: {reason}",
            hint="The resolver's full message is above; pins come from the versions the "
            "notebook's kernel has installed.",
        )
    # the scratch paths uv names in its "# via" notes would make every lock differ
    body = proc.stdout.replace(str(req), "requirements.in").replace(str(con), "kernel-constraints")
    return Resolution(text=body)


def _resolver_reason(stderr: str) -> str:
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()]
    return "\n".join(lines[-15:]) or "uv exited with an error and said nothing"
