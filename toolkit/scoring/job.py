"""A scoring job: what ``nb2prod score`` is asked (:class:`ScoreRequest`) and what it did
(:class:`ScoreSummary`), the same for both engines."""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from ..errors import ScoreError

DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True)
class ScoreRequest:
    target: str
    input: str  # a path; with Spark, any URI Spark reads (hdfs://, s3a://, ...)
    output: str
    errors: str | None = None  # default: <output stem>.errors.jsonl beside the output
    keep: tuple[str, ...] = ()
    batch_size: int = DEFAULT_BATCH_SIZE
    engine: Literal["local", "spark"] = "local"
    master: str | None = None  # Spark only; default local[*]
    workers: int | None = None  # local only; default: one per core for large inputs

    @property
    def errors_path(self) -> str:
        """The errors file: given, or ``<output without extension>.errors.jsonl``."""
        if self.errors:
            return self.errors
        suffix = PurePosixPath(self.output).suffix
        return self.output[: len(self.output) - len(suffix)] + ".errors.jsonl"


@dataclass(frozen=True)
class ScoreSummary:
    """What a scoring job did; every row is in exactly one of answered, invalid, unanswered."""

    name: str
    version: str
    engine: str
    rows: int
    answered: int
    degraded: Mapping[str, int]  # answered by the fallback, by reason
    invalid: int  # broke the contract
    unanswered: int  # the model could not answer and no fallback did
    seconds: float
    output: str
    errors: str
    one_by_one: str | None = None  # why the model was called row by row

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else math.inf


def tally(counts: collections.Counter[tuple[bool, str | None]]) -> dict[str, Any]:
    """answered / degraded / invalid / unanswered from (has an error, reason) counts."""
    degraded = {r: n for (failed, r), n in counts.items() if not failed and r is not None}
    return {
        "rows": sum(counts.values()),
        "answered": sum(n for (failed, _), n in counts.items() if not failed),
        "degraded": dict(sorted(degraded.items())),
        "invalid": sum(n for (failed, r), n in counts.items() if failed and r is None),
        "unanswered": sum(n for (failed, r), n in counts.items() if failed and r is not None),
    }


def check_batch_size(batch_size: int) -> None:
    """Every entry point (CLI, nb2prod.score, nb2prod.spark.score) refuses the same sizes."""
    if batch_size < 1:
        raise ScoreError(f"batch size (--batch-size) must be at least 1 (got {batch_size})")
