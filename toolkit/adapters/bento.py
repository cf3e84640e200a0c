"""Adapter: BentoML's command line (build, get, delete, serve).

The only module that runs BentoML. It drives the ``bentoml`` CLI of this environment in
subprocesses: the store location comes from ``BENTOML_HOME`` like every BentoML command, nothing
BentoML keeps in global state leaks into nb2prod's process, and a server runs in its own session
so that stopping it stops every worker it spawned.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..adapters.loopback import free_port, tail, wait_ready
from ..errors import BuildError, ServeError, TargetError

_BENTOML = [sys.executable, "-m", "bentoml"]


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # no telemetry: serve would otherwise look a tracking host up at start
    return {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **(extra or {})}


def build(bentofile: Path, build_ctx: Path) -> str:
    """``bentoml build`` and return the new bento's tag."""
    proc = subprocess.run(
        [*_BENTOML, "build", str(build_ctx), "-f", str(bentofile), "--output", "tag"],
        capture_output=True,
        text=True,
        env=_env(),
        # BentoML resolves requirements_txt against the working directory and refuses paths
        # with a hidden component, so build from inside the (non-hidden) build context
        cwd=build_ctx,
        check=False,
    )
    tag = next(
        (
            line.removeprefix("__tag__:")
            for line in proc.stdout.splitlines()
            if line.startswith("__tag__:")
        ),
        None,
    )
    if proc.returncode != 0 or tag is None:
        raise BuildError(
            "bentoml build failed:\n" + tail(proc.stderr + proc.stdout),
            hint=f"The bentofile is {bentofile}.",
        )
    return tag.strip()


def info(tag: str) -> dict[str, object] | None:
    """The bento's description (``bentoml get -o json``), or None when the store has no such tag."""
    proc = subprocess.run(
        [*_BENTOML, "get", tag, "-o", "json"],
        capture_output=True,
        text=True,
        env=_env(),
        check=False,
    )
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    return data if isinstance(data, dict) else None


def _store_dir(tag: str) -> Path | None:
    name, _, version = tag.partition(":")
    return Path(_store()) / "bentos" / name / version if name and version else None


def exists(tag: str) -> bool:
    """Whether the store has ``tag``, read from BentoML's store layout (bentos/NAME/VERSION/)
    without starting the bentoml CLI, which takes a second."""
    directory = _store_dir(tag)
    return directory is not None and (directory / "bento.yaml").is_file()


def path_of(tag: str) -> Path:
    """The bento's directory in the store (``bentoml get -o path`` wraps long paths)."""
    directory = _store_dir(tag)
    if directory is None or not exists(tag):
        raise TargetError(f"bento {tag} is not in the BentoML store ({_store()})")
    return directory


def delete(tag: str) -> None:
    subprocess.run(
        [*_BENTOML, "delete", tag, "--yes"], capture_output=True, text=True, env=_env(), check=False
    )


def _store() -> str:
    return os.environ.get("BENTOML_HOME", str(Path.home() / "bentoml"))


@dataclass(frozen=True)
class Server:
    url: str
    pid: int
    cold_start_s: float
    log: Path


@contextmanager
def serve(
    target: str,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 120.0,
    working_dir: Path | None = None,
) -> Iterator[Server]:
    """Start ``bentoml serve TARGET`` on loopback, wait for /readyz, and stop it on exit.

    TARGET is a bento tag, or ``module:Service`` found in ``working_dir``.
    """
    port = port or free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="nb2prod-serve-"))
    log = log_dir / "serve.log"
    started = time.monotonic()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                *_BENTOML,
                "serve",
                target,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                *(["--working-dir", str(working_dir)] if working_dir else []),
            ],  # fmt: skip
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_env(env),
            start_new_session=True,  # its own process group: stop() reaches every worker
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, url, log, started, ready_timeout_s)
        yield Server(url=url, pid=proc.pid, cold_start_s=time.monotonic() - started, log=log)
    finally:
        stop(proc)


def run_foreground(target: str, *, port: int, env: Mapping[str, str] | None = None) -> int:
    """``bentoml serve`` attached to this terminal until it exits (Ctrl-C stops it)."""
    proc = subprocess.Popen(
        [*_BENTOML, "serve", target, "--host", "127.0.0.1", "--port", str(port)], env=_env(env)
    )
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait()


def _wait_ready(
    proc: subprocess.Popen[bytes], url: str, log: Path, started: float, timeout_s: float
) -> None:
    try:
        exited = wait_ready(
            url,
            started=started,
            timeout_s=timeout_s,
            stopped=lambda: None if proc.poll() is None else f"status {proc.returncode}",
        )
    except TimeoutError:
        raise ServeError(
            f"the service did not become ready within {timeout_s:.0f} s:\n"
            + tail(log.read_text(errors="replace")),
            hint=f"Full log: {log}. A worker that cannot import the service is restarted forever.",
        ) from None
    if exited is not None:
        raise ServeError(
            f"bentoml serve exited with {exited} before it was ready:\n"
            + tail(log.read_text(errors="replace")),
            hint=f"Full log: {log}",
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server and every process of its group; escalate to SIGKILL after 15 s."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass
    with contextlib.suppress(ProcessLookupError):  # workers that outlived the arbiter
        os.killpg(proc.pid, signal.SIGKILL)
