"""The lock stage of ``package``: ``requirements.lock`` with every package pinned and hashed.

Direct requirements are facts from the kernel: the distributions providing the modules that the
service code imports and that the pickled model refers to, pinned to the versions the notebook ran
with. uv resolves them for linux x86_64 and the kernel's Python, constrained to the versions
installed in the kernel, so the service installs what the notebook ran with.

uv looks where the host's pip does: its find-links and extra indexes, ``file://`` ones included
(``adapters/pip_config.py``), so a package pip installed here from a local wheel directory (a CPU
build of torch, say) locks. A pin that came from a local directory or ``file://`` index is named
in the lock's header and on the lock line: an image built on another machine needs ``[lock]
index`` (or the same directory) for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..adapters.uv import compile_lock
from ..errors import LockError
from ..version import __version__
from .capture import Capture

_OWN = {"nb2prod"}


@dataclass(frozen=True)
class Drift:
    """A package the lock pins at another version than the notebook's kernel had."""

    name: str
    kernel: str
    locked: str

    def __str__(self) -> str:
        return f"{self.name} {self.kernel} (notebook) -> {self.locked} (lock)"


# distributions that exist for a GPU or another accelerator only: CUDA and ROCm runtimes and
# libraries, the GPU compilers torch and jax pull in on linux x86_64
_ACCELERATOR_PREFIXES = ("nvidia-", "cuda-", "cupy-cuda", "jax-cuda", "jax-rocm", "pytorch-triton",
                         "tensorrt", "onnxruntime-gpu")  # fmt: skip
_ACCELERATOR_NAMES = frozenset({"triton"})
# NVIDIA's management-library bindings: pure Python, a dependency of BentoML itself (GPU metrics)
_NOT_ACCELERATOR = frozenset({"nvidia-ml-py", "nvidia-ml-py3"})
_INDEX_LINE = "--extra-index-url "


@dataclass(frozen=True)
class Lock:
    direct: tuple[str, ...]  # "name==version" the service needs directly
    text: str  # the full requirements.lock
    drift: tuple[Drift, ...] = ()  # accepted with --allow-drift

    def summary(self) -> str:
        text = f"{len(self.pins)} packages pinned ({len(self.direct)} direct)"
        if self.sources:
            text += f", {', '.join(sorted(self.sources))} from [lock] index"
        if self.local:
            shown = ", ".join(f"{pin} from {where}" for pin, where in sorted(self.local.items()))
            text += (
                f"; note: {shown}, a local source of this machine's pip: an image built "
                "elsewhere needs [lock] index for " + ("it" if len(self.local) == 1 else "them")
            )
        found = self.accelerators
        if found:
            shown = (
                ", ".join(found) if len(found) <= 4 else f"{', '.join(found[:3])}, ..., {found[-1]}"
            )
            text += (
                f"; warning: {len(found)} accelerator-specific package"
                f"{'s' if len(found) != 1 else ''} ({shown}) pinned; a CPU image does not need "
                "them; see [lock] index in docs/configuration.md"
            )
        return text

    @property
    def pins(self) -> dict[str, str]:
        return _pins(self.text)

    @property
    def accelerators(self) -> tuple[str, ...]:
        """Pinned distributions made for a GPU (``nvidia-*``, ``triton``, a ``+cu121`` build)."""
        return tuple(
            name
            for name, version in sorted(self.pins.items())
            if name not in _NOT_ACCELERATOR
            and (
                name.startswith(_ACCELERATOR_PREFIXES)
                or name in _ACCELERATOR_NAMES
                or re.search(r"\+(cu|rocm)\d", version)
            )
        )

    @property
    def sources(self) -> dict[str, str]:
        """Package -> the ``[lock] index`` URL it was resolved from, as the lock's header says."""
        found = {}
        for line in self.text.splitlines():
            if line.startswith(_SOURCE_LINE):
                package, _, url = line.removeprefix(_SOURCE_LINE).partition(" from ")
                found[package.strip()] = url.strip()
        return found

    @property
    def local(self) -> dict[str, str]:
        """``name==version`` -> the local directory or ``file://`` index it was resolved from,
        as the lock's header says."""
        found = {}
        for line in self.text.splitlines():
            if line.startswith(_LOCAL_LINE):
                pin, _, where = line.removeprefix(_LOCAL_LINE).partition(" from ")
                found[pin.strip()] = where.strip()
        return found


_SOURCE_LINE = "# index: "
_LOCAL_LINE = "# local: "


