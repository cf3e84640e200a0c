"""Adapter: BentoML's command line (build, get, delete, serve).

The only module that runs BentoML. It drives the ``bentoml`` CLI of this environment in
subprocesses: the store location comes from ``BENTOML_HOME`` like every BentoML command, nothing
BentoML keeps in global state leaks into nb2prod's process, and a server runs in its own session.
Stopping a server waits until it and every worker it started are gone: BentoML's process manager
(circus) starts each worker in a session of its own, so the server's process group alone does not
reach them, and they are followed as the server's descendants (psutil) instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from ..errors import BuildError, ServeError, TargetError
from ..scratch import keep
from .bento_main import METRICS_DIR_ENV
from .children import Stopping, die_with_parent
from .loopback import free_port, tail, wait_ready

_BENTOML = [sys.executable, "-m", "bentoml"]
# servers run through bento_main: a metrics directory of their own (see that module); builds
# too: it prints the new tag without rich's emoji codes
_BENTO_MAIN = [sys.executable, "-m", f"{__package__}.bento_main"]
_SERVE = [*_BENTO_MAIN, "serve"]


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # no telemetry: serve would otherwise look a tracking host up at start; temporary files go
    # where nb2prod's own go (a packaging run's scratch directory, removed even after a crash)
    return {
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "TMPDIR": tempfile.gettempdir(),
        **(extra or {}),
    }


def build(bentofile: Path, build_ctx: Path) -> str:
    """``bentoml build`` and return the new bento's tag."""
    proc = subprocess.run(
        [*_BENTO_MAIN, "build", str(build_ctx), "-f", str(bentofile), "--output", "tag"],
        capture_output=True,
        text=True,
        env=_env(),
        preexec_fn=die_with_parent(),
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


class Starting:
    """A ``bentoml serve`` on its way up: a thread waits for /readyz from the start (so the
    time to ready is the server's, whoever asks later); :meth:`ready` returns it once ready."""

    def __init__(
        self, proc: subprocess.Popen[bytes], url: str, log: Path, started: float, timeout_s: float
    ) -> None:
        self._proc, self._url, self._log, self._timeout_s = proc, url, log, timeout_s
        self._why: str | None = None  # why it never became ready (None: it did)
        self._elapsed = 0.0  # seconds from its start to ready
        # ready() raised ServeError: the error names the server's log, which is then kept (a
        # server stopped before anyone asked, by an interrupt say, leaves nothing)
        self.failed = False
        self._error: Exception | None = None
        self._thread = threading.Thread(
            target=self._wait, args=(started,), name="nb2prod-ready", daemon=True
        )
        self._thread.start()

    def _wait(self, started: float) -> None:
        try:
            why = _await_ready(self._proc, self._url, started, self._timeout_s)
        except Exception as exc:  # raised to the caller of ready()
            self._error = exc
            return
        self._why, self._elapsed = why, time.monotonic() - started

    def ready(self) -> Server:
        """The server, once /readyz answered 200; raises :class:`ServeError` if it never did."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._why is not None:
            self.failed = True
            _raise_not_ready(self._why, self._log, self._timeout_s)
        return Server(self._url, self._proc.pid, self._elapsed, self._log)


@contextmanager
def starting(
    target: str,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 120.0,
    working_dir: Path | None = None,
    stopping: Stopping | None = None,
    kill: bool = False,
) -> Iterator[Starting]:
    """Start ``bentoml serve TARGET`` on loopback and return at once (:meth:`Starting.ready`
    waits for /readyz); stop it on exit (in the background, with ``stopping``, which then
    waits for it). With ``kill``, the server and its workers get SIGKILL instead of a graceful
    shutdown (half a second): a server whose state nobody keeps, like verify's.

    TARGET is a bento tag, or ``module:Service`` found in ``working_dir``.
    """
    port = port or free_port()
    log_dir = Path(tempfile.mkdtemp(prefix="nb2prod-serve-"))
    log = log_dir / "serve.log"
    metrics = log_dir / "metrics"  # this server's Prometheus multiprocess files, no one else's
    metrics.mkdir()
    started = time.monotonic()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                *_SERVE,
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
            env=_env({**(env or {}), METRICS_DIR_ENV: str(metrics)}),
            start_new_session=True,  # its own process group, which stop() signals
            preexec_fn=die_with_parent(),  # a verify server never outlives nb2prod
        )
    server = Starting(proc, f"http://127.0.0.1:{port}", log, started, ready_timeout_s)
    try:
        yield server
    finally:
        keep_log = server.failed

        def stopped() -> None:
            stop(proc, signal.SIGKILL if kill else signal.SIGTERM)
            shutil.rmtree(metrics, ignore_errors=True)
            if not keep_log:
                shutil.rmtree(log_dir, ignore_errors=True)

        if stopping is None:
            stopped()
        else:
            stopping.defer(stopped)


@contextmanager
def serve(
    target: str,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 120.0,
    working_dir: Path | None = None,
    stopping: Stopping | None = None,
) -> Iterator[Server]:
    """Start ``bentoml serve TARGET`` on loopback, wait for /readyz, and stop it on exit (in
    the background, with ``stopping``, which then waits for it).

    TARGET is a bento tag, or ``module:Service`` found in ``working_dir``.
    """
    with starting(target, port=port, env=env, ready_timeout_s=ready_timeout_s,
                  working_dir=working_dir, stopping=stopping) as server:  # fmt: skip
        yield server.ready()


# What stops `nb2prod serve`: kill's default, Ctrl-C, and the terminal going away.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_foreground(target: str, *, port: int, env: Mapping[str, str] | None = None) -> int:
    """``bentoml serve`` on 127.0.0.1:PORT, printing to this terminal, until it exits or this
    process gets SIGTERM, SIGINT (Ctrl-C) or SIGHUP.

    The signal is passed on to the server's process group (SIGHUP as SIGTERM: circus would take
    SIGHUP as "reload"), and this returns only when the server and all its workers are gone:
    128 + the signal's number, or the server's own exit status when it stopped by itself.
    """
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
        for sig in _STOP_SIGNALS
    }
    metrics = Path(tempfile.mkdtemp(prefix="nb2prod-metrics-"))
    try:
        proc = subprocess.Popen(
            [*_SERVE, target, "--host", "127.0.0.1", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            env=_env({**(env or {}), METRICS_DIR_ENV: str(metrics)}),
            start_new_session=True,  # Ctrl-C reaches nb2prod only; it decides what the server gets
            preexec_fn=die_with_parent(),  # `kill -9` of nb2prod serve stops the server too
        )
        workers: set[psutil.Process] = set()
        while not received and proc.poll() is None:
            # known before the server exits: once it has, its orphaned workers cannot be found
            workers |= _descendants(proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1.0)
        first = received[0] if received else signal.SIGTERM
        stop(proc, signal.SIGTERM if first == signal.SIGHUP else first, known=workers)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(metrics, ignore_errors=True)
    if received:
        return 128 + received[0]
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode


def _await_ready(
    proc: subprocess.Popen[bytes], url: str, started: float, timeout_s: float
) -> str | None:
    """None once /readyz answered 200, else why not: ``status N`` (the server exited) or
    ``timeout``."""
    try:
        return wait_ready(
            url,
            started=started,
            timeout_s=timeout_s,
            stopped=lambda: None if proc.poll() is None else f"status {proc.returncode}",
        )
    except TimeoutError:
        return "timeout"


def _raise_not_ready(why: str | None, log: Path, timeout_s: float) -> None:
    """The error for :func:`_await_ready`'s answer; it keeps the server's log and names it."""
    if why == "timeout":
        raise ServeError(
            f"the service did not become ready within {timeout_s:.0f} s:\n"
            + tail(log.read_text(errors="replace")),
            hint=f"Full log: {keep(log, 'nb2prod-serve-')}. A worker that cannot import the "
            "service is restarted forever.",
        )
    if why is not None:
        raise ServeError(
            f"bentoml serve exited with {why} before it was ready:\n"
            + tail(log.read_text(errors="replace")),
            hint=f"Full log: {keep(log, 'nb2prod-serve-')}",
        )


def stop(
    proc: subprocess.Popen[bytes],
    sig: int = signal.SIGTERM,
    *,
    known: Iterable[psutil.Process] = (),
    grace_s: float = 15.0,
) -> None:
    """Send ``sig`` to the server's process group and return when the server and every worker
    it started (and ``known``) are gone; SIGKILL whatever is left after ``grace_s``."""
    workers = {*known, *_descendants(proc.pid)}
    deadline = time.monotonic() + grace_s
    if sig == signal.SIGKILL:  # no shutdown to wait for: the workers (own sessions) too, now
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                worker.kill()
    if proc.poll() is None:
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    else:  # the server died on its own: nothing else will stop its workers
        for worker in workers:
            with contextlib.suppress(psutil.Error):
                worker.send_signal(sig)
    left = _wait_gone(workers, deadline)
    for worker in left:
        with contextlib.suppress(psutil.Error):
            worker.kill()
    _wait_gone(left, time.monotonic() + 5.0)  # a zombie whose reaper is slow counts as gone
    _signal_group(proc.pid, signal.SIGKILL)  # anything else still in the server's group


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _descendants(pid: int) -> set[psutil.Process]:
    try:
        return set(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return set()


def _wait_gone(processes: Iterable[psutil.Process], deadline: float) -> list[psutil.Process]:
    """Those of ``processes`` still running at ``deadline`` (or none, as soon as all are gone)."""
    while True:
        alive = [p for p in processes if _running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
