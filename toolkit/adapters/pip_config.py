"""Adapter: what the host's pip is configured with (``pip config list``), for image builds.

A build installs the release's lock with pip inside the image; by default it uses the same CA
bundle and package index as the host's pip (PIP_CERT / ``cert``, PIP_INDEX_URL / ``index-url``),
so a machine behind a TLS-intercepting proxy or with a private index works unchanged.
``file://`` indexes and find-links are host paths a build cannot see and are left out.

The lock, resolved on this machine, also looks in pip's find-links (:attr:`PipSettings.lock_sources`):
a package pip installed here from a local wheel directory can be locked.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PipSettings:
    cert: Path | None  # the CA bundle pip verifies TLS with, when one is configured
    index_url: str | None  # the configured index, None: pip's default
    cert_source: str = ""  # where cert came from, e.g. "PIP_CERT" or "global.cert"
    find_links: tuple[str, ...] = ()  # directories or URLs, as configured
    extra_index_urls: tuple[str, ...] = ()  # file:// ones included

    @property
    def lock_sources(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(find-links, extra index URLs) for resolving on this machine: pip's find-links that
        exist (a directory of wheels pip installed a local build from, such as a CPU torch).
        Extra indexes are not taken: a mirror of the default index would only make every pin
        look local, and the best-match strategy uv needs for find-links would then apply to
        every package."""
        return tuple(link for link in self.find_links if _exists(link)), ()


def _exists(location: str) -> bool:
    if location.startswith("file:"):
        return Path(location.removeprefix("file://").removeprefix("file:")).exists()
    if "://" in location:
        return True
    return Path(location).exists()


def host_pip_settings() -> PipSettings:
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return PipSettings(None, None)
    return parse_config_list(proc.stdout if proc.returncode == 0 else "")


def parse_config_list(text: str) -> PipSettings:
    """``pip config list`` lines (``global.cert='/path'``, ``:env:.cert='/path'``) → settings.
    The environment wins over files, as in pip, and ``install.`` over ``global.``."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip("'\"")

    def first(name: str) -> tuple[str, str] | None:
        for section in (":env:", "install", "global"):
            key = f"{section}.{name}"
            if values.get(key):
                label = f"PIP_{name.upper().replace('-', '_')}" if section == ":env:" else key
                return label, values[key]
        return None

    cert = first("cert")
    index = first("index-url")
    index_url = index[1] if index and not index[1].startswith("file:") else None
    links = first("find-links")
    extra = first("extra-index-url")
    return PipSettings(
        cert=Path(cert[1]) if cert else None,
        index_url=index_url,
        cert_source=cert[0] if cert else "",
        find_links=tuple(links[1].split()) if links else (),
        extra_index_urls=tuple(extra[1].split()) if extra else (),
    )
