"""Adapter: container engines (docker, podman, buildah): the only module that runs them.

The engine is chosen by :func:`choose`: docker only when its daemon answers (a client binary alone
cannot build), then podman, then buildah (which builds but cannot run containers). podman and
buildah read ``CONTAINERS_CONF``; when the user has set none and the machine has no
containers.conf of its own, nb2prod points it at its own, found in the installed templates
(cgroupfs, fixed ulimits, and runc where installed: the defaults fail on hosts with hybrid
cgroups or without permission to raise rlimits; :func:`containers_conf`). Everything else comes from the environment as for any podman
command, including ``CONTAINERS_STORAGE_CONF`` (tests use it for a private store).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ContainerError, MissingToolError
from ..resources import template_dir
from .loopback import free_port, tail, wait_ready

ENGINES = ("docker", "podman", "buildah")
# What `apt-get install` needs on Debian 12 for nb2prod's container commands (docs/containers.md).
DEBIAN_PACKAGES = (
    "podman buildah runc uidmap slirp4netns netavark aardvark-dns containernetworking-plugins "
    "iptables fuse-overlayfs mmdebstrap"
)
SERVICE_PORT = 3000  # the port the image's CMD serves on
UID = 10001  # the unprivileged user the service runs as


@dataclass(frozen=True)
class Engine:
    """A container tool nb2prod drives, and why it was chosen."""

    name: str  # docker | podman | buildah
    binary: str
    why: str
    env: Mapping[str, str] = field(default_factory=dict)  # added to os.environ for its commands

    @property
    def can_run(self) -> bool:
        return self.name != "buildah"

    def command(self, *args: str) -> list[str]:
        return [self.binary, *args]

    def environment(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, **self.env, **(extra or {})}


@dataclass(frozen=True)
class ImageInfo:
    reference: str
    image_id: str
    size_bytes: int
    labels: Mapping[str, str]
    user: str
    healthcheck: tuple[str, ...]  # the test command, () when the image has none


@dataclass(frozen=True)
class Running:
    """A container serving on loopback; ``url`` answers, ``cold_start_s`` is run → /readyz."""

    url: str
    name: str
    cold_start_s: float
    pid: int | None = None  # the container's main process on this host (None: not visible)


def choose(
    requested: str | None = None,
    *,
    need_run: bool = False,
    which: Callable[[str], str | None] = shutil.which,
) -> Engine:
    """The engine to use: ``requested``, or the first of docker (daemon answering), podman,
    buildah. ``need_run``: the engine must run containers (buildah cannot)."""
    if requested is not None and requested not in ENGINES:
        raise ContainerError(
            f"--backend {requested}: unknown container backend",
            hint=f"Choose one of {', '.join(ENGINES)}, or leave --backend out to pick one.",
        )
    if requested:
        binary = which(requested)
        if binary is None:
            raise MissingToolError(
                f"--backend {requested}: `{requested}` is not installed (not on PATH)",
                hint=_install_hint(),
            )
        if requested == "docker" and not _docker_answers(binary):
            raise ContainerError(
                "--backend docker: the docker client is installed but no Docker daemon answers "
                "(`docker info` failed)",
                hint="Start the daemon, or use --backend podman (daemonless).",
            )
        if need_run and requested == "buildah":
            raise ContainerError(
                "--backend buildah cannot run containers; verifying an image needs podman or docker",
                hint="podman runs the images buildah builds (they share local storage): "
                "use --backend podman, or apt-get install podman.",
            )
        return _engine(requested, binary, "asked for with --backend")
    skipped: list[str] = []
    docker = which("docker")
    if docker and _docker_answers(docker):
        return _engine("docker", docker, "its daemon answers")
    if docker:
        skipped.append("docker client found but no daemon answers")
    podman = which("podman")
    if podman:
        return _engine("podman", podman, "; ".join(skipped) or "first daemonless engine on PATH")
    buildah = which("buildah")
    if buildah and not need_run:
        skipped.append("no podman")
        return _engine("buildah", buildah, "; ".join(skipped))
    wanted = "podman or docker (to run the image)" if need_run else "docker, podman or buildah"
    found = " (buildah is installed but cannot run containers)" if buildah else ""
    raise MissingToolError(
        f"no container engine: nb2prod needs {wanted}{found}", hint=_install_hint()
    )


def _install_hint() -> str:
    return (
        f"On Debian/Ubuntu: apt-get install --no-install-recommends {DEBIAN_PACKAGES} "
        "(podman and buildah need no daemon); docs/containers.md lists what each backend needs."
    )


def _docker_answers(binary: str) -> bool:
    try:
        proc = subprocess.run(
            [binary, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and bool(proc.stdout.strip())


def _engine(name: str, binary: str, why: str) -> Engine:
    env: dict[str, str] = {}
    if name == "docker":
        env["DOCKER_BUILDKIT"] = "1"  # build secrets need BuildKit
    elif containers_conf_needed():
        env["CONTAINERS_CONF"] = str(containers_conf())
    return Engine(name, binary, why, env)


def containers_conf(runc: str | None = None) -> Path:
    """nb2prod's containers.conf, from the installed templates: runc where it is installed (crun,
    Debian's default, fails on hosts with hybrid cgroups), else the engine's own runtime."""
    runc = runc if runc is not None else (shutil.which("runc") or "")
    name = "containers.conf" if runc else "containers-default-runtime.conf"
    return template_dir("container") / name


def runtime_hint(stderr: str) -> str | None:
    """What to do when the OCI runtime is the problem, read off an engine's error output."""
    if 'OCI runtime "runc" not found' in stderr or "runc: executable file not found" in stderr:
        return (
            "The containers.conf in use names runc, which is not installed: apt-get install runc, "
            'or point CONTAINERS_CONF at a containers.conf without `runtime = "runc"`.'
        )
    if "crun:" in stderr and ("cgroups in hybrid mode" in stderr or "setrlimit" in stderr):
        return (
            "crun cannot run containers on this host (hybrid cgroups or no permission to raise "
            "rlimits): apt-get install runc; nb2prod then uses it (docs/containers.md)."
        )
    return None


