"""``nb2prod base-image``: a Debian 12 + Python 3.11 base image made from Debian's packages.

For machines with no registry: mmdebstrap builds a minimal root file system from the mirror this
machine's apt uses, and the container engine imports it into local storage. An existing image of
that name is reused unless a rebuild is asked for. Python 3.11 is bookworm's python3, the
version nb2prod's locks are resolved for.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..adapters import container, debian
from ..errors import ContainerError
from ..progress import Progress, Silent, stage
from ..version import __version__

SUITE = "bookworm"
PYTHON = "3.11"
DEFAULT_BASE = f"localhost/nb2prod-base:py{PYTHON.replace('.', '')}-{SUITE}"
# python3-venv: the image installs the lock into a venv (PEP 668 forbids the system Python);
# ca-certificates: TLS to the package index. Nothing else: no compiler, no pip of Debian's.
PACKAGES = ("python3", "python3-venv", "ca-certificates")


@dataclass(frozen=True)
class BaseImageRequest:
    reference: str = DEFAULT_BASE
    backend: str | None = None
    rebuild: bool = False
    mirror: str | None = None  # a Debian mirror URL; default: the mirrors of this machine's apt


@dataclass(frozen=True)
class BaseImage:
    reference: str
    image_id: str
    size_bytes: int
    built: bool  # False: an existing image was reused
    seconds: float
    mirrors: tuple[str, ...]


def ensure_base_image(
    request: BaseImageRequest,
    progress: Progress | None = None,
    engine: container.Engine | None = None,
) -> BaseImage:
    """The base image ``request.reference``: reused when present, else built and imported."""
    progress = progress or Silent()
    engine = engine or container.choose(request.backend)
    started = time.perf_counter()
    if not request.rebuild and container.image_exists(engine, request.reference):
        info = container.inspect_image(engine, request.reference)
        progress.note(
            f"reused: {request.reference} is in local storage (--rebuild builds it again)"
        )
        return BaseImage(request.reference, info.image_id, info.size_bytes, False, 0.0, ())
    mirrors = _mirrors(request.mirror)
    with tempfile.TemporaryDirectory(prefix="nb2prod-base-") as scratch:
        rootfs = Path(scratch) / "rootfs.tar"
        with stage(progress, "bootstrap", f"mmdebstrap {SUITE}: {', '.join(PACKAGES)}") as s:
            debian.bootstrap(SUITE, mirrors, list(PACKAGES), rootfs)
            s.detail = f"{rootfs.stat().st_size / 1e6:.0f} MB root file system"
        with stage(progress, "import", f"{engine.name} import as {request.reference}") as s:
            container.import_rootfs(
                engine,
                rootfs,
                request.reference,
                cmd=["/bin/bash"],
                env={"LANG": "C.UTF-8"},
                labels=_labels(mirrors),
            )
            info = container.inspect_image(engine, request.reference)
            s.detail = f"{info.size_bytes / 1e6:.0f} MB"
    return BaseImage(
        request.reference,
        info.image_id,
        info.size_bytes,
        True,
        time.perf_counter() - started,
        tuple(m.line() for m in mirrors),
    )


def _mirrors(mirror: str | None) -> list[debian.AptSource]:
    if mirror:
        return [debian.AptSource(mirror, SUITE, ("main",))]
    sources = debian.apt_sources()
    mirrors = debian.mirrors_for(SUITE, sources)
    if not mirrors:
        raise ContainerError(
            f"no Debian {SUITE} mirror in /etc/apt/sources.list or sources.list.d "
            f"({len(sources)} other source(s) found)",
            hint=f"Pass --mirror URL (a Debian mirror that serves {SUITE}), or --base-image IMG "
            "to containerize with an image you already have.",
        )
    return mirrors


def _labels(mirrors: list[debian.AptSource]) -> dict[str, str]:
    return {
        "org.opencontainers.image.title": "nb2prod-base",
        "org.opencontainers.image.description": f"Debian {SUITE} with Python {PYTHON} "
        f"({' '.join(PACKAGES)}), made by nb2prod {__version__} base-image with mmdebstrap",
        "org.opencontainers.image.created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "nb2prod.debian-mirrors": "; ".join(m.line() for m in mirrors),
    }
