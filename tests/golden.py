"""Golden-file comparison: a whole generated tree against a checked-in expected tree.

Missing and extra files both fail. Volatile values (hashes, git commits, nb2prod's version) are
masked before comparing. ``pytest --update-goldens`` rewrites the expected tree; review its diff.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from nb2prod import __version__

GOLDEN = Path(__file__).resolve().parent / "golden"

_MASKS = [
    # the test's own directory (with pytest-xdist, the worker's below it: popen-gw0/)
    (re.compile(r"[^\s\"]*/pytest-of-[^/\s]+/pytest-\d+/(?:popen-gw\d+/)?"), "<tmp>/"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),
    (re.compile(r"\b[0-9a-f]{40}\b"), "<git-commit>"),
    (re.compile(r"\b[0-9a-f]{12}\b(?=\))"), "<sha256-prefix>"),
    (re.compile(r"\b[a-z0-9-]+:[a-z0-9]{16}\b"), "<bento-tag>"),
    # deploy/: what verify measured (cold start, memory) and the sizes made from it
    (re.compile(r"measured by verify: [0-9.]+ (s|MiB)"), "measured by verify: <measured>"),
    (re.compile(r"(import|model load|first answer) [0-9.]+ s\b"), r"\1 <measured> s"),
    (re.compile(r"(?<=memory: )\d+Mi\b|(?<=memory request )\d+Mi\b|(?<=limit )\d+Mi\b"), "<n>Mi"),
    (re.compile(r"(?<=[Ss]tartup probe budget )\d+(?= s)"), "<n>"),
    (re.compile(r"(?<=startupProbe:\n)(\s+failureThreshold: )\d+"), r"\g<1><n>"),
]
# deploy/'s memory alert and the dashboard's memory line, at the limit made from what verify
# measured (not masked in the observability golden: promtool tests run the rules it has)
_MEASURED_MEMORY = [
    (re.compile(r"(nb2prod_process_resident_memory_bytes\{[^}]*\}\) > )\d+"), r"\g<1><bytes>"),
    (re.compile(r"\b\d+ MiB(?= memory limit|: what verify measured)"), "<n> MiB"),
    (re.compile(r'(?<="value": )\d{7,}\b'), "<bytes>"),
]


def mask(text: str, path: str = "", measured_memory: bool = False) -> str:
    if path.endswith("metadata.json"):  # measured timings differ on every run
        data = json.loads(text)
        data["release"]["evaluation"]["latency"] = "<measured>"
        text = json.dumps(data, sort_keys=True, indent=2) + "\n"
    if path == "release.json":  # when, where and with which interpreter it was made
        data = json.loads(text)
        for key in ("created_at", "python_version", "bentoml_version", "git_commit", "git_dirty"):
            data[key] = f"<{key}>"
        if data.get("packages"):  # the installed versions of what the lock pins
            data["packages"] = "<packages>"
        if data.get("serving"):  # what verify measured: cold start and memory
            data["serving"] = {k: "<measured>" for k in data["serving"]}
        text = json.dumps(data, sort_keys=True, indent=2) + "\n"
    text = text.replace(f"nb2prod {__version__}", "nb2prod <version>")
    for pattern, replacement in _MASKS + (_MEASURED_MEMORY if measured_memory else []):
        text = pattern.sub(replacement, text)
    return text


def compare_tree(
    actual: dict[str, bytes], name: str, update: bool, measured_memory: bool = False
) -> None:
    expected_root = GOLDEN / name
    masked = {path: mask(data.decode(), path, measured_memory) for path, data in actual.items()}
    if update:
        shutil.rmtree(expected_root, ignore_errors=True)
        for path, text in masked.items():
            target = expected_root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        return
    expected = {
        p.relative_to(expected_root).as_posix(): p.read_text()
        for p in sorted(expected_root.rglob("*"))
        if p.is_file()
    }
    missing = sorted(set(expected) - set(masked))
    extra = sorted(set(masked) - set(expected))
    assert not missing, f"generated tree lacks {missing} (golden {expected_root})"
    assert not extra, f"generated tree has unexpected {extra}; run pytest --update-goldens"
    for path in sorted(expected):
        assert masked[path] == expected[path], (
            f"{path} differs from {expected_root / path}; if intended, run pytest --update-goldens"
        )
