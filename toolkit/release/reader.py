"""One reader of a release: :class:`Release`, the handle every command reads a release through.

A TARGET (SPEC section 4) is a release directory, a file in it, or a bento tag; :func:`resolve`
turns it into a :class:`Release`. Its files are read through their schemas (a file that does not
fit names the file and the field), and :meth:`Release.check_integrity` refuses a release whose
files are not the ones nb2prod packaged. No command parses a release file itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from packaging.version import InvalidVersion, Version

from ..adapters import bento
from ..errors import SignatureError, TargetError
from ..probe.protocol import ProbeExample
from ..runtime import signature as served
from ..runtime.schema import (
    Frozen,
    ModelManifest,
    MonitoringPlan,
    SchemaMismatch,
    ServiceMetadata,
    load,
)
from . import signature
from .manifest import Examples, PushRecord, ReleaseManifest
from .writer import IMAGES_JSONL, RELEASE_JSON, sha256_bytes, sha256_file

M = TypeVar("M", bound=Frozen)

CONTRACT_JSON = "contract.json"
EXAMPLES_JSON = "examples.json"
METADATA_JSON = "service/metadata.json"
MONITORING_JSON = "service/monitoring.json"
MODEL_JSON = "model/model.json"
REPORT_JSON = "evaluation/report.json"
RUNTIME_DIR = "service/runtime"
SBOM_JSON = "sbom.cdx.json"  # CycloneDX SBOM of requirements.lock (docs/release.md)
REPACKAGE = "Re-package it with this version of nb2prod (nb2prod package)."

Source = Literal["directory", "bento", "staging"]


@dataclass(frozen=True)
class Release:
    """A release on disk: a release directory, a bento's copy of its files, or a release being
    packaged (its staging directory, before release.json is written).

    Made by :meth:`open`, :meth:`of_bento`, :meth:`staged` or :func:`resolve`. The files are read
    on first use and kept: the handle is for one command's reading of one release.
    """

    root: Path  # where contract.json, examples.json, service/ and model/ are
    bento_tag: str
    source: Source
    manifest: ReleaseManifest | None  # release.json; None for a bento's copy or a staged release

    @classmethod
    def open(cls, directory: Path) -> Release:
        """A release directory; its release.json is read at once (a mismatch names the field)."""
        path = directory / RELEASE_JSON
        if not path.is_file():
            raise TargetError(f"{directory}: not an nb2prod release (no {RELEASE_JSON})")
        manifest = _load(ReleaseManifest, path)
        return cls(directory, manifest.bento_tag, "directory", manifest)

    @classmethod
    def of_bento(cls, tag: str) -> Release:
        """The release files a bento in the store carries (``src/``; it has no release.json)."""
        return cls(bento.path_of(tag) / "src", tag, "bento", None)

    @classmethod
    def staged(cls, root: Path, bento_tag: str) -> Release:
        """A release being packaged: built as ``bento_tag``, release.json not written yet."""
        return cls(root, bento_tag, "staging", None)

    @property
    def directory(self) -> Path | None:
        """The release directory, or None for a bento or a staged release."""
        return self.root if self.source == "directory" else None

    @property
    def files(self) -> dict[str, str]:
        """Every file release.json lists (relative path -> recorded sha256); none without it."""
        return dict(self.manifest.files) if self.manifest is not None else {}

    @property
    def runtime_files(self) -> dict[str, str]:
        """The serving runtime's copy (path relative to service/runtime -> recorded sha256), as
        service/metadata.json records it."""
        return dict(self.metadata.runtime.files)

    def path(self, relative: str) -> Path:
        return self.root / relative

    # ------------------------------------------------------------ the files, typed

    @cached_property
    def metadata(self) -> ServiceMetadata:
        """service/metadata.json: release info, service switches, runtime hashes."""
        return self._read(ServiceMetadata, METADATA_JSON)

    @cached_property
    def monitoring(self) -> MonitoringPlan:
        """service/monitoring.json: what the served model is watched with."""
        return self._read(MonitoringPlan, MONITORING_JSON)

    @cached_property
    def model(self) -> ModelManifest:
        """model/model.json: how the model and its fitted state are stored."""
        return self._read(ModelManifest, MODEL_JSON)

    @cached_property
    def examples(self) -> tuple[ProbeExample, ...]:
        """examples.json: the examples and the notebook's own outputs for them."""
        return self._read(Examples, EXAMPLES_JSON).examples

    @cached_property
    def contract(self) -> dict[str, Any]:
        """contract.json: JSON Schema of Input and Output, examples, contract_version, sha256.

        Read as the document reviewers diff (:mod:`nb2prod.release.review`), not through a
        model: ``contract diff`` compares contracts of any nb2prod version."""
        return read_contract(self.path(CONTRACT_JSON))

    @cached_property
    def metrics(self) -> dict[str, float]:
        """The evaluation metrics (evaluation/report.json's ``metrics``)."""
        path = self.path(REPORT_JSON)
        report = _read_json(path, self.root)
        metrics = report.get("metrics") if isinstance(report, dict) else None
        if not isinstance(metrics, dict):
            raise TargetError(f"{path}: has no `metrics` mapping")
        return dict(metrics)

    @cached_property
    def python_version(self) -> str:
        """The Python the release was packaged for: release.json's, or a bento's bentofile.yaml."""
        if self.manifest is not None:
            return self.manifest.python_version
        path = self.path("bentofile.yaml")
        try:
            return str(yaml.safe_load(path.read_text(encoding="utf-8"))["docker"]["python_version"])
        except FileNotFoundError:
            raise TargetError(f"{path}: missing; is {self.root} an nb2prod release?") from None
        except (yaml.YAMLError, TypeError, KeyError):
            raise TargetError(f"{path}: has no docker.python_version") from None

    @property
    def requirements_lock(self) -> Path:
        """The release's requirements.lock, or a bento's copy of it (env/python)."""
        if self.source == "bento":
            return self.root.parent / "env" / "python" / "requirements.txt"
        return self.path("requirements.lock")

    @cached_property
    def pushed_images(self) -> tuple[PushRecord, ...]:
        """The images ``containerize --push`` pushed of this release (images.jsonl), oldest
        first; none for a bento or a staged release. A line that does not fit, or names another
        bento, is refused with its line number."""
        path = self.path(IMAGES_JSONL)
        if self.directory is None or not path.is_file():
            return ()
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = PushRecord.model_validate_json(line)
            except ValueError as exc:
                raise TargetError(
                    f"{path}:{number}: not a record of a pushed image ({str(exc).splitlines()[0]})",
                    hint="Remove the line; `nb2prod containerize --push` appends a new one.",
                ) from None
            if record.bento_tag != self.bento_tag:
                raise TargetError(
                    f"{path}:{number}: records an image of bento {record.bento_tag}, not of "
                    f"this release's {self.bento_tag}",
                    hint="Remove the line: it belongs to another release.",
                )
            records.append(record)
        return tuple(records)

    def manifest_sha256(self) -> str:
        """sha256 of release.json itself (recorded by the release a ``--replace`` replaces)."""
        return sha256_bytes(self.path(RELEASE_JSON).read_bytes())

    # ------------------------------------------------------------ integrity

    def check_integrity(self) -> None:
        """Refuse a release whose files are not the ones nb2prod packaged: every file release.json
        lists must have its recorded sha256 (a release directory), the serving runtime's copy
        in service/runtime/ must be the one service/metadata.json records (also a bento's), and
        the bento must be this release's (:meth:`check_bento`)."""
        for relative, recorded in sorted(self.files.items()):
            path = self.path(relative)
            if not path.is_file():
                raise TargetError(f"{path}: listed in {RELEASE_JSON} but missing")
            if sha256_file(path) != recorded:
                raise TargetError(
                    f"{path}: sha256 differs from the one {RELEASE_JSON} records; the release "
                    "was modified after packaging"
                )
        runtime = self.path(RUNTIME_DIR)
        for relative, recorded in sorted(self.runtime_files.items()):
            path = runtime / relative
            if not path.is_file():
                raise TargetError(
                    f"{path}: part of the runtime the release was built with ({METADATA_JSON}), "
                    "but missing"
                )
            if sha256_file(path) != recorded:
                raise TargetError(
                    f"{path}: not the runtime the release was built with (sha256 differs from "
                    f"the one {METADATA_JSON} records)"
                )
        self.check_bento()

    def check_signature(self, public_key: Path) -> None:
        """Refuse a release not signed by ``public_key``'s key as it is now (the file named),
        then check its integrity (:meth:`check_integrity`): the signed release.json vouches
        for the hashes the bento is held to. A release directory is checked whole
        (:mod:`.signature`); a bento, the files it carries against its copy of release.sig."""
        if self.source == "staging":
            raise SignatureError(f"{self.root}: a release being packaged is not signed yet")
        if self.source == "directory":
            signature.check_directory(self.root, public_key)
        else:
            key = signature.read_public_key(public_key)
            try:
                served.check_files(
                    self.root,
                    served.carried_files(self.metadata),
                    key,
                    f"--public-key {public_key}",
                )
            except served.SignatureError as exc:
                raise SignatureError(str(exc), hint=signature.SIGN_HINT) from None
        self.check_integrity()

    def check_bento(self) -> None:
        """Refuse a bento that is not this release's: service/metadata.json, every file it
        records and the runtime copy must be in the bento with the sha256 release.json records
        (a release directory), or metadata.json records (a bento). Catches a release.json pointed
        at another service's bento and a bento edited in the store (the service's own start check
        catches the second too). A bento not in the store is left to the command that needs it."""
        if self.source == "staging" or not bento.exists(self.bento_tag):
            return
        src = self if self.source == "bento" else Release.of_bento(self.bento_tag)
        carried: dict[str, str | None] = {
            METADATA_JSON: None,  # what records the others: release.json records it
            **src.metadata.carried(),
        }
        records = RELEASE_JSON if self.source == "directory" else METADATA_JSON
        for relative, own in sorted(carried.items()):
            expected = self.files.get(relative) if self.source == "directory" else own
            path = src.path(relative)
            if self.source == "directory" and expected is None:
                raise TargetError(
                    f"bento {self.bento_tag}: carries {relative}, which {RELEASE_JSON} does not "
                    "list: it is not this release's bento"
                )
            if expected is None:
                continue
            if not path.is_file():
                raise TargetError(f"{path}: missing from bento {self.bento_tag}")
            if sha256_file(path) != expected:
                raise TargetError(
                    f"{path}: sha256 differs from the one {records} records; bento "
                    f"{self.bento_tag} is not the one packaged with this release, or was "
                    "modified after packaging"
                )

    def _read(self, model: type[M], relative: str) -> M:
        path = self.path(relative)
        if not path.is_file():
            raise TargetError(f"{path}: missing; is {self.root} an nb2prod release?")
        return _load(model, path)


