"""``nb2prod loadtest``: load a served release with Locust and hold it to its ``[slo]``.

The release is served on loopback (``bentoml serve``, or its image with ``--image``) with a fresh
token; :mod:`nb2prod.adapters.locust` runs the release's locustfile against it with the inputs of
:func:`nb2prod.ops.loadplan.loadtest_settings` (the examples, and inputs generated from the contract's
JSON Schema); the summary is written as ``report.json`` and ``report.html`` (with the latency
over time), beside the locustfile and its settings.
The same locustfile and settings are in every release's ``deploy/`` for a deployed URL.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters import bento, charts, container
from ..adapters import locust as locust_adapter
from ..image.containerize import check_built_from
from ..release.reader import resolve
from ..release.writer import canonical_json
from ..resources import render_template
from ..version import __version__
from .observability import LOADTEST_SETTINGS, LOCUSTFILE_PATH, observability_files
from .slo import observed_from


@dataclass(frozen=True)
class LoadTestRequest:
    target: str  # a release directory or bento tag
    users: int
    rate: float | None  # requests/s in total; None: the [slo]'s expected_rps
    duration_s: float
    out: Path | None  # where loadtest.json and loadtest.html go
    image: str | None = None  # run this image instead of bentoml serve
    backend: str | None = None


@dataclass(frozen=True)
class LoadTestResult:
    summary: Mapping[str, Any]  # what the locustfile measured and checked (loadtest.json)
    json_path: Path
    html_path: Path

    @property
    def ok(self) -> bool:
        return bool(self.summary["ok"])


def run_loadtest(request: LoadTestRequest, on_line: Callable[[str], None]) -> LoadTestResult:
    """Serve the target, load it, and write loadtest.json and loadtest.html."""
    release = resolve(request.target)
    observed = observed_from(release)
    out = request.out or Path(f"loadtest-{observed.name}-{observed.version}")
    out.mkdir(parents=True, exist_ok=True)
    # the files a release carries in deploy/, so the load can be run again by hand
    files = observability_files(observed)
    locustfile = out / "locustfile.py"
    locustfile.write_bytes(files[LOCUSTFILE_PATH])
    (out / "loadtest.json").write_bytes(files[LOADTEST_SETTINGS])
    load = locust_adapter.Load(
        users=request.users,
        rate=request.rate or observed.slo.expected_rps,
        duration_s=request.duration_s,
    )
    token = secrets.token_urlsafe(24)
    json_path = out / "report.json"
    with _served(release.bento_tag, request.image, request.backend, token) as url:
        on_line(f"loading {url} with {load.users} users at {load.rate:g} requests/s for "
                f"{load.duration_s:g} s")  # fmt: skip
        summary = locust_adapter.run(url, token, locustfile, load, json_path, on_line)
    summary = {**summary, "target": request.target, "image": request.image}
    json_path.write_bytes(canonical_json(summary))
    html_path = out / "report.html"
    html_path.write_bytes(loadtest_page(summary))
    return LoadTestResult(summary, json_path, html_path)


@contextmanager
def _served(tag: str, image: str | None, backend: str | None, token: str) -> Iterator[str]:
    env = {"NB2PROD_API_TOKEN": token}
    if image is None:
        with bento.serve(tag, env=env) as server:
            yield server.url
    else:
        engine = container.choose(backend, need_run=True)
        check_built_from(image, engine, tag)  # load the image of this release, not another's
        with container.run_service(engine, image, env=env) as running:
            yield running.url


def loadtest_page(summary: Mapping[str, Any]) -> bytes:
    """loadtest.html: the verdict, the objectives table and the latency over time."""
    picture = charts.latency_over_time(
        summary["timeline"], summary["slo"]["p95_ms"], summary["slo"]["p99_ms"]
    )
    return render_template(
        "loadtest.html.j2",
        {"s": summary, "png": base64.b64encode(picture).decode(), "nb2prod_version": __version__},
        html=True,
    )