def containers_conf_needed(environ: Mapping[str, str] | None = None) -> bool:
    """True when podman/buildah would otherwise run with their built-in defaults: no
    ``CONTAINERS_CONF`` and no containers.conf in /etc or the user's configuration."""
    environ = os.environ if environ is None else environ
    if environ.get("CONTAINERS_CONF"):
        return False
    config_home = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return not any(
        p.is_file()
        for p in (
            Path("/etc/containers/containers.conf"),
            config_home / "containers/containers.conf",
        )
    )


def _run(engine: Engine, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        engine.command(*args),
        capture_output=True,
        text=True,
        env=engine.environment(),
        timeout=timeout,
        check=False,
    )


def image_exists(engine: Engine, reference: str) -> bool:
    if engine.name == "buildah":
        return _run(engine, "inspect", "--type", "image", reference).returncode == 0
    if engine.name == "docker":
        return _run(engine, "image", "inspect", reference).returncode == 0
    return _run(engine, "image", "exists", reference).returncode == 0


def inspect_image(engine: Engine, reference: str) -> ImageInfo:
    if engine.name == "buildah":
        proc = _run(engine, "inspect", "--type", "image", reference)
    else:
        proc = _run(engine, "image", "inspect", reference)
    if proc.returncode != 0:
        raise ContainerError(
            f"image {reference} is not in {engine.name}'s local storage: {tail(proc.stderr, 3)}"
        )
    data: Any = json.loads(proc.stdout)
    if engine.name == "buildah":
        config = data["Docker"]["config"]
        image_id = data["FromImageID"]
        size = _buildah_size(engine, reference)
        health = config.get("Healthcheck")
    else:
        data = data[0]
        config = data["Config"]
        image_id = data["Id"]
        size = int(data.get("Size") or 0)
        health = data.get("Healthcheck") or config.get("Healthcheck")
    return ImageInfo(
        reference=reference,
        image_id=image_id.removeprefix("sha256:"),
        size_bytes=size,
        labels=dict(config.get("Labels") or {}),
        user=config.get("User") or "",
        healthcheck=tuple((health or {}).get("Test") or ()),
    )


