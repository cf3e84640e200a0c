"""Adapter: resolve a full, hashed lock with uv (the only module that runs uv).

The index is uv's default unless ``UV_INDEX_URL`` / ``UV_DEFAULT_INDEX`` say otherwise; no index
URL is written into the lock (``--no-emit-index-url``), so a lock is portable between mirrors.
``[lock] index`` gives some packages their own index (a CPU build of torch): uv then compiles a
scratch pyproject.toml whose ``[tool.uv.sources]`` pin those packages to explicit indexes, and
the lock stage writes those indexes into the lock for the install (pipeline/lock.py).

The host pip's find-links and extra indexes (``file://`` ones too) are passed to uv, with pip's
way of choosing among indexes (the best version from any of them), so a package pip installed
here from a local wheel directory locks; uv's ``# from`` annotations say where each pin came
from, and are read into :attr:`Resolution.origins` and removed from the lock's text.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LockError, MissingToolError

PLATFORM = "x86_64-unknown-linux-gnu"


@dataclass(frozen=True)
class Resolution:
    text: str  # requirements.lock body as uv wrote it, without its `# from` annotations
    origins: Mapping[str, str] = field(default_factory=dict)  # "name==version" -> where from


def uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ImportError:  # pragma: no cover - uv is a dependency of nb2prod
        raise MissingToolError(
            "uv is not installed in this environment", hint="pip install uv"
        ) from None
    return str(find_uv_bin())


def compile_lock(
    requirements: list[str],
    constraints: list[str],
    *,
    python_version: str,
    sources: Mapping[str, str] | None = None,
    find_links: Sequence[str] = (),
    extra_index_urls: Sequence[str] = (),
) -> Resolution:
    """Resolve ``requirements`` (pinned direct dependencies) to every transitive pin with hashes;
    ``sources`` (package -> index URL, ``[lock] index``) resolves those packages from their own
    index and every other one from the default index; ``find_links`` and ``extra_index_urls``
    (the host pip's) are looked in too."""
    with tempfile.TemporaryDirectory(prefix="nb2prod-lock-") as scratch:
        inputs, text = lock_input(requirements, sources or {})
        req = Path(scratch) / inputs
        con = Path(scratch) / "constraints.txt"
        req.write_text(text, encoding="utf-8")
        con.write_text("\n".join(constraints) + "\n", encoding="utf-8")
        command = lock_command(uv_binary(), req, con, python_version)
        command += pip_source_options(find_links, extra_index_urls)
        env = {**os.environ, "UV_NATIVE_TLS": os.environ.get("UV_NATIVE_TLS", "1")}
        proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        reason = _resolver_reason(proc.stderr)
        raise LockError(
            f"the environment could not be locked: {reason}",
            hint="The resolver's full message is above; pins come from the versions the "
            "notebook's kernel has installed"
            + (
                f", and {', '.join(sorted(sources))} from the index [lock] index names."
                if sources
                else "."
            ),
        )
    # the scratch paths uv names in its "# via" notes would make every lock differ
    body = re.sub(rf"{LOCK_PROJECT} \([^)\n]*\)", "-r requirements.in", proc.stdout)
    body = body.replace(str(req), "requirements.in").replace(str(con), "kernel-constraints")
    return without_origins(body)


def pip_source_options(find_links: Sequence[str], extra_index_urls: Sequence[str]) -> list[str]:
    """uv options for the host pip's find-links and extra indexes, chosen among as pip does."""
    options = [o for link in find_links for o in ("--find-links", link)]
    options += [o for url in extra_index_urls for o in ("--extra-index-url", url)]
    return [*options, "--index-strategy", "unsafe-best-match"] if options else []


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s\\;]+)")


def without_origins(body: str) -> Resolution:
    """The lock body without uv's ``# from <index>`` lines, and which pin each one named."""
    origins: dict[str, str] = {}
    kept: list[str] = []
    pin: str | None = None
    for line in body.splitlines(keepends=True):
        if (match := _PIN.match(line)) is not None:
            pin = match.group(1)
        stripped = line.strip()
        if stripped.startswith("# from "):
            if pin is not None:
                origins[pin] = stripped.removeprefix("# from ").strip()
            continue
        kept.append(line)
    return Resolution(text="".join(kept), origins=origins)


LOCK_PROJECT = "nb2prod-lock"  # the scratch project that carries [lock] index to uv


def lock_input(requirements: list[str], sources: Mapping[str, str]) -> tuple[str, str]:
    """What uv compiles: a requirements.in, or, when some packages come from their own index, a
    scratch pyproject.toml whose ``[tool.uv.sources]`` pins each of them to an explicit index
    (``uv pip compile`` reads sources from a project only, never from a requirements file)."""
    if not sources:
        return "requirements.in", "\n".join(requirements) + "\n"
    urls = sorted(set(sources.values()))
    names = {url: f"nb2prod-index-{k}" for k, url in enumerate(urls, start=1)}
    lines = [
        "# written by nb2prod for `uv pip compile`: the service's direct requirements, with",
        "# [lock] index as uv sources",
        "[project]",
        f"name = {json.dumps(LOCK_PROJECT)}",
        'version = "0"',
        "dependencies = [",
        *(f"    {json.dumps(r)}," for r in requirements),
        "]",
        "",
        "[tool.uv.sources]",
        *(
            f"{json.dumps(package)} = {{ index = {json.dumps(names[url])} }}"
            for package, url in sorted(sources.items())
        ),
    ]
    for url in urls:  # explicit: only the packages pinned to it are looked up there
        lines += ["", "[[tool.uv.index]]", f"name = {json.dumps(names[url])}",
                  f"url = {json.dumps(url)}", "explicit = true"]  # fmt: skip
    return "pyproject.toml", "\n".join(lines) + "\n"


def lock_command(uv: str, inputs: Path, constraints: Path, python_version: str) -> list[str]:
    """The ``uv pip compile`` command line that writes the lock body to stdout."""
    return [
        uv, "pip", "compile", str(inputs),
        "--constraint", str(constraints),
        "--generate-hashes",
        "--python-version", python_version,
        "--python-platform", PLATFORM,
        "--no-header",
        "--no-emit-index-url",
        "--emit-index-annotation",
        "--quiet",
    ]  # fmt: skip


def _resolver_reason(stderr: str) -> str:
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()]
    return "\n".join(lines[-15:]) or "uv exited with an error and said nothing"
