"""The run cache: re-packaging with nothing changed reuses the earlier execution and lock.

The key covers everything that decides what a run produces: the notebook's bytes, the ``-p``
parameters, the configuration file's bytes, every distribution installed in the environment the
kernel runs in (name and version), nb2prod's version, the code of its kernel probe and
``--allow-drift``. Any change gives a new
key. Entries live in ``$NB2PROD_CACHE_DIR`` (default ``~/.cache/nb2prod``); each is written to a
temporary directory and renamed into place, so a crash never leaves a half entry.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

# one loop over the environment's distributions, shared with the kernel probe
from ..probe.environment import installed_distributions as installed_distributions
from ..release.writer import canonical_json, sha256_bytes
from ..resources import cache_root
from ..version import __version__
from .capture import Capture, probe_code_sha256, read_capture
from .lock import Drift, Lock


def run_key(
    *,
    notebook: bytes,
    parameters: Mapping[str, Any],
    config: bytes | None,
    installed: Mapping[str, str],
    allow_drift: bool,
) -> str:
    material = {
        "notebook": sha256_bytes(notebook),
        "parameters": dict(parameters),
        "config": sha256_bytes(config) if config is not None else None,
        "installed": dict(installed),
        "nb2prod": __version__,
        "capture": probe_code_sha256(),  # what the kernel collects changes with the probe's code
        "allow_drift": allow_drift,
    }
    return sha256_bytes(canonical_json(material))


@dataclass(frozen=True)
class CachedRun:
    capture: Capture
    executed: nbformat.NotebookNode
    lock: Lock


class RunCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()

    def load(self, key: str) -> CachedRun | None:
        entry = self.root / key
        if not (entry / "lock.json").is_file():
            return None
        try:
            lock = json.loads((entry / "lock.json").read_text(encoding="utf-8"))
            return CachedRun(
                capture=read_capture(entry / "capture"),
                executed=nbformat.read(entry / "executed.ipynb", as_version=4),
                lock=Lock(
                    direct=tuple(lock["direct"]),
                    text=lock["text"],
                    drift=tuple(Drift(**d) for d in lock["drift"]),
                ),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None  # an unreadable entry is a miss, never an error

    def store(
        self, key: str, capture_dir: Path, executed: nbformat.NotebookNode, lock: Lock
    ) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=self.root))
        try:
            shutil.copytree(capture_dir, scratch / "capture")
            nbformat.write(executed, scratch / "executed.ipynb")
            payload = {
                "direct": list(lock.direct),
                "text": lock.text,
                "drift": [vars(d) for d in lock.drift],
            }
            (scratch / "lock.json").write_bytes(canonical_json(payload))
            target = self.root / key
            if target.exists():
                shutil.rmtree(target)
            scratch.rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
