"""The files of a release that only nb2prod reads back, never the served bento: release.json and
examples.json, as frozen models (:func:`~nb2prod.runtime.schema.load` names the file and the field
when one does not fit). Read through :class:`nb2prod.release.reader.Release`."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ..probe.protocol import ProbeExample
from ..runtime.schema import Frozen

# ---------------------------------------------------------------- release.json


class Replaced(Frozen):
    """The release a ``--replace`` overwrote: enough to tell what was lost."""

    release_sha256: str  # sha256 of its release.json
    bento_tag: str
    notebook_sha256: str
    created_at: str


class ColdStart(Frozen):
    """The cold start of the served release in phases, as ``verify`` measured it under
    ``bentoml serve`` (seconds; the phases add up to ``total_s``, docs/service.md "Cold start")."""

    import_s: float  # `bentoml serve` started -> the answering worker has imported service.py
    model_load_s: float  # -> that worker's Handlers.__init__ is done: model and fitted state loaded
    first_answer_s: float  # -> /readyz answered, then the first POST /v1/predict answered
    total_s: float  # process start to the first answer: what deploy/'s startup probe is sized from


class Serving(Frozen):
    """What ``verify`` measured of the served release (sizes deploy/'s probes and memory)."""

    cold_start_s: float | None  # start of `bentoml serve` to /readyz answering
    memory_bytes: int | None  # PSS of the server's processes after answering every example
    cold_start: ColdStart | None = None  # None: not measured (older releases, images)

    @property
    def startup_s(self) -> float | None:
        """The time a pod needs to answer: the phases' total when measured, else to /readyz."""
        return self.cold_start.total_s if self.cold_start is not None else self.cold_start_s


class LineageFile(Frozen):
    """A file the notebook read while it ran: relative to the notebook's directory when inside it."""

    path: str
    size: int
    sha256: str


class Lineage(Frozen):
    """The data the notebook read while it ran (docs/reproducibility.md): the files, hashed, and
    what could not be hashed (URLs, network connections), which makes reuse something to ask for."""

    files: tuple[LineageFile, ...] = ()
    unhashable: tuple[str, ...] = ()


class ReleaseManifest(Frozen):
    """release.json: what the release is, what made it, and the sha256 of every other file."""

    name: str
    version: str
    bento_tag: str
    created_at: str
    git_commit: str | None
    git_dirty: bool | None
    notebook: str
    notebook_sha256: str
    parameters: dict[str, Any]
    config: str | None  # where the configuration came from
    gates_enforced: bool
    python_version: str
    nb2prod_version: str
    bentoml_version: str | None
    cache_key: str
    reused: tuple[str, ...]  # stages taken from the run cache
    allow_drift: bool
    allow_breaking: bool
    contract_verdict: str
    model_fingerprint: str  # what the model is, whatever bytes its serializer wrote this time
    contract_sha256: str
    drift: tuple[dict[str, Any], ...]
    # requirements.lock: packages resolved from their own [lock] index (package -> URL), and the
    # pinned packages made for a GPU (a CPU image does not need them)
    lock_index: dict[str, str] = Field(default_factory=dict)
    accelerator_packages: tuple[str, ...] = ()
    replaced: Replaced | None = None
    serving: Serving | None = None  # None in releases made before nb2prod measured it
    # the data the run read (None in releases made before nb2prod recorded it)
    lineage: Lineage | None = None
    # the distributions the run depends on (imported by the notebook, or pinned by the lock) ->
    # version; a same-version re-package with any of them changed is refused
    packages: dict[str, str] = Field(default_factory=dict)
    files: dict[str, str]  # relative path -> sha256


# ---------------------------------------------------------------- images.jsonl


class PushRecord(Frozen):
    """One line of images.jsonl: an image of this release pushed by ``containerize --push``.

    Appended after the release was sealed, so not among release.json's hashed files; each line
    is checked on reading (its bento tag must be this release's) and the digest is the content
    address of what was pushed, which ``verify --image NAME@DIGEST`` checks against the release."""

    destination: str  # REGISTRY/NAME:TAG pushed to
    digest: str  # sha256:<hex> of the manifest, as the registry reported it
    pinned: str  # REGISTRY/NAME@sha256:<hex>: what deploy-files writes
    image_id: str  # the local image's id
    bento_tag: str
    pushed_at: str
    nb2prod_version: str


# ---------------------------------------------------------------- examples.json


class Examples(Frozen):
    """examples.json: the examples and the notebook's own outputs for them (what verify expects)."""

    generated_by: str  # nb2prod's version and the notebook
    examples: tuple[ProbeExample, ...]