def _load(model: type[M], path: Path) -> M:
    try:
        return load(model, path)
    except SchemaMismatch as exc:
        raise TargetError(str(exc), hint=REPACKAGE) from None


def _read_json(path: Path, root: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TargetError(f"{path}: missing; is {root} an nb2prod release?") from None
    except json.JSONDecodeError as exc:
        raise TargetError(f"{path}: not valid JSON ({exc})") from None


def resolve(target: str) -> Release:
    """TARGET as a :class:`Release`: a release directory, a file in one, or a bento tag."""
    path = Path(target)
    if path.exists():
        return Release.open(path if path.is_dir() else path.parent)
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
    return Release.of_bento(target)


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
    for path in root.glob("*/" + RELEASE_JSON):
        try:
            manifest = _load(ReleaseManifest, path)
            candidate = Version(manifest.version)
        except (OSError, TargetError, InvalidVersion):
            continue  # not a release nb2prod can read; never a rollback target
        earlier = candidate <= current if include_same else candidate < current
        if manifest.name == name and earlier and manifest.bento_tag:
            found.append(
                (candidate, PreviousRelease(manifest.version, str(path.parent), manifest.bento_tag))
            )
    return max(found, key=lambda pair: pair[0])[1] if found else None


def load_contract(target: str) -> dict[str, Any]:
    """contract.json of a release directory, the file itself, or a bento tag's copy."""
    path = Path(target)
    if path.is_dir():
        path = path / CONTRACT_JSON
    elif not path.exists():
        if ":" not in target or not bento.exists(target):
            raise TargetError(
                f"{target}: no such contract.json, release directory or bento",
                hint="Give a release directory, its contract.json, or a tag from `bentoml list`.",
            )
        path = bento.path_of(target) / "src" / CONTRACT_JSON
    return read_contract(path)


def read_contract(path: Path) -> dict[str, Any]:
    """A contract.json, checked to be one (input, output and sha256)."""
    data = _read_json(path, path.parent)
    if not isinstance(data, dict) or not {"input", "output", "sha256"} <= set(data):
        raise TargetError(f"{path}: not an nb2prod contract (needs input, output and sha256)")
    return data
