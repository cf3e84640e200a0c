"""Adapter: Debian's own tools for a base image with no registry (apt sources, mmdebstrap).

The mirror is the one this machine's apt already uses (``/etc/apt/sources.list`` and
``sources.list.d/*.list|*.sources``, one-line and deb822 formats), so an air-gapped machine with
a local mirror needs nothing else.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ContainerError, MissingToolError
from .loopback import tail


@dataclass(frozen=True)
class AptSource:
    uri: str
    suite: str
    components: tuple[str, ...]

    def line(self) -> str:
        """The one-line form mmdebstrap takes as a mirror argument."""
        return " ".join(("deb", self.uri, self.suite, *self.components))


def apt_sources(root: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every enabled ``deb`` source of this machine, in the order apt reads them."""
    files = [root / "sources.list"] if (root / "sources.list").is_file() else []
    parts = root / "sources.list.d"
    if parts.is_dir():
        files += sorted(p for p in parts.iterdir() if p.suffix in (".list", ".sources"))
    found: list[AptSource] = []
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        found += _deb822(text) if path.suffix == ".sources" else _one_line(text)
    return found


def _one_line(text: str) -> list[AptSource]:
    found = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options: [signed-by=... arch=...]
            while words and not words[0].endswith("]"):
                words.pop(0)
            words = words[1:]
        if len(words) >= 2:
            found.append(AptSource(words[0], words[1], tuple(words[2:])))
    return found


def _deb822(text: str) -> list[AptSource]:
    found = []
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for raw in stanza.splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw[0].isspace() and key:  # continuation line
                fields[key] += " " + raw.strip()
                continue
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
            continue
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                found.append(AptSource(uri, suite, tuple(fields.get("components", "").split())))
    return found


def mirrors_for(suite: str, sources: list[AptSource]) -> list[AptSource]:
    """The sources of ``suite`` and its updates and security suites (Debian's naming)."""
    wanted = {suite, f"{suite}-updates", f"{suite}-security", f"{suite}/updates"}
    return [s for s in sources if s.suite in wanted]


def bootstrap(
    suite: str,
    mirrors: list[AptSource],
    packages: list[str],
    out: Path,
    *,
    which: Callable[[str], str | None] = shutil.which,
) -> None:
    """A minimal Debian root file system with ``packages`` as a tarball at ``out``."""
    binary = which("mmdebstrap")
    if binary is None:
        raise MissingToolError(
            "mmdebstrap is not installed; it builds the base image from Debian's packages",
            hint="apt-get install --no-install-recommends mmdebstrap, or pass --base-image IMG "
            "with an image of Debian 12 (Python 3.11, python3-venv) you already have.",
        )
    command = [
        binary,
        "--variant=apt",
        f"--include={','.join(packages)}",
        '--aptopt=APT::Install-Recommends "false"',
        # documentation and manual pages are of no use in a service image
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        suite,
        str(out),
        *(m.line() for m in mirrors),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ContainerError(
            f"mmdebstrap could not build a {suite} root file system:\n{tail(proc.stderr)}",
            hint="The mirrors were: " + "; ".join(m.line() for m in mirrors),
        )
