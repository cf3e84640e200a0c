"""Stage containerize: a release (or bento) in, an OCI image in local storage out.

nb2prod writes its own Containerfile (``templates/container/Containerfile.j2``) rather than
using BentoML's: it installs the release's hashed lock, wheels only, into a venv on a plain
Debian + Python base, so the image has no compiler toolchain and needs no network beyond the
package index. The private CA bundle and the index URL reach the build as secrets, mounted for
the install step only and never written into a layer. The image runs as a non-root user, has a
HEALTHCHECK on ``/readyz`` and OCI labels naming the release it was made from.

The release directory is only read: the build context (Containerfile, requirements.lock and a
copy of the bento) is assembled elsewhere, kept with ``--context DIR`` or on failure.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from ..adapters import bento, container
from ..adapters.container import UID
from ..adapters.pip_config import PipSettings, host_pip_settings
from ..errors import ContainerError, TargetError
from ..progress import Progress, Silent, stage
from ..release.reader import SBOM_JSON, resolve
from ..resources import template_dir
from ..runtime.schema import ReleaseInfo
from ..version import __version__
from .base import DEFAULT_BASE, BaseImageRequest, ensure_base_image

TEMPLATES = template_dir("container")
CONTAINERFILE = "Containerfile"
BENTO_IN_IMAGE = "/opt/bento"  # where Containerfile.j2 copies the bento (its src/ is the release's)


@dataclass(frozen=True)
class ImageOptions:
    """How to build the image; every field has a default that works on a Debian 12 machine."""

    backend: str | None = None  # None: docker if its daemon answers, else podman, else buildah
    base_image: str | None = None  # None: DEFAULT_BASE, built by `nb2prod base-image` if missing
    ca_bundle: Path | None = None  # None: the CA bundle the host's pip uses, when it has one
    index_url: str | None = None  # None: the host pip's index, else pip's default
    reference: str | None = None  # None: localhost/<name>:<version>
    context_dir: Path | None = None  # keep the build context here (default: a temporary one)


@dataclass(frozen=True)
class ContainerImage:
    reference: str
    image_id: str
    size_bytes: int
    backend: str
    backend_why: str
    base_image: str
    bento_tag: str
    labels: Mapping[str, str]
    ca_bundle: Path | None
    ca_source: str  # "--ca-bundle", "PIP_CERT", "global.cert", or "" when none
    seconds: float
    context_dir: Path | None  # where the build context was kept, when it was


@dataclass(frozen=True)
class ContainerfileContext:
    """Everything the Containerfile template uses (rendered strictly: nothing may be missing)."""

    nb2prod_version: str
    bento_tag: str
    base_image: str
    python: str  # major.minor the lock was resolved for
    uid: int
    port: int
    labels: list[tuple[str, str]]  # (key, value quoted for a Dockerfile LABEL)


def containerize(
    target: str, options: ImageOptions | None = None, progress: Progress | None = None
) -> ContainerImage:
    """Build an image of ``target`` (a release directory or a bento tag)."""
    options = options or ImageOptions()
    progress = progress or Silent()
    started = time.perf_counter()
    release = resolve(target)
    release.check_integrity()
    metadata = release.metadata.release
    pip = host_pip_settings() if not (options.ca_bundle and options.index_url) else None
    ca_bundle, ca_source = _ca_bundle(options.ca_bundle, pip)
    index_url = options.index_url or (pip.index_url if pip else None)
    context_dir = _context_dir(options.context_dir)
    bento_dir = bento.path_of(release.bento_tag)  # before the engine: a base build takes 40 s
    engine = container.choose(options.backend)
    progress.note(f"backend: {engine.name} ({engine.why})")
    if ca_bundle:
        progress.note(f"CA bundle: {ca_bundle} (from {ca_source}), passed as a build secret")
    base = options.base_image or DEFAULT_BASE
    with stage(progress, "base", base) as s:
        if options.base_image is None:
            made = ensure_base_image(BaseImageRequest(reference=base), progress, engine)
            s.detail = ("built" if made.built else "reused") + f", {made.size_bytes / 1e6:.0f} MB"
        elif not container.image_exists(engine, base):
            s.detail = f"not in {engine.name}'s local storage: the build will try to pull it"
        else:
            s.detail = "in local storage"
    name, version = metadata.name, metadata.version
    reference = options.reference or f"localhost/{name}:{version}"
    labels = image_labels(
        metadata,
        bento_tag=release.bento_tag,
        base_image=base,
        created=_now(),
        sbom=(bento_dir / "src" / SBOM_JSON).is_file(),
    )
    work = Path(tempfile.mkdtemp(prefix="nb2prod-image-"))
    context = context_dir or work / "context"
    try:
        with stage(progress, "context", str(context)):
            _write_context(
                context,
                containerfile=render_containerfile(
                    ContainerfileContext(
                        nb2prod_version=__version__,
                        bento_tag=release.bento_tag,
                        base_image=base,
                        python=".".join(release.python_version.split(".")[:2]),
                        uid=UID,
                        port=container.SERVICE_PORT,
                        labels=[(k, dockerfile_quote(v)) for k, v in sorted(labels.items())],
                    )
                ),
                lock=release.requirements_lock,
                bento_dir=bento_dir,
            )
        secrets = {"ca": ca_bundle} if ca_bundle else {}
        if index_url:  # may carry credentials: a secret, like the CA bundle
            index_file = work / "index-url"
            index_file.touch(mode=0o600)
            index_file.write_text(index_url, encoding="utf-8")
            secrets["index"] = index_file
        with stage(progress, "image", f"{engine.name} build -t {reference}") as s:
            container.build(
                engine,
                context=context,
                containerfile=context / CONTAINERFILE,
                reference=reference,
                secrets=secrets,
                log=work / "build.log",
                on_step=progress.note,
            )
            info = container.inspect_image(engine, reference)
            s.detail = f"{info.size_bytes / 1e6:.0f} MB, id {info.image_id[:12]}"
    except BaseException:
        (work / "index-url").unlink(missing_ok=True)
        raise  # keep the context and the log for the error's hint
    shutil.rmtree(work, ignore_errors=True)
    return ContainerImage(
        reference=reference,
        image_id=info.image_id,
        size_bytes=info.size_bytes,
        backend=engine.name,
        backend_why=engine.why,
        base_image=base,
        bento_tag=release.bento_tag,
        labels=info.labels,
        ca_bundle=ca_bundle,
        ca_source=ca_source,
        seconds=time.perf_counter() - started,
        context_dir=context_dir,
    )


def image_labels(
    metadata: ReleaseInfo, *, bento_tag: str, base_image: str, created: str, sbom: bool = False
) -> dict[str, str]:
    """OCI annotations (title, version, revision, created, ...) and nb2prod's own labels;
    ``nb2prod.sbom`` is where the image keeps the CycloneDX SBOM, when the bento carries one."""
    labels = {
        "org.opencontainers.image.title": metadata.name,
        "org.opencontainers.image.version": metadata.version,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.description": f"{metadata.name} {metadata.version}, "
        f"packaged by nb2prod {__version__}",
        "org.opencontainers.image.base.name": base_image,
        "nb2prod.name": metadata.name,
        "nb2prod.version": metadata.version,
        "nb2prod.bento-tag": bento_tag,
        "nb2prod.contract-sha256": metadata.contract_sha256,
        "nb2prod.notebook-sha256": metadata.notebook_sha256,
        "nb2prod.model-sha256": metadata.model_sha256,
    }
    if sbom:  # releases packaged before nb2prod wrote one have none
        labels["nb2prod.sbom"] = f"{BENTO_IN_IMAGE}/src/{SBOM_JSON}"
    if metadata.git_commit:  # unknown outside a git repository: no label, not a blank
        labels["org.opencontainers.image.revision"] = metadata.git_commit
    if metadata.owner:
        labels["org.opencontainers.image.authors"] = metadata.owner
    return labels


def dockerfile_quote(value: str) -> str:
    """A double-quoted Dockerfile word: JSON escapes, and ``$`` kept from variable expansion."""
    return json.dumps(value, ensure_ascii=False).replace("$", "\\$")


def render_containerfile(context: ContainerfileContext) -> bytes:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # a Containerfile, not HTML; values are quoted by dockerfile_quote
        keep_trailing_newline=True,
    )
    return environment.get_template("Containerfile.j2").render(**asdict(context)).encode()


def _ca_bundle(given: Path | None, pip: PipSettings | None) -> tuple[Path | None, str]:
    if given is not None:
        if not given.is_file():
            raise ContainerError(
                f"--ca-bundle {given}: no such file",
                hint="Give the PEM bundle your pip uses (`pip config get global.cert`, PIP_CERT), "
                "e.g. /etc/ssl/certs/ca-certificates.crt on Debian.",
            )
        return given.resolve(), "--ca-bundle"
    if pip is not None and pip.cert is not None and pip.cert.is_file():
        return pip.cert.resolve(), pip.cert_source
    return None, ""


def _context_dir(given: Path | None) -> Path | None:
    if given is not None and given.exists() and (not given.is_dir() or any(given.iterdir())):
        raise ContainerError(
            f"--context {given}: exists and is not an empty directory",
            hint="Give a new or empty directory; nb2prod does not overwrite files there.",
        )
    return given.resolve() if given is not None else None


def _write_context(context: Path, *, containerfile: bytes, lock: Path, bento_dir: Path) -> None:
    """The build context: Containerfile, requirements.lock, and a copy of the bento as bento/."""
    context.mkdir(parents=True, exist_ok=True)
    (context / CONTAINERFILE).write_bytes(containerfile)
    shutil.copyfile(lock, context / "requirements.lock")
    shutil.copytree(
        bento_dir, context / "bento", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def check_built_from(image: str, engine: container.Engine, bento_tag: str) -> None:
    """Refuse an image ``nb2prod containerize`` made from another bento (its label says)."""
    built_from = container.inspect_image(engine, image).labels.get("nb2prod.bento-tag")
    if built_from and built_from != bento_tag:
        raise TargetError(
            f"image {image} was built from bento {built_from}, not {bento_tag}",
            hint="Use it with the release it was made from, or containerize this one.",
        )
