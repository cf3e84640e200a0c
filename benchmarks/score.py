"""Batch scoring against a client loop over the served release, on the same rows.

Rows per second for: `nb2prod score` with the local engine (one process, and one process per
core), the Spark engine in local mode (`local[*]`), and `POST /v1/predict_batch` over loopback
(the iris release served by `bentoml serve`, bodies of 1,000 rows: the route's maximum, its best
case), all on the same generated flowers, and the ratios. Each figure is the best of `--rounds`
(on a shared 2-core machine the noise only ever slows things down). The release is loaded, the
server started and the Spark session created before anything is timed; the scoring jobs' time
includes reading the Parquet input and writing the output and errors files, the client loop's
only the requests (bodies built beforehand).

Target (issue #17): local scoring >= 5x the rows/s of the HTTP batch route.

Run: .venv/bin/python benchmarks/score.py [RELEASE_DIR] [--rows N] [--rounds N] [--no-spark]
     (without RELEASE_DIR the iris example is packaged first, in a temporary BENTOML_HOME)
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from nb2prod.adapters import bento  # noqa: E402
from nb2prod.release.reader import Release  # noqa: E402
from nb2prod.scoring.job import ScoreRequest  # noqa: E402
from nb2prod.scoring.local import cores  # noqa: E402
from nb2prod.scoring.run import score_file  # noqa: E402
from nb2prod.scoring.scorer import load_scorer  # noqa: E402
from serve import TOKEN, release_dir  # noqa: E402

FIELDS = ("sepal_length", "sepal_width", "petal_length", "petal_width")
HTTP_BATCH = 1000


def flowers(count: int) -> list[dict[str, float]]:
    rng = random.Random(5)
    return [{name: round(rng.uniform(0.5, 7.5), 2) for name in FIELDS} for _ in range(count)]


def best(rounds: int, run: Callable[[], float]) -> float:
    """The shortest of ``rounds`` runs, in seconds."""
    return min(run() for _ in range(rounds))


def timed(job: Callable[[], object]) -> float:
    start = time.perf_counter()
    job()
    return time.perf_counter() - start


def http_seconds(tag: str, rows: list[dict[str, float]], rounds: int) -> float:
    bodies = [{"inputs": rows[i : i + HTTP_BATCH]} for i in range(0, len(rows), HTTP_BATCH)]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with (
        bento.serve(tag, env={"NB2PROD_API_TOKEN": TOKEN}) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=120) as client,
    ):

        def loop() -> None:
            for body in bodies:
                response = client.post("/v1/predict_batch", json=body)
                response.raise_for_status()
                response.json()

        client.post("/v1/predict_batch", json=bodies[0]).raise_for_status()  # warm-up
        return best(rounds, lambda: timed(loop))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("release", nargs="?", help="a release directory (default: package iris)")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-spark", action="store_true", help="skip the Spark engine")
    args = parser.parse_args()
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    work = Path(tempfile.mkdtemp(prefix="nb2prod-bench-score-"))
    try:
        with release_dir(args.release) as release:
            tag = Release.open(release).bento_tag
            rows = flowers(args.rows)
            source = work / "flowers.parquet"
            pq.write_table(pa.Table.from_pylist(rows), source)
            load_scorer(release).model  # noqa: B018 -- loaded before timing, as a served model is
            processes = min(cores(), 8)

            def job(engine: str, workers: int | None = None) -> Callable[[], float]:
                out = str(work / f"{engine}-{workers}.parquet")
                request = ScoreRequest(
                    target=str(release), input=str(source), output=out, engine=engine,  # type: ignore[arg-type]
                    workers=workers,
                )  # fmt: skip
                return lambda: timed(lambda: score_file(request))

            print(f"{args.rows:,} rows; best of {args.rounds} rounds (cpus: {os.cpu_count()})")
            seconds = {"local, 1 process": best(args.rounds, job("local", 1))}
            if processes > 1:
                seconds[f"local, {processes} processes"] = best(
                    args.rounds, job("local", processes)
                )
            if not args.no_spark:
                from nb2prod.scoring.spark import session

                spark = session()  # started before timing, like the server
                seconds["spark, local[*]"] = best(args.rounds, job("spark"))
                spark.stop()
            http = http_seconds(tag, rows, args.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'':34}{'rows/s':>10}{'x HTTP batch':>14}")
    for label, value in seconds.items():
        print(f"{label:34}{args.rows / value:>10,.0f}{http / value:>14.2f}")
    print(
        f"{f'/v1/predict_batch ({HTTP_BATCH} rows), loopback':34}{args.rows / http:>10,.0f}{1:>14.2f}"
    )
    local = http / min(v for k, v in seconds.items() if k.startswith("local"))
    verdict = "met" if local >= 5 else "MISSED"
    print(f"\ntarget: local scoring {local:.1f}x the HTTP batch route (target >= 5): {verdict}")


if __name__ == "__main__":
    main()
