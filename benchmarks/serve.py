"""The generated service against a hand-written BentoML service and a bare Starlette app, all
serving the same model, driven by `wrk`.

Baselines (the same model file, the release's, and the same answer: benchmarks/iris_model.py):
- hand-written: benchmarks/handwritten_service.py, the minimal BentoML service (`@bentoml.api`,
  no auth, metrics, logs, drift, fallback or batching), under `bentoml serve`;
- bare Starlette: benchmarks/starlette_app.py under uvicorn, no BentoML at all: the limit we
  measure ourselves against;
- transport alone: benchmarks/transport_app.py, a raw ASGI app under uvicorn that validates each
  body and answers a fixed one without a model: what the server itself costs per request.
The generated service is served with `bentoml serve` and its bearer token, as in production.

Each service is started alone on loopback and driven by Debian's `wrk` (a C load generator, one
thread: on 2 cores it is not the bottleneck): `/predict` at concurrency 1 and 16, and rows per
second through `/predict_batch` with 100 rows at concurrency 1. Each figure is measured for
`--seconds` after a warm-up; services are measured `--rounds` times in alternating order and
the best round counts (on a shared machine the noise is one-sided: something else took the CPU).
Last, benchmarks/serve_floor.py times what no service around this model avoids (the notebook's
model path, the Output validation, the model path through the time budget's thread hand-off),
and the time per request each target leaves is printed next to the floor: the transport alone
plus the model path through the hand-off, and what is left of the target for everything else
(auth, access log, metrics, drift, guard, the answer's envelope).

Targets (issue #24): generated/hand-written requests/s >= 3 at concurrency 1 and 16; batch rows/s
>= 2x the hand-written; p99 no worse than the hand-written.

Run: apt-get install wrk   (once)
     .venv/bin/python benchmarks/serve.py [RELEASE_DIR] [--rounds N] [--seconds S]
     (without RELEASE_DIR the iris example is packaged first, in a temporary BENTOML_HOME)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nb2prod.adapters import bento  # noqa: E402
from nb2prod.adapters.loopback import free_port, wait_ready  # noqa: E402
from nb2prod.release.reader import Release  # noqa: E402

TOKEN = "benchmark-token-not-secret"
FLOWERS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.0, "sepal_width": 2.9, "petal_length": 4.5, "petal_width": 1.5},
    {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1},
    {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 5.1, "petal_width": 1.9},
]
CONCURRENCY = (1, 16)
BATCH_ROWS = 100
SCRIPT = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


@dataclass
class Figures:
    rps: dict[int, float] = field(default_factory=dict)
    p50_ms: dict[int, float] = field(default_factory=dict)
    p99_ms: dict[int, float] = field(default_factory=dict)
    batch_rows_per_s: float = 0.0


@dataclass(frozen=True)
class Target:
    label: str
    predict: str  # paths
    batch: str
    token: str | None


def wrk(url: str, body: str, token: str | None, concurrency: int, seconds: float) -> tuple[float, float, float]:  # fmt: skip
    """(requests/s, p50 ms, p99 ms) of `wrk` POSTing ``body`` for ``seconds``; every answer
    must be a 200 (wrk counts others as "Non-2xx")."""
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(SCRIPT.format(body=json.dumps(body), auth=auth))
    try:
        run = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--latency", "-s", script.name, url],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        os.unlink(script.name)
    out = run.stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"{url}: not every answer was a 200:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rps, _percentile(out, "50%"), _percentile(out, "99%")


def _percentile(out: str, which: str) -> float:
    found = re.search(rf"^\s+{which}\s+([\d.]+)(us|ms|s|m)\s*$", out, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no {which} latency:\n{out}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def measure(url: str, target: Target, seconds: float) -> Figures:
    one = json.dumps(FLOWERS[0])
    batch = json.dumps({"inputs": [FLOWERS[i % len(FLOWERS)] for i in range(BATCH_ROWS)]})
    wrk(url + target.predict, one, target.token, 16, 2)  # warm-up
    figures = Figures()
    for c in CONCURRENCY:
        figures.rps[c], figures.p50_ms[c], figures.p99_ms[c] = wrk(
            url + target.predict, one, target.token, c, seconds
        )
    wrk(url + target.batch, batch, target.token, 1, 1)  # warm-up
    rps, _, _ = wrk(url + target.batch, batch, target.token, 1, seconds)
    figures.batch_rows_per_s = rps * BATCH_ROWS
    return figures


@contextmanager
def served(label: str, tag: str, release: Path) -> Iterator[str]:
    """The base URL of the service ``label`` while it runs."""
    env = {"BENCH_RELEASE": str(release)}
    if label == "generated":
        with bento.serve(tag, env={"NB2PROD_API_TOKEN": TOKEN}) as server:
            yield server.url
    elif label == "hand-written":
        with bento.serve("handwritten_service:Handwritten", env=env, working_dir=ROOT / "benchmarks") as server:  # fmt: skip
            yield server.url
    else:
        port = free_port()
        module = "starlette_app:app" if label == "bare Starlette" else "transport_app:app"
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", module, "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", "--no-access-log"],
            cwd=ROOT / "benchmarks", env={**os.environ, **env},
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}"
            gone = wait_ready(url, started=time.monotonic(), timeout_s=60,
                              stopped=lambda: None if proc.poll() is None else "exited")  # fmt: skip
            if gone:
                raise RuntimeError(f"the Starlette app did not start: {gone}")
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)


TARGETS = (
    Target("generated", "/v1/predict", "/v1/predict_batch", TOKEN),
    Target("hand-written", "/predict", "/predict_batch", None),
    Target("bare Starlette", "/predict", "/predict_batch", None),
    Target("transport alone", "/predict", "/predict_batch", None),
)


def best(rounds: list[Figures]) -> Figures:
    """Each figure's best value over the rounds (the noise here only ever makes things slower)."""
    return Figures(
        rps={c: max(r.rps[c] for r in rounds) for c in CONCURRENCY},
        p50_ms={c: min(r.p50_ms[c] for r in rounds) for c in CONCURRENCY},
        p99_ms={c: min(r.p99_ms[c] for r in rounds) for c in CONCURRENCY},
        batch_rows_per_s=max(r.batch_rows_per_s for r in rounds),
    )


