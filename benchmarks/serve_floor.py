"""What no server around the iris release can avoid: printed by benchmarks/serve.py next to the
targets, measured in the same run (each figure the best of several rounds, in microseconds).

- the notebook's model path (preprocess -> predict -> postprocess) for 1 row and for 100 rows,
  and the Output validation the contract adds to it, called directly in this process;
- the same model path called as the served release calls it: from an event loop, through the
  release's own guard (the time budget, ``[fallback] timeout_ms``: the model runs in the guard's
  threads so the loop can answer with the fallback when it is late), and that hand-off for a call
  that does nothing. Through the hand-off the model path runs on whichever core the thread wakes
  on, often not the loop's: on this VM that costs more than the hand-off itself (caches). The
  hand-written BentoML service pays it too (its sync API runs in a thread).

Run: .venv/bin/python benchmarks/serve_floor.py RELEASE_DIR   (prints one JSON object)
It imports the release's own ``service`` package (its pipeline and runtime copy), not nb2prod.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

ROWS = 100
FLOWERS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.0, "sepal_width": 2.9, "petal_length": 4.5, "petal_width": 1.5},
    {"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1},
    {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 5.1, "petal_width": 1.9},
]


def best_us(fn: Any, n: int, rounds: int = 5) -> float:
    """The fastest of ``rounds`` runs of ``n`` calls, per call, in microseconds."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - start) / n * 1e6)
    return min(times)


def handed_off_us(guard: Any, fn: Any, *args: Any, n: int, rounds: int = 5) -> float:
    """``fn(*args)`` awaited through ``guard.call`` from an event loop, as the service calls it."""

    async def measure() -> float:
        for _ in range(min(n, 200)):
            await guard.call(fn, *args)
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(n):
                await guard.call(fn, *args)
            times.append((time.perf_counter() - start) / n * 1e6)
        return min(times)

    return asyncio.run(measure())


def main(release: Path) -> dict[str, float]:
    sys.path.insert(0, str(release))
    from service import pipeline  # type: ignore[import-not-found]
    from service.runtime import model  # type: ignore[import-not-found]
    from service.runtime.answer import load_model  # type: ignore[import-not-found]
    from service.runtime.guard import Guard  # type: ignore[import-not-found]
    from service.runtime.schema import ModelManifest, load  # type: ignore[import-not-found]

    manifest = load(ModelManifest, release / "model" / "model.json")
    loaded = load_model(release, manifest, pipeline)
    one = [pipeline.Input(**FLOWERS[0])]
    many = [pipeline.Input(**FLOWERS[i % len(FLOWERS)]) for i in range(ROWS)]
    guard = Guard(timeout_ms=250, min_confidence=None, failures=None, reset_s=1.0,
                  disable_file=None)  # fmt: skip
    outputs = pipeline.postprocess(pipeline.predict(loaded, pipeline.preprocess(many)), many)
    return {
        "model_path_1_us": best_us(lambda: model.run(pipeline, loaded, one), 2000),
        "model_path_100_us": best_us(lambda: model.run(pipeline, loaded, many), 300),
        "output_validation_100_us": best_us(lambda: model.validate_outputs(pipeline, outputs), 300),
        "hand_off_us": handed_off_us(guard, lambda: None, n=2000),
        "handed_off_1_us": handed_off_us(guard, model.run, pipeline, loaded, one, n=2000),
        "handed_off_100_us": handed_off_us(guard, model.run, pipeline, loaded, many, n=300),
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]).resolve())))