def _buildah_size(engine: Engine, reference: str) -> int:
    proc = _run(engine, "images", "--json", reference)
    try:
        text = json.loads(proc.stdout)[0]["size"]  # e.g. "615 MB"
        number, unit = text.split()
        return int(float(number) * {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[unit.upper()])
    except (ValueError, KeyError, IndexError):
        return 0


def build(
    engine: Engine,
    *,
    context: Path,
    containerfile: Path,
    reference: str,
    secrets: Mapping[str, Path],
    log: Path,
    on_step: Callable[[str], None],
) -> None:
    """Build ``containerfile`` in ``context`` as ``reference``; each build step goes to
    ``on_step`` as it starts and the whole output to ``log``."""
    args = ["build", "-f", str(containerfile), "-t", reference]
    if engine.name == "docker":
        args += ["--progress", "plain"]
    else:
        args += ["--format", "docker"]  # the OCI image format has no HEALTHCHECK
    for name, path in sorted(secrets.items()):
        args += ["--secret", f"id={name},src={path}"]
    args.append(str(context))
    with log.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(
            engine.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=engine.environment(),
            text=True,
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sink.write(line)
            if _STEP.match(line):
                step = " ".join(line.split())  # continuation lines arrive joined by spaces
                on_step(step if len(step) <= 110 else step[:107] + "...")
        status = proc.wait()
    if status != 0:
        text = log.read_text(encoding="utf-8", errors="replace")
        raise ContainerError(
            f"{engine.name} build of {reference} failed (exit status {status}):\n" + tail(text),
            hint=" ".join(
                filter(
                    None,
                    [
                        runtime_hint(text),
                        f"Full log: {log}; the build context (Containerfile, bento/) is {context}.",
                    ],
                )
            ),
        )


_STEP = re.compile(r"^(STEP \d+/\d+: |#\d+ \[)")


def import_rootfs(
    engine: Engine,
    rootfs: Path,
    reference: str,
    *,
    cmd: list[str],
    env: Mapping[str, str],
    labels: Mapping[str, str],
) -> None:
    """Make an image of a root file system tarball (no registry involved)."""
    if engine.name == "buildah":
        _buildah_import(engine, rootfs, reference, cmd=cmd, env=env, labels=labels)
        return
    changes = [f"CMD {json.dumps(cmd)}"]
    changes += [f"ENV {key}={json.dumps(value)}" for key, value in sorted(env.items())]
    changes += [f"LABEL {key}={json.dumps(value)}" for key, value in sorted(labels.items())]
    args = ["import"]
    for change in changes:
        args += ["--change", change]
    proc = _run(engine, *args, str(rootfs), reference, timeout=600)
    if proc.returncode != 0:
        raise ContainerError(f"{engine.name} import of {rootfs} failed:\n{tail(proc.stderr)}")


def _buildah_import(
    engine: Engine,
    rootfs: Path,
    reference: str,
    *,
    cmd: list[str],
    env: Mapping[str, str],
    labels: Mapping[str, str],
) -> None:
    proc = _run(engine, "from", "scratch")
    if proc.returncode != 0:
        raise ContainerError(f"buildah from scratch failed:\n{tail(proc.stderr)}")
    working = proc.stdout.strip()
    config = ["--cmd", json.dumps(cmd)]
    config += [a for key, value in sorted(env.items()) for a in ("--env", f"{key}={value}")]
    config += [a for key, value in sorted(labels.items()) for a in ("--label", f"{key}={value}")]
    try:
        for step in (
            ["add", working, str(rootfs), "/"],
            ["config", *config, working],
            ["commit", "--format", "docker", working, reference],
        ):
            done = _run(engine, *step, timeout=600)
            if done.returncode != 0:
                raise ContainerError(f"buildah {step[0]} failed:\n{tail(done.stderr)}")
    finally:
        _run(engine, "rm", working)


@contextmanager
def run_service(
    engine: Engine, image: str, *, env: Mapping[str, str], ready_timeout_s: float = 180.0
) -> Iterator[Running]:
    """Run ``image`` with its port on a free loopback port, wait for ``/readyz``, and remove the
    container on exit, whatever happened. ``env`` goes in by name only (``-e NAME``), so a token
    is never on a command line."""
    if not engine.can_run:
        raise ContainerError(f"{engine.name} cannot run containers; use podman or docker")
    port = free_port()
    name = f"nb2prod-verify-{uuid.uuid4().hex[:12]}"
    args = ["run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:{SERVICE_PORT}"]
    for key in sorted(env):
        args += ["--env", key]
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [*engine.command(*args), image],
            capture_output=True,
            text=True,
            env=engine.environment(env),
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise ContainerError(
                f"{engine.name} run {image} failed:\n{tail(proc.stderr)}",
                hint=runtime_hint(proc.stderr)
                or f"Is {image} in {engine.name}'s local storage? `{engine.name} images` lists it.",
            )
        url = f"http://127.0.0.1:{port}"
        _wait_ready(engine, name, url, started, ready_timeout_s)
        ready = time.monotonic() - started
        yield Running(url=url, name=name, cold_start_s=ready, pid=_host_pid(engine, name))
    finally:
        remove_container(engine, name)


def _wait_ready(engine: Engine, name: str, url: str, started: float, timeout_s: float) -> None:
    def stopped() -> str | None:
        state = _run(engine, "inspect", "--format", "{{.State.Status}}", name).stdout.strip()
        return None if state in ("created", "running", "configured") else state or "gone"

    try:
        state = wait_ready(url, started=started, timeout_s=timeout_s, stopped=stopped)
    except TimeoutError:
        raise ContainerError(
            f"the container did not answer /readyz within {timeout_s:.0f} s:\n"
            + container_logs(engine, name),
            hint="A worker that cannot import the service is restarted forever; its log is above.",
        ) from None
    if state is not None:
        raise ContainerError(
            f"the container of {name} stopped ({state}) before /readyz answered:\n"
            f"{container_logs(engine, name)}"
        )


def _host_pid(engine: Engine, name: str) -> int | None:
    """The container's main process as this host sees it (0 or an error: not visible here)."""
    proc = _run(engine, "inspect", "--format", "{{.State.Pid}}", name)
    try:
        pid = int(proc.stdout.strip())
    except ValueError:
        return None
    return pid if pid > 0 and Path(f"/proc/{pid}").is_dir() else None


def container_logs(engine: Engine, name: str) -> str:
    proc = _run(engine, "logs", name)
    return tail(proc.stdout + proc.stderr)


def healthcheck(engine: Engine, name: str) -> bool | None:
    """Run the image's HEALTHCHECK once in container ``name`` (podman); None where the engine
    has no such command (docker runs it on its own schedule)."""
    if engine.name != "podman":
        return None
    return _run(engine, "healthcheck", "run", name).returncode == 0


def remove_container(engine: Engine, name: str) -> None:
    ignore = ["--ignore"] if engine.name == "podman" else []  # docker: an error we do not need
    _run(engine, "rm", "--force", *ignore, name)


@dataclass(frozen=True)
class PushResult:
    """An image pushed to a registry: where, and its manifest's digest there."""

    destination: str  # REGISTRY/NAME:TAG
    digest: str  # sha256:<hex> of the manifest, as the registry reports it
    reported_by: str  # what told the digest: "skopeo inspect", "podman push --digestfile", ...


def push(engine: Engine, local: str, destination: str, *, tls_verify: bool) -> PushResult:
    """Push ``local`` (in the engine's storage) to ``destination`` and return its digest.

    podman and buildah write the pushed manifest's digest with ``--digestfile``; where skopeo is
    installed the registry is then asked (``skopeo inspect``) and must report the same digest.
    ``tls_verify`` false allows a plain-HTTP (or self-signed) registry; docker takes that from its
    daemon's ``insecure-registries`` and cannot be told per push."""
    if engine.name == "docker" and not tls_verify:
        raise ContainerError(
            f"--no-tls-verify: docker cannot push to {destination} without TLS verification per "
            "command",
            hint='List the registry in the daemon\'s "insecure-registries" (/etc/docker/'
            "daemon.json), or push with --backend podman, which takes --no-tls-verify.",
        )
    with _scratch_file() as digestfile:
        if engine.name == "docker":
            if (tagged := _run(engine, "tag", local, destination)).returncode != 0:
                raise ContainerError(
                    f"docker tag {local} {destination} failed: {tail(tagged.stderr)}"
                )
            args = ["push", destination]
        else:
            args = ["push", f"--tls-verify={str(tls_verify).lower()}", "--digestfile",
                    str(digestfile), local, destination]  # fmt: skip
        proc = _run(engine, *args, timeout=1800)
        if proc.returncode != 0:
            raise ContainerError(
                f"{engine.name} push of {local} to {destination} failed:\n"
                f"{tail(proc.stderr + proc.stdout)}",
                hint=_push_hint(proc.stderr + proc.stdout, tls_verify),
            )
        pushed = digestfile.read_text(encoding="utf-8").strip() if digestfile.is_file() else ""
    if engine.name == "docker":
        pushed = _docker_repo_digest(engine, destination)
    if shutil.which("skopeo") is None:
        if not pushed:
            raise ContainerError(
                f"{engine.name} pushed {destination} but did not say its digest",
                hint="apt-get install skopeo: nb2prod then asks the registry.",
            )
        return PushResult(destination, pushed, f"{engine.name} push")
    reported = registry_digest(destination, tls_verify=tls_verify)
    if pushed and pushed != reported:
        raise ContainerError(
            f"{destination}: {engine.name} pushed manifest {pushed}, but the registry reports "
            f"{reported} for the tag",
            hint="Someone else pushed the same tag meanwhile; push again with a tag of its own.",
        )
    return PushResult(destination, reported, "skopeo inspect")


def registry_digest(reference: str, *, tls_verify: bool) -> str:
    """The digest the registry reports for ``reference`` (``skopeo inspect``)."""
    data = _skopeo_inspect(reference, tls_verify=tls_verify)
    digest = data.get("Digest")
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise ContainerError(f"skopeo inspect {reference}: no sha256 digest in its answer")
    return digest


def registry_labels(reference: str, *, tls_verify: bool) -> dict[str, str]:
    """The labels of the image ``reference`` names in its registry (``skopeo inspect``)."""
    return dict(_skopeo_inspect(reference, tls_verify=tls_verify).get("Labels") or {})


def _skopeo_inspect(reference: str, *, tls_verify: bool) -> dict[str, Any]:
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise MissingToolError("skopeo is not installed", hint="apt-get install skopeo")
    proc = subprocess.run(
        [skopeo, "inspect", f"--tls-verify={str(tls_verify).lower()}", f"docker://{reference}"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise ContainerError(
            f"skopeo inspect docker://{reference} failed: {tail(proc.stderr, 5)}",
            hint=_push_hint(proc.stderr, tls_verify),
        )
    data: Any = json.loads(proc.stdout)
    return data if isinstance(data, dict) else {}


def _docker_repo_digest(engine: Engine, destination: str) -> str:
    proc = _run(engine, "image", "inspect", "--format", "{{json .RepoDigests}}", destination)
    repository = destination.rsplit("@", 1)[0]
    repository = (
        repository.rsplit(":", 1)[0] if ":" in repository.rsplit("/", 1)[-1] else repository
    )
    for entry in json.loads(proc.stdout or "[]") if proc.returncode == 0 else []:
        name, _, digest = str(entry).partition("@")
        if name == repository and digest.startswith("sha256:"):
            return digest
    return ""


def _push_hint(stderr: str, tls_verify: bool) -> str:
    said = stderr.lower()
    if tls_verify and ("http response to https client" in said or "x509:" in said):
        return (
            "The registry speaks plain HTTP or has a certificate this host does not trust: for a "
            "registry on loopback or a private network you trust, add --no-tls-verify."
        )
    if "unauthorized" in said or "authentication required" in said:
        return "Log in first: `podman login REGISTRY` (the credentials stay with podman)."
    return "Is the registry running and its address right? `skopeo inspect docker://REF` asks it."


@contextmanager
def _scratch_file() -> Iterator[Path]:
    import tempfile

    handle, name = tempfile.mkstemp(prefix="nb2prod-digest-")
    os.close(handle)
    path = Path(name)
    path.unlink()
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