def _is_local(origin: str) -> bool:
    return origin.startswith(("file:", "/")) or "://" not in origin


def _pins(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, _, version = line.partition("==")
            found[_normal(name)] = version.split()[0].rstrip("\\").strip()
    return found


def _normal(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _drift(text: str, installed: Mapping[str, str]) -> tuple[Drift, ...]:
    kernel = {_normal(name): version for name, version in installed.items()}
    return tuple(
        Drift(name, kernel[name], locked)
        for name, locked in sorted(_pins(text).items())
        if name in kernel and kernel[name] != locked
    )


def lock_environment(
    capture: Capture,
    notebook: str,
    allow_drift: bool = False,
    sources: Mapping[str, str] | None = None,
    find_links: Sequence[str] = (),
    extra_index_urls: Sequence[str] = (),
) -> Lock:
    """Lock to exactly the kernel's versions; where that cannot be resolved, say what would drift.

    A version the resolver must change is an error naming both versions, unless ``allow_drift``.
    ``sources`` (``[lock] index``: package -> index URL) resolves those packages from their own
    index; the lock names each one in its header and carries the URLs for the install.
    ``find_links`` and ``extra_index_urls`` (the host pip's) are where else uv looks; a pin taken
    from a local one is named in the header (``# local: ...``).
    """
    where = {"find_links": find_links, "extra_index_urls": extra_index_urls}
    sources = dict(sorted((sources or {}).items()))
    if capture.result.unresolved_modules:
        names = ", ".join(capture.result.unresolved_modules)
        raise LockError(
            f"the service imports {names}, which no installed distribution provides",
            hint="A module that lives beside the notebook cannot go into the service; move its "
            "code into a setup cell or make it an installable package.",
        )
    direct = tuple(
        sorted(f"{name}=={version}" for name, version in capture.result.requirements.items())
    )
    constraints = [
        f"{name}=={version}"
        for name, version in sorted(capture.result.installed.items())
        if name.lower() not in _OWN
    ]
    drift: tuple[Drift, ...] = ()
    try:
        resolution = compile_lock(
            list(direct), constraints, python_version=capture.result.python_version,
            sources=sources, **where,
        )  # fmt: skip
    except LockError as exact_failure:
        # the kernel's exact versions cannot be installed on the target; what would the resolver pick?
        try:
            resolution = compile_lock(
                list(direct), [], python_version=capture.result.python_version, sources=sources,
                **where,
            )  # fmt: skip
        except LockError:
            raise exact_failure from None
        drift = _drift(resolution.text, capture.result.installed)
        if not drift:
            raise exact_failure from None
        if not allow_drift:
            raise LockError(
                "the lock cannot use the versions the notebook ran with: "
                + "; ".join(str(d) for d in drift),
                hint="Install the locked versions in the notebook's environment and package "
                "again, or pass --allow-drift to accept (recorded in release.json).",
            ) from None
    header = (
        f"# requirements.lock: generated by nb2prod {__version__} from {notebook}\n"
        f"# direct: {', '.join(direct)}\n"
        f"# resolved with uv for {capture.result.python_version} on linux x86_64, constrained to the\n"
        "# versions installed in the notebook's kernel; install with --require-hashes.\n"
    )
    if sources:  # pip and uv read the URLs from the file; the hashes still decide what installs
        header += "# [lock] index: these packages are resolved from their own index\n"
        header += "".join(f"{_SOURCE_LINE}{name} from {url}\n" for name, url in sources.items())
        header += "".join(f"{_INDEX_LINE}{url}\n" for url in sorted(set(sources.values())))
    own = {_normal(name) for name in sources}  # [lock] index names their index already
    local = {
        pin: origin
        for pin, origin in resolution.origins.items()
        if _is_local(origin) and _normal(pin.split("==")[0]) not in own
    }
    if local:  # resolvable here; a build on another machine has no such directory
        header += (
            "# resolved here from a local source of pip ([lock] index for a build elsewhere):\n"
        )
        header += "".join(
            f"{_LOCAL_LINE}{pin} from {origin}\n" for pin, origin in sorted(local.items())
        )
    lock = Lock(direct=direct, text=header + resolution.text, drift=drift)
    missing = [d for d in direct if _normal(d.split("==")[0]) not in lock.pins]
    if missing:  # pragma: no cover - uv includes every requirement it was given
        raise LockError(f"the lock lacks {', '.join(missing)}")
    return lock
