"""What every adapter that starts a server or a tool needs: a free loopback port, waiting for
``/readyz``, and the tail of a log for an error message. Used by ``bento.py`` (``bentoml serve``)
and ``container.py`` (``podman run``)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable

import httpx


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(
    url: str, *, started: float, timeout_s: float, stopped: Callable[[], str | None]
) -> str | None:
    """Poll ``GET {url}/readyz`` until it answers 200 (None), or until ``stopped()`` (asked at
    most once a second) says why the server is gone (that reason). TimeoutError after
    ``timeout_s`` from ``started``."""
    asked = 0.0
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() - started < timeout_s:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{url}/readyz").status_code == 200:
                    return None
            if time.monotonic() - asked > 1.0:
                asked = time.monotonic()
                reason = stopped()
                if reason is not None:
                    return reason
            time.sleep(0.05)  # a refused connection costs nothing: ready is seen at once
    raise TimeoutError(f"{url}/readyz did not answer within {timeout_s:.0f} s")


def tail(text: str, lines: int = 25) -> str:
    """The last ``lines`` non-blank lines of a log, for an error message."""
    kept = [line for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])
