"""``containerize --push``: the built image pushed to a registry, its digest recorded in the release.

The digest is the sha256 of the image's manifest as the registry reports it (``skopeo inspect``
where skopeo is installed, else what ``podman push --digestfile`` wrote). A release directory
keeps it in ``images.jsonl`` (:data:`~nb2prod.release.writer.IMAGES_JSONL`), one line per push,
appended after the release was sealed: release.json and its hashes are not touched, and
``nb2prod deploy-files`` pins the image by that digest (docs/deploy.md).

TLS verification is never switched off silently: a plain-HTTP registry (one on loopback) needs
``--no-tls-verify`` said out loud.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..adapters import container
from ..errors import ContainerError
from ..release.reader import Release
from ..release.writer import IMAGES_JSONL, append_record
from ..version import __version__

# REGISTRY[:PORT]/NAME[/NAME...][:TAG], the distribution spec's grammar for names and tags
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_NAME = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
EXAMPLE = "registry.example.com/team/iris-classifier:1.0.0 or 127.0.0.1:5000/iris-classifier"


@dataclass(frozen=True)
class Pushed:
    destination: str  # REGISTRY/NAME:TAG
    digest: str  # sha256:<hex>
    pinned: str  # REGISTRY/NAME@sha256:<hex>
    reported_by: str
    recorded: Path | None  # images.jsonl, when the target was a release directory


def destination_reference(given: str, default_tag: str | None = None) -> str:
    """``--push REF`` checked, with ``default_tag`` (the release's version) when it has no tag."""
    where = f"--push {given}"
    if "@" in given:
        raise ContainerError(
            f"{where}: has a digest; a push needs a tag (the registry answers the digest)",
            hint=f"Give REGISTRY/NAME[:TAG], e.g. {EXAMPLE}.",
        )
    host, slash, rest = given.partition("/")
    if not slash or not ("." in host or ":" in host or host == "localhost"):
        raise ContainerError(
            f"{where}: names no registry (the part before the first / must be a host, "
            "host:port or localhost)",
            hint=f"Give REGISTRY/NAME[:TAG], e.g. {EXAMPLE}; a short name would be resolved "
            "through registries.conf, which may not be the registry you mean.",
        )
    name, colon, tag = rest.rpartition(":") if ":" in rest else (rest, "", "")
    if not _NAME.fullmatch(name):
        raise ContainerError(
            f"{where}: `{name}` is not a repository name (lower-case letters, digits and "
            "single . _ - between them, / between parts)",
            hint=f"e.g. {EXAMPLE}.",
        )
    if colon and not _TAG.fullmatch(tag):
        raise ContainerError(
            f"{where}: `{tag}` is not a tag (letters, digits, _ . -, at most 128, not starting "
            "with . or -)",
            hint=f"e.g. {EXAMPLE}.",
        )
    if not colon:
        if default_tag is None:
            return given
        tag = re.sub(r"[^\w.-]", "-", default_tag).lstrip(".-") or "latest"
    return f"{host}/{name}:{tag}"


def pinned_reference(reference: str, digest: str) -> str:
    """``REGISTRY/NAME@DIGEST`` of ``REGISTRY/NAME:TAG`` (a port's colon is kept)."""
    repository = reference.split("@", 1)[0]
    head, _, last = repository.rpartition("/")
    if ":" in last:
        repository = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    return f"{repository}@{digest}"


def push_image(
    release: Release,
    *,
    local: str,
    image_id: str,
    destination: str,
    tls_verify: bool,
    backend: str | None,
) -> Pushed:
    """Push the image ``local`` of ``release`` to ``destination`` and record it in the release."""
    destination = destination_reference(destination, release.metadata.release.version)
    engine = container.choose(backend)
    result = container.push(engine, local, destination, tls_verify=tls_verify)
    pinned = pinned_reference(destination, result.digest)
    recorded = None
    if release.directory is not None:
        recorded = append_record(
            release.directory,
            IMAGES_JSONL,
            {
                "destination": destination,
                "digest": result.digest,
                "pinned": pinned,
                "image_id": image_id,
                "bento_tag": release.bento_tag,
                "pushed_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
                "nb2prod_version": __version__,
            },
        )
    return Pushed(destination, result.digest, pinned, result.reported_by, recorded)
