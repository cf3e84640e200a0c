"""``nb2prod score``: a scoring request checked once, then scored by the engine it names."""

from __future__ import annotations

from pathlib import Path

from ..errors import ScoreError
from ..progress import RowProgress
from . import local, spark
from .job import ScoreRequest, ScoreSummary, check_batch_size
from .tables import table_format


def score_file(request: ScoreRequest, progress: RowProgress | None = None) -> ScoreSummary:
    """Score INPUT into OUTPUT (and the errors file) with the release's pipeline."""
    check_batch_size(request.batch_size)
    paths = (request.input, request.output, request.errors_path)
    for path in paths:
        table_format(path)
    if len({str(Path(p).resolve()) for p in paths}) < len(paths):
        raise ScoreError(f"{request.output}: INPUT, OUTPUT and the errors file must differ")
    if request.engine == "spark":
        return spark.score_file(request, progress)
    if request.master is not None:
        raise ScoreError("--master is a Spark setting: add --engine spark")
    return local.score_file(request, progress)
