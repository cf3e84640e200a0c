"""CycloneDX (cyclonedx-python-lib): the SBOM of a release's locked environment.

The lock is the environment: every package uv pinned, with the sha256 of each of its files and,
from uv's ``# via`` annotations, what requires it. The SBOM says the same in CycloneDX 1.6 JSON
(a component per pin with its package URL and hashes, the release as the BOM's subject, the
dependency graph), so scanners and registries that read SBOMs (Trivy, Grype, Dependency-Track)
read a release's environment without a lock parser of their own.

The bytes are a function of the lock and the release's name and version: no timestamp (optional
in CycloneDX), and a serial number derived from the content, so re-packaging the same lock gives
the same file.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentScope, ComponentType
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from packageurl import PackageURL

SCHEMA = SchemaVersion.V1_6  # what JsonV1Dot6 writes
SERIAL_NAMESPACE = uuid.UUID("0d7b5b0e-4f4e-4d8e-9a57-6e62b2d0c1a5")  # nb2prod's SBOMs

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)")
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass
class Pin:
    """One package of the lock: its version, the sha256 of each file, what requires it."""

    name: str  # normalised (PEP 503)
    version: str
    hashes: list[str] = field(default_factory=list)
    required_by: list[str] = field(default_factory=list)  # normalised names from `# via`


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> dict[str, Pin]:
    """The pins of a ``uv pip compile --generate-hashes`` lock (nb2prod's requirements.lock)."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    in_via = False
    for line in text.splitlines():
        if (match := _PIN.match(line)) is not None:
            current = pins.setdefault(
                normalise(match.group(1)), Pin(normalise(match.group(1)), match.group(2))
            )
            current.hashes.extend(_HASH.findall(line))
            in_via = False
            continue
        if not line.startswith(" "):  # a comment of the header, an --extra-index-url line
            current, in_via = None, False
            continue
        if current is None:
            continue
        stripped = line.strip()
        current.hashes.extend(_HASH.findall(stripped))
        if stripped.startswith("# via"):
            rest = stripped.removeprefix("# via").strip()
            in_via = not rest  # "# via" alone: the names follow, one a line
            if rest:
                current.required_by.append(normalise(rest))
        elif in_via and stripped.startswith("#   "):
            via = stripped.removeprefix("#").strip()
            if not via.startswith("-"):  # `-c kernel-constraints`, `-r requirements.in`
                current.required_by.append(normalise(via.split()[0]))
    return pins


def sbom(name: str, version: str, lock: str, direct: Mapping[str, str], tool_version: str) -> bytes:
    """CycloneDX 1.6 JSON of ``lock``: the release ``name`` ``version`` depends on ``direct``
    (normalised name -> version), each pin on what uv says it requires."""
    pins = parse_lock(lock)
    components = {
        pin.name: Component(
            type=ComponentType.LIBRARY,
            name=pin.name,
            version=pin.version,
            purl=PackageURL(type="pypi", name=pin.name, version=pin.version),
            bom_ref=f"pkg:pypi/{pin.name}@{pin.version}",
            scope=ComponentScope.REQUIRED,
            hashes=[
                HashType(alg=HashAlgorithm.SHA_256, content=h) for h in sorted(set(pin.hashes))
            ],
            properties=[Property(name="nb2prod:direct", value="true")]
            if pin.name in direct
            else [],
        )
        for pin in pins.values()
    }
    subject = Component(
        type=ComponentType.APPLICATION,
        name=name,
        version=version,
        bom_ref=f"nb2prod:{name}@{version}",
        description=f"{name} {version}: the service's locked environment (requirements.lock)",
    )
    serial = uuid.uuid5(SERIAL_NAMESPACE, json.dumps([name, version, lock]))
    bom = Bom(components=components.values(), serial_number=serial)
    bom.metadata.component = subject
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="nb2prod", version=tool_version)
    )
    bom.register_dependency(subject, [components[n] for n in sorted(direct) if n in components])
    for pin in pins.values():
        needs = sorted(p.name for p in pins.values() if pin.name in p.required_by)
        bom.register_dependency(components[pin.name], [components[n] for n in needs])
    document = json.loads(JsonV1Dot6(bom).output_as_string())
    document["metadata"].pop("timestamp", None)  # the same lock, the same bytes
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()
