"""Timings of the serving path in the kernel: the whole pipeline, and the model's predict alone."""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from ..runtime import model as runtime
from .protocol import LatencySamples

ROUNDS = {1: 50, 32: 20}  # batch size -> timed calls


def measure(pipeline: ModuleType, model: Any, inputs: Sequence[Any]) -> dict[str, LatencySamples]:
    timings = {}
    for size, rounds in ROUNDS.items():
        batch = [inputs[i % len(inputs)] for i in range(size)]
        features = pipeline.preprocess(batch)
        runtime.run(pipeline, model, batch)  # warm-up
        whole, model_only = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            runtime.run(pipeline, model, batch)
            whole.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            pipeline.predict(model, features)
            model_only.append((time.perf_counter() - start) * 1000)
        timings[str(size)] = LatencySamples(pipeline_ms=tuple(whole), model_ms=tuple(model_only))
    return timings
