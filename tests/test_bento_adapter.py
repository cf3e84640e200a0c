"""The BentoML adapter's console: what ``bentoml build --output tag`` prints is read back."""

from __future__ import annotations

import signal
import subprocess
import sys


def test_a_tag_named_like_an_emoji_code_is_printed_as_it_is() -> None:
    # BentoML prints the new tag with rich.print; rich turns ":cancer:" into an emoji
    script = (
        "import sys, rich\n"
        "if sys.argv[1] == 'plain':\n"
        "    from nb2prod.adapters.bento_main import plain_console\n"
        "    plain_console()\n"
        "rich.print('__tag__:cancer:zrl5nuxn5sgniax4')\n"
    )
    run = [sys.executable, "-c", script]
    rich_default = subprocess.run([*run, "rich"], capture_output=True, text=True, check=True)
    assert rich_default.stdout.strip() != "__tag__:cancer:zrl5nuxn5sgniax4"  # what went wrong
    plain = subprocess.run([*run, "plain"], capture_output=True, text=True, check=True)
    assert plain.stdout.strip() == "__tag__:cancer:zrl5nuxn5sgniax4"


# a "server" like BentoML's: its worker runs in a session of its own (as circus starts them) and
# shuts down slowly on SIGTERM, as a graceful worker does
_SERVER = """\
import signal, subprocess, sys, time
worker = subprocess.Popen(
    [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, lambda *a: "
     "(time.sleep(3), exit(0))); print('ready', flush=True); time.sleep(60)"],
    start_new_session=True, stdout=subprocess.PIPE, text=True,
)
worker.stdout.readline()
print(worker.pid, flush=True)
signal.signal(signal.SIGTERM, lambda *a: (worker.terminate(), worker.wait(), exit(0)))
time.sleep(60)
"""


def test_a_killed_server_takes_its_workers_with_it_at_once() -> None:
    """verify's server is killed, not shut down (nothing of it is kept): the server and its
    workers, in sessions of their own, are gone without the graceful shutdown's wait."""
    import time

    import psutil
    from nb2prod.adapters.bento import stop

    def start() -> tuple[subprocess.Popen[str], int]:
        server = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE,
                                  text=True, start_new_session=True)  # fmt: skip
        assert server.stdout is not None
        return server, int(server.stdout.readline())

    def gone(pid: int) -> bool:  # or a zombie its new parent has not reaped yet
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    graceful, worker = start()
    began = time.monotonic()
    stop(graceful)  # type: ignore[arg-type]
    assert time.monotonic() - began >= 2.5 and gone(worker)
    killed, worker = start()
    began = time.monotonic()
    stop(killed, signal.SIGKILL)  # type: ignore[arg-type]
    assert time.monotonic() - began < 2.0
    assert killed.poll() is not None and gone(worker)
