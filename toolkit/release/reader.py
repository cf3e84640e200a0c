"""Resolve a TARGET (SPEC section 4): a release directory, a file in it, or a bento tag."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from packaging.version import InvalidVersion, Version

from ..adapters import bento
from ..errors import TargetError
from ..runtime.schema import Frozen, SchemaMismatch, ServiceMetadata, load
from .writer import RELEASE_JSON, sha256_file

M = TypeVar("M", bound=Frozen)


@dataclass(frozen=True)
class Target:
    bento_tag: str
    root: Path  # where examples.json and service/metadata.json are
    release_dir: Path | None  # None when the target was a bento tag

    def read_json(self, relative: str) -> Any:
        path = self.root / relative
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TargetError(f"{path}: missing; is {self.root} an nb2prod release?") from None
        except json.JSONDecodeError as exc:
            raise TargetError(f"{path}: not valid JSON ({exc})") from None

    def read(self, model: type[M], relative: str) -> M:
        """A release file parsed as its schema; a mismatch names the file and the field."""
        path = self.root / relative
        if not path.is_file():
            raise TargetError(f"{path}: missing; is {self.root} an nb2prod release?")
        try:
            return load(model, path)
        except SchemaMismatch as exc:
            raise TargetError(
                str(exc), hint="Re-package it with this version of nb2prod (nb2prod package)."
            ) from None

    def metadata(self) -> ServiceMetadata:
        return self.read(ServiceMetadata, "service/metadata.json")


def resolve(target: str) -> Target:
    path = Path(target)
    if path.exists():
        release_dir = path if path.is_dir() else path.parent
        manifest = release_dir / RELEASE_JSON
        if not manifest.is_file():
            raise TargetError(f"{release_dir}: not an nb2prod release (no {RELEASE_JSON})")
        data = json.loads(manifest.read_text(encoding="utf-8"))
        return Target(bento_tag=data["bento_tag"], root=release_dir, release_dir=release_dir)
    if ":" not in target and "/" not in target and "." not in target:
        raise TargetError(
            f"{target}: no such release directory, and not a bento tag (name:version)",
            hint="Give a release directory such as dist/iris-classifier-1.0.0 or a tag from "
            "`bentoml list`.",
        )
    if "/" in target or bento.info(target) is None:
        raise TargetError(
            f"{target}: no such release directory or bento",
            hint="`bentoml list` shows the bentos in the store (BENTOML_HOME).",
        )
    return Target(bento_tag=target, root=bento.path_of(target) / "src", release_dir=None)


@dataclass(frozen=True)
class PreviousRelease:
    """The newest earlier release of the same service, the target of a rollback."""

    version: str
    directory: str
    bento_tag: str


def previous_release(
    root: Path, name: str, version: str, *, include_same: bool = False
) -> PreviousRelease | None:
    """The release of ``name`` in ``root`` with the highest version below ``version`` (or equal
    to it, with ``include_same``: the release a new package of that version would replace)."""
    if not root.is_dir():
        return None
    current = Version(version)
    found: list[tuple[Version, PreviousRelease]] = []
    for manifest in root.glob("*/" + RELEASE_JSON):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            candidate = Version(data["version"])
        except (OSError, ValueError, KeyError, InvalidVersion):
            continue  # not a release nb2prod can read; never a rollback target
        earlier = candidate <= current if include_same else candidate < current
        if data.get("name") == name and earlier and data.get("bento_tag"):
            found.append(
                (
                    candidate,
                    PreviousRelease(data["version"], str(manifest.parent), data["bento_tag"]),
                )
            )
    return max(found, key=lambda pair: pair[0])[1] if found else None


def load_contract(target: str) -> dict[str, Any]:
    """contract.json of a release directory, the file itself, or a bento tag's copy."""
    path = Path(target)
    if path.is_dir():
        path = path / "contract.json"
    elif not path.exists():
        if ":" not in target or not bento.exists(target):
            raise TargetError(
                f"{target}: no such contract.json, release directory or bento",
                hint="Give a release directory, its contract.json, or a tag from `bentoml list`.",
            )
        path = bento.path_of(target) / "src" / "contract.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(f"{path}: missing; is {path.parent} an nb2prod release?") from None
    except json.JSONDecodeError as exc:
        raise TargetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not {"input", "output", "sha256"} <= set(data):
        raise TargetError(f"{path}: not an nb2prod contract (needs input, output and sha256)")
    return data


def check_release_files(target: Target) -> None:
    """Every file listed in release.json must still have its recorded sha256."""
    assert target.release_dir is not None
    listed = target.read_json("release.json")["files"]
    for relative, recorded in sorted(listed.items()):
        path = target.release_dir / relative
        if not path.is_file():
            raise TargetError(f"{path}: listed in release.json but missing")
        if sha256_file(path) != recorded:
            raise TargetError(
                f"{path}: sha256 differs from the one release.json records; the release was "
                "modified after packaging"
            )
