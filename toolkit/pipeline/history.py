"""What already stands in the output root: the release a run may reuse, refuse to replace, or
compare its contract with.

* :func:`stale`: why the existing release is not up to date (None: it was made from the same
  inputs, data and packages, and is intact: nothing to do).
* :func:`guard_release`: a released version is immutable (SPEC section 5). Packaging it again with a
  different notebook, model or contract is refused unless ``--replace`` is given.
* :func:`guard_packages`: nor with other versions of the packages it depends on.
* :func:`gate_contract`: a contract that breaks callers of the previous release needs a major bump.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from ..adapters import bento
from ..errors import ContractError, Nb2ProdError, ReleaseExistsError, TargetError
from ..release.manifest import ReleaseManifest, Replaced
from ..release.reader import PreviousRelease, Release, load_contract
from ..release.review import ContractDiff, diff_contracts
from ..release.writer import sha256_bytes
from .contract import Contract
from .lineage import data_changed
from .packages import changed_packages, describe_changes


@dataclass(frozen=True)
class Existing:
    """The release already at the destination."""

    release: Release
    manifest: ReleaseManifest
    sha256: str  # of its release.json

    @property
    def directory(self) -> Path:
        return self.release.root

    def replaced(self) -> Replaced:
        return Replaced(
            release_sha256=self.sha256,
            bento_tag=self.manifest.bento_tag,
            notebook_sha256=self.manifest.notebook_sha256,
            created_at=self.manifest.created_at,
        )


def existing(destination: Path) -> Existing | None:
    """The release at ``destination``, or None where there is none nb2prod can read."""
    try:
        release = Release.open(destination)
        assert release.manifest is not None  # a release directory has its release.json
        return Existing(release, release.manifest, release.manifest_sha256())
    except (OSError, TargetError):
        return None


def stale(
    found: Existing | None,
    key: str,
    *,
    notebook_dir: Path,
    installed: Mapping[str, str],
    reuse_unhashed: bool = False,
) -> str | None:
    """Why ``found`` is not up to date; None when it was made from the same inputs (cache key),
    the data it read is unchanged, so are the packages it depends on, and it is intact and built."""
    if found is None:
        return "no release yet"
    if found.manifest.cache_key != key:
        return "the notebook, parameters, config or nb2prod changed"
    reason = data_changed(found.manifest.lineage, notebook_dir, reuse_unhashed)
    if reason:
        return reason
    changes = changed_packages(found.manifest.packages, installed)
    if changes:
        return f"packages changed: {describe_changes(changes)}"
    try:
        if not bento.exists(found.manifest.bento_tag):
            return f"its bento {found.manifest.bento_tag} is not in the store"
        found.release.check_integrity()
    except (OSError, Nb2ProdError) as exc:
        return f"the release is not intact ({exc})"
    return None


def guard_packages(found: Existing | None, installed: Mapping[str, str], replace: bool) -> None:
    """Refuse to rewrite a released version whose packages changed (unless ``--replace``): never
    a new bento under an old version made with other versions of what it depends on."""
    if found is None or replace or not found.manifest.packages:
        return
    changes = changed_packages(found.manifest.packages, installed)
    if not changes:
        return
    old = found.manifest
    raise ReleaseExistsError(
        f"{found.directory}: {old.name} {old.version} was made with other versions of packages "
        f"it depends on: {describe_changes(changes)} (a released version is immutable)",
        hint=f"Bump `version` in the config (e.g. to {next_patch(old.version)}), pass --replace "
        "to replace the release (recorded in release.json), or install the versions it was "
        "made with again.",
    )


def guard_release(
    found: Existing | None,
    *,
    notebook_sha256: str,
    model_fingerprint: str | None = None,
    contract_sha256: str | None = None,
    replace: bool,
) -> None:
    """Refuse to change a released version; ``None`` facts are not known yet and not compared."""
    if found is None or replace:
        return
    old = found.manifest
    changed = [
        what
        for what, before, now in (
            ("notebook", old.notebook_sha256, notebook_sha256),
            ("model", old.model_fingerprint, model_fingerprint),
            ("contract", old.contract_sha256, contract_sha256),
        )
        if now is not None and before != now
    ]
    if changed:
        raise ReleaseExistsError(
            f"{found.directory}: {old.name} {old.version} is already released, and this run "
            f"changes its {', '.join(changed)} (a released version is immutable)",
            hint=f"Bump `version` in the config (e.g. to {next_patch(old.version)}), or pass "
            "--replace to replace the release (recorded in release.json).",
        )


def next_patch(version: str) -> str:
    v = Version(version)
    return f"{v.major}.{v.minor}.{v.micro + 1}"


def fitted_fingerprint(model: tuple[Path, str], artifacts: Iterable[tuple[str, Path, str]]) -> str:
    """What the model and its fitted state are: the model's fingerprint alone when the release has
    no fitted state (as before there was any), else one over the model's and each named piece's.
    A refitted scaler is a different release, even when the model is the same."""
    fingerprint = model_fingerprint(*model)
    pieces = sorted((name, model_fingerprint(path, fmt)) for name, path, fmt in artifacts)
    if not pieces:
        return fingerprint
    digest = hashlib.sha256(fingerprint.encode())
    for name, piece in pieces:
        digest.update(f"\n{name} {piece}".encode())
    return digest.hexdigest()


def model_fingerprint(path: Path, fmt: str) -> str:
    """What the model *is*, independent of how a serializer laid out its bytes this time.

    A pickle of the same objects is byte-identical; a skops archive is not (zip timestamps, and
    member names and ``__id__`` values made from memory addresses), so its members are hashed by
    content, with the address-based names in schema.json replaced by the content hash of the file
    they name and each address by its order of first appearance.
    """
    data = path.read_bytes()
    if fmt != "skops":
        return sha256_bytes(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    names = {n: hashlib.sha256(b).hexdigest() for n, b in members.items() if n != "schema.json"}
    schema = members.get("schema.json", b"").decode()
    schema = re.sub(r"[\w.-]+\.npy", lambda m: names.get(m.group(0), m.group(0)), schema)
    addresses: dict[str, str] = {}
    for address in re.findall(r'"__id__": (\d+)', schema):
        addresses.setdefault(address, f"#{len(addresses)}")
    if addresses:
        pattern = r"\b(" + "|".join(map(re.escape, addresses)) + r")\b"
        schema = re.sub(pattern, lambda m: addresses[m.group(1)], schema)
    digest = hashlib.sha256(schema.encode())
    for content_hash in sorted(names.values()):
        digest.update(content_hash.encode())
    return digest.hexdigest()


def gate_contract(
    baseline: PreviousRelease | None, contract: Contract, version: str, allow_breaking: bool
) -> ContractDiff:
    """The contract's changes since ``baseline``; breaking ones need a major version bump."""
    if baseline is None:
        return ContractDiff(())
    diff = diff_contracts(load_contract(baseline.directory), contract.to_json())
    if diff.breaking and not allow_breaking and not major_bump(baseline.version, version):
        raise ContractError(
            f"the contract breaks callers of {baseline.version} ({baseline.directory}), and "
            f"{version} is not a new major version:\n{diff.to_text()}",
            hint=f"Release it as {Version(version).major + 1}.0.0 (the `version` in the config), "
            "change the contract back, or pass --allow-breaking (recorded in the release).",
        )
    return diff


def major_bump(old: str, new: str) -> bool:
    before, after = Version(old), Version(new)
    if before.major == after.major == 0:  # semver: anything may change in 0.x; a minor bump will do
        return after.minor > before.minor
    return after.major > before.major


def previous_metrics(baseline: PreviousRelease | None) -> tuple[str, dict[str, float]] | None:
    """The evaluation metrics of ``baseline``, for the regression gate."""
    if baseline is None:
        return None
    try:
        return baseline.version, Release.open(Path(baseline.directory)).metrics
    except (OSError, TargetError):
        return None  # an earlier release without a readable report has nothing to compare
