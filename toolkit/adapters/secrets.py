"""Adapter: credentials in text, found by detect-secrets (the only module that imports it).

detect-secrets' specific detectors (cloud keys, tokens of known services, private keys, passwords in
URLs, `password = "..."` assignments) with its default false-positive filters. The two high-entropy
detectors are left out: scanning single lines they flag nearly every string (hashes, file names),
and IP addresses are not credentials.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_LEFT_OUT = {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector"}


@dataclass(frozen=True)
class SecretHit:
    line: int  # 1-based line within the scanned text
    kind: str  # e.g. "AWS Access Key"; never the secret itself


@contextmanager
def _settings() -> Iterator[None]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.settings import default_settings, get_settings, transient_settings

    with default_settings():
        filters = get_settings().json()["filters_used"]
    detectors: list[type] = list(get_mapping_from_secret_type_to_class().values())
    plugins = [{"name": d.__name__} for d in detectors if d.__name__ not in _LEFT_OUT]
    with transient_settings({"plugins_used": plugins, "filters_used": filters}):
        yield


def prepare() -> None:
    """Import detect-secrets and its detectors (a second), leaving its settings alone: ``package``
    does it in a thread while the kernel runs, so that the scan after it starts at once."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.core.scan import scan_line  # noqa: F401
    from detect_secrets.settings import default_settings  # noqa: F401

    get_mapping_from_secret_type_to_class()  # cached by detect-secrets: the plugins, imported


class SecretScanner:
    """Scans many texts under one detect-secrets configuration (set up once: it is not free)."""

    def __enter__(self) -> SecretScanner:
        self._context = _settings()
        self._context.__enter__()
        from detect_secrets.core.scan import scan_line

        self._scan_line = scan_line
        return self

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(None, None, None)

    def scan(self, text: str) -> list[SecretHit]:
        hits: list[SecretHit] = []
        for number, line in enumerate(text.splitlines(), start=1):
            if len(line.strip()) < 8:  # nothing that short is a credential
                continue
            kinds = sorted({secret.type for secret in self._scan_line(line)})
            hits += [SecretHit(number, kind) for kind in kinds]
        return hits