@contextmanager
def release_dir(given: str | None) -> Iterator[Path]:
    if given:
        yield Path(given).resolve()
        return
    with tempfile.TemporaryDirectory(prefix="nb2prod-bench-") as tmp:
        work = Path(tmp)
        os.environ["BENTOML_HOME"] = str(work / "bentoml")
        os.environ["NB2PROD_CACHE_DIR"] = str(work / "cache")
        for name in ("iris.ipynb", "nb2prod.toml"):
            (work / name).write_bytes((ROOT / "notebooks" / name).read_bytes())
        print("packaging the iris example ...", flush=True)
        subprocess.run(
            [sys.executable, "-m", "nb2prod", "package", str(work / "iris.ipynb"), "--out", str(work / "release")],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        yield work / "release"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("release", nargs="?", help="a release directory (default: package iris)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=5.0, help="per figure")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("benchmarks/serve.py drives the services with wrk: apt-get install wrk")
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    results: dict[str, list[Figures]] = {t.label: [] for t in TARGETS}
    with release_dir(args.release) as release:
        tag = Release.open(release).bento_tag
        for round_ in range(args.rounds):
            order = TARGETS if round_ % 2 == 0 else TARGETS[::-1]
            for target in order:
                print(f"round {round_ + 1}: {target.label} ...", flush=True)
                with served(target.label, tag, release) as url:
                    results[target.label].append(measure(url, target, args.seconds))
        floor = json.loads(
            subprocess.run(
                [sys.executable, str(ROOT / "benchmarks" / "serve_floor.py"), str(release)],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
    gen, hand, bare, transport = (best(results[t.label]) for t in TARGETS)
    print(f"\n{tag}: best of {args.rounds} rounds, {args.seconds:g} s per figure, wrk, cpus: {os.cpu_count()}\n")  # fmt: skip
    print(f"{'':30}{'generated':>11}{'hand-written':>14}{'ratio':>7}{'bare Starlette':>16}{'ratio':>7}")  # fmt: skip

    def row(name: str, g: float, h: float, b: float, fmt: str) -> None:
        print(f"{name:30}{g:>11{fmt}}{h:>14{fmt}}{g / h:>7.2f}{b:>16{fmt}}{g / b:>7.2f}")

    for c in CONCURRENCY:
        row(f"requests/s, concurrency {c}", gen.rps[c], hand.rps[c], bare.rps[c], ".0f")
        row(f"p50 ms, concurrency {c}", gen.p50_ms[c], hand.p50_ms[c], bare.p50_ms[c], ".2f")
        row(f"p99 ms, concurrency {c}", gen.p99_ms[c], hand.p99_ms[c], bare.p99_ms[c], ".2f")
    row(f"batch rows/s ({BATCH_ROWS} rows)", gen.batch_rows_per_s, hand.batch_rows_per_s, bare.batch_rows_per_s, ".0f")  # fmt: skip
    print(f"transport alone: {transport.rps[1]:.0f} requests/s at concurrency 1, {transport.rps[16]:.0f} at 16, {transport.batch_rows_per_s:.0f} batch rows/s")  # fmt: skip
    print("\ntargets (generated against hand-written):")
    for c in CONCURRENCY:
        ratio = gen.rps[c] / hand.rps[c]
        print(f"  requests/s at concurrency {c}: {ratio:.2f}x (target >= 3): {'met' if ratio >= 3 else 'MISSED'}")  # fmt: skip
        worse = gen.p99_ms[c] <= hand.p99_ms[c]
        print(f"  p99 at concurrency {c}: {gen.p99_ms[c]:.2f} ms vs {hand.p99_ms[c]:.2f} ms (target: no worse): {'met' if worse else 'MISSED'}")  # fmt: skip
    gain = gen.batch_rows_per_s / hand.batch_rows_per_s
    print(f"  batch rows/s: {gain:.2f}x (target >= 2): {'met' if gain >= 2 else 'MISSED'}")
    print(f"  against the bare Starlette app (the limit): {gen.rps[1] / bare.rps[1]:.2f}x at concurrency 1, {gen.rps[16] / bare.rps[16]:.2f}x at 16")  # fmt: skip
    print_floor(floor, hand, bare, gen, transport)


def print_floor(
    floor: dict[str, float], hand: Figures, bare: Figures, gen: Figures, transport: Figures
) -> None:
    """What a target leaves per request, next to the floor no service here avoids: the transport
    alone plus the notebook's model path through the time budget's hand-off (serve_floor.py)."""
    rows = BATCH_ROWS
    print("\nwhat the targets leave, microseconds per request (serve_floor.py, same run):")
    print(f"  the notebook's model path alone: {floor['model_path_1_us']:.0f} us for 1 row, {floor['model_path_100_us']:.0f} for {rows} (of which the Output validation {floor['output_validation_100_us']:.0f})")  # fmt: skip
    print(f"  through the time budget's hand-off, as served: {floor['handed_off_1_us']:.0f} us for 1 row, {floor['handed_off_100_us']:.0f} for {rows} (the hand-off of a no-op: {floor['hand_off_us']:.0f})")  # fmt: skip
    cases = (
        ("concurrency 1 at 3x", 1e6 / (3 * hand.rps[1]), 1e6 / transport.rps[1],
         floor["handed_off_1_us"], 1e6 / bare.rps[1], 1e6 / gen.rps[1]),
        ("batch at 2x", 1e6 * rows / (2 * hand.batch_rows_per_s),
         1e6 * rows / transport.batch_rows_per_s, floor["handed_off_100_us"],
         1e6 * rows / bare.batch_rows_per_s, 1e6 * rows / gen.batch_rows_per_s),
    )  # fmt: skip
    for name, leaves, wire, model_path, bare_us, gen_us in cases:
        least = wire + model_path
        print(f"  {name}: the target leaves {leaves:.0f} us; the floor is {least:.0f} (transport alone {wire:.0f} + model path handed off {model_path:.0f}), which leaves {leaves - least:.0f} for auth, access log, metrics, drift, guard and envelope; the generated spends {gen_us - least:.0f} on them (takes {gen_us:.0f}; the bare app {bare_us:.0f})")  # fmt: skip


if __name__ == "__main__":
    main()
