"""The run cache: re-packaging with nothing changed reuses the earlier execution and lock.

The key covers what decides what a run produces and is known before it runs: the notebook's
bytes, the ``-p`` parameters, the configuration file's bytes, nb2prod's version, the code of its
kernel probe and ``--allow-drift``. Any change gives a new key. What is known only after a run is
checked when an entry is loaded: the data files it read (re-hashed; data that cannot be hashed
needs ``--reuse-unhashed-data``) and the versions of the packages it depends on (those the
notebook imported and the lock pins, not everything installed). Entries live in ``$NB2PROD_CACHE_DIR`` (default ``~/.cache/nb2prod``); each is written to a
temporary directory and renamed into place, so a crash never leaves a half entry.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import nbformat

# one loop over the environment's distributions, shared with the kernel probe
from ..probe.environment import installed_distributions as installed_distributions
from ..release.manifest import Lineage
from ..release.writer import canonical_json, sha256_bytes
from ..resources import cache_root
from ..version import __version__
from .capture import Capture, probe_code_sha256, read_capture
from .lineage import data_changed
from .lock import Drift, Lock
from .packages import changed_packages, describe_changes


def run_key(
    *,
    notebook: bytes,
    parameters: Mapping[str, Any],
    config: bytes | None,
    allow_drift: bool,
) -> str:
    material = {
        "notebook": sha256_bytes(notebook),
        "parameters": dict(parameters),
        "config": sha256_bytes(config) if config is not None else None,
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
    lineage: Lineage = Lineage()
    packages: Mapping[str, str] = field(default_factory=dict)


class RunCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root()

    def load(
        self,
        key: str,
        *,
        notebook_dir: Path | None = None,
        installed: Mapping[str, str] | None = None,
        reuse_unhashed: bool = False,
    ) -> tuple[CachedRun | None, str]:
        """The entry of ``key`` if its data and packages are unchanged; else None and why."""
        run = self._read(key)
        if run is None:
            return None, ""
        if notebook_dir is not None:
            reason = data_changed(run.lineage, notebook_dir, reuse_unhashed)
            if reason:
                return None, reason
        if installed is not None:
            changes = changed_packages(run.packages, installed)
            if changes:
                return None, f"packages changed since the cached run: {describe_changes(changes)}"
        return run, ""

    def _read(self, key: str) -> CachedRun | None:
        entry = self.root / key
        if not (entry / "lock.json").is_file():
            return None
        try:
            lock = json.loads((entry / "lock.json").read_text(encoding="utf-8"))
            facts = json.loads((entry / "facts.json").read_text(encoding="utf-8"))
            return CachedRun(
                capture=read_capture(entry / "capture"),
                executed=nbformat.read(entry / "executed.ipynb", as_version=4),
                lock=Lock(
                    direct=tuple(lock["direct"]),
                    text=lock["text"],
                    drift=tuple(Drift(**d) for d in lock["drift"]),
                ),
                lineage=Lineage.model_validate(facts["lineage"]),
                packages=MappingProxyType(dict(facts["packages"])),
            )
        except (OSError, ValueError, KeyError, TypeError):  # pydantic's errors are ValueErrors
            return None  # an unreadable entry is a miss, never an error

    def store(
        self,
        key: str,
        capture_dir: Path,
        executed: nbformat.NotebookNode,
        lock: Lock,
        lineage: Lineage | None = None,
        packages: Mapping[str, str] | None = None,
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
            facts = {
                "lineage": (lineage or Lineage()).model_dump(mode="json"),
                "packages": dict(packages or {}),
            }
            (scratch / "facts.json").write_bytes(canonical_json(facts))
            (scratch / "lock.json").write_bytes(canonical_json(payload))
            target = self.root / key
            if target.exists():
                shutil.rmtree(target)
            scratch.rename(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


class LockMemo:
    """Locks by what decides them (the direct requirements, the kernel's versions, its Python,
    ``--allow-drift``): a re-package whose service needs the same packages (a trained state
    reused, a postprocess fixed) does not resolve again. In ``$NB2PROD_CACHE_DIR/locks``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "locks"

    @staticmethod
    def key(
        capture: Capture,
        notebook: str,
        allow_drift: bool,
        sources: Mapping[str, str] | None = None,
        pip_sources: tuple[tuple[str, ...], tuple[str, ...]] = ((), ()),
    ) -> str:
        result = capture.result
        material = {
            "requirements": dict(result.requirements),
            "unresolved": list(result.unresolved_modules),
            "installed": dict(result.installed),
            "python": result.python_version,
            "notebook": notebook,  # named in the lock's header
            "allow_drift": allow_drift,
            "nb2prod": __version__,
            "sources": dict(sources or {}),  # [lock] index: where named packages resolve from
            "pip_sources": [list(p) for p in pip_sources],  # the host pip's find-links, indexes
        }
        return sha256_bytes(canonical_json(material))

    def load(self, key: str) -> Lock | None:
        try:
            payload = json.loads((self.root / f"{key}.json").read_text(encoding="utf-8"))
            return Lock(
                direct=tuple(payload["direct"]),
                text=payload["text"],
                drift=tuple(Drift(**d) for d in payload["drift"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, key: str, lock: Lock) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        payload = {"direct": list(lock.direct), "text": lock.text,
                   "drift": [vars(d) for d in lock.drift]}  # fmt: skip
        partial = self.root / f".{key}.part"
        partial.write_bytes(canonical_json(payload))
        partial.replace(self.root / f"{key}.json")
