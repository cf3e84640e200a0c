"""`make demo`: package the iris example, serve it on loopback, send one real request.

Everything a user would type, in order; the server is stopped at the end whatever happens.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from nb2prod.adapters.loopback import free_port
from nb2prod.release.reader import Release

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "dist" / "iris-classifier-1.0.0"


def say(text: str) -> None:
    print(f"\n\033[1m$ {text}\033[0m", flush=True)


def main() -> int:
    nb2prod = [sys.executable, "-m", "nb2prod"]
    say("nb2prod package notebooks/iris.ipynb")
    subprocess.run([*nb2prod, "package", "notebooks/iris.ipynb"], cwd=ROOT, check=True)

    port = free_port()
    token = secrets.token_urlsafe(16)
    say(f"NB2PROD_API_TOKEN=... nb2prod serve {RELEASE.relative_to(ROOT)} --port {port} &")
    server = subprocess.Popen(
        [*nb2prod, "serve", str(RELEASE), "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "NB2PROD_API_TOKEN": token},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                print("the server exited before it was ready", file=sys.stderr)
                return 1
            time.sleep(0.3)
        example = Release.open(RELEASE).examples[1].input
        say(
            f"curl -X POST {url}/v1/predict -H 'Authorization: Bearer ...' "
            f"-H 'Content-Type: application/json' -d '{json.dumps(example)}'"
        )
        response = httpx.post(
            f"{url}/v1/predict", json=example, headers={"Authorization": f"Bearer {token}"}
        )
        print(f"HTTP {response.status_code}")
        print(json.dumps(response.json(), indent=2))
        return 0 if response.status_code == 200 else 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
