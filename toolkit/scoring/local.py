"""Batch scoring on this machine: ``nb2prod score`` (the local engine) and ``nb2prod.score``.

A file is read in pieces (:mod:`.tables`), each piece scored by :func:`.scorer.score_piece`, in
this process or, for large inputs, in one spawned process per core; the output and the errors
file are written atomically. A pandas DataFrame is scored in this process, in chunks of
``batch_size`` rows.
"""

from __future__ import annotations

import collections
import json
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import Nb2ProdError, ScoreError
from ..progress import RowProgress, SilentRows
from .job import DEFAULT_BATCH_SIZE, ScoreRequest, ScoreSummary, check_batch_size, tally
from .scorer import (
    ERROR,
    ROW,
    Scorer,
    check_columns,
    check_kept_json,
    load_scorer,
    release_root,
    score_piece,
)
from .tables import AtomicTable, Piece, Reader, settled

if TYPE_CHECKING:
    import pandas as pd

PARALLEL_ROWS = (
    1_000_000  # below this, starting worker processes (seconds each) costs more than it saves
)
ERRORS_SCHEMA = (pa.field("field", pa.string()), pa.field("message", pa.string()))


def error_lines(result: pa.Table, keep: Sequence[str]) -> list[dict[str, Any]]:
    """One errors-file line per failing field: row, the kept columns, field, message."""
    lines = []
    for row in result.filter(pc.is_valid(result[ERROR])).to_pylist():
        for error in json.loads(row[ERROR]):
            lines.append({ROW: row[ROW], **{k: row[k] for k in keep}, **error})
    return lines


def errors_schema(keep_schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(ROW, pa.int64()), *keep_schema, *ERRORS_SCHEMA])


def output_schema(scorer: Scorer, keep_schema: pa.Schema) -> pa.Schema:
    """The output file's columns: kept columns, Output fields, the envelope."""
    return pa.schema([*keep_schema, *(f for f in scorer.schema if f.name != ERROR)])


_WORKER: list[Any] = []  # (scorer, answerer) of a worker process, or the error that stopped it


def _start_worker(root: Path, disabled: bool) -> None:
    try:
        scorer = load_scorer(root)
        answerer = scorer.answerer(disabled)  # the model loaded once here, not in the first piece
    except Nb2ProdError as exc:  # raised with the first piece: a failing initializer only
        _WORKER[:] = [exc]  # says "broken pool"
        return
    _WORKER[:] = [scorer, answerer]


def _score_in_worker(piece: Piece, keep: Sequence[str], batch_size: int) -> pa.Table:
    if isinstance(_WORKER[0], Nb2ProdError):
        raise _WORKER[0]
    return score_piece(_WORKER[0], _WORKER[1], piece, keep, batch_size)


def scored_pieces(
    scorer: Scorer,
    disabled: bool,
    pieces: Iterable[Piece],
    keep: Sequence[str],
    batch_size: int,
    workers: int,
) -> Iterator[pa.Table]:
    """Each piece scored, in input order; with ``workers`` > 1 in that many processes.

    Workers are spawned (never forked: pyarrow's and the model's threads do not survive a
    fork) and each imports the release once; at most two pieces per worker are in flight.
    The kill switch is ``disabled``, this process's decision, whatever a worker's environment.
    """
    if workers <= 1:
        answerer = scorer.answerer(disabled)
        for piece in pieces:
            yield score_piece(scorer, answerer, piece, keep, batch_size)
        return
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(scorer.root, disabled),
    )
    pending: collections.deque[Future[pa.Table]] = collections.deque()
    try:
        for piece in pieces:
            pending.append(pool.submit(_score_in_worker, piece, tuple(keep), batch_size))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    except BrokenProcessPool:
        raise ScoreError(
            "a scoring worker process died (out of memory, or killed)",
            hint="Try fewer --workers or a smaller --batch-size.",
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_workers(rows: int) -> int:
    """One process for small inputs (starting workers costs seconds), else one per core."""
    return 1 if rows < PARALLEL_ROWS else max(1, min(cores(), 8))


def score_file(request: ScoreRequest, progress: RowProgress | None = None) -> ScoreSummary:
    """Score INPUT into OUTPUT (and the errors file) on this machine (the request checked by
    :func:`.run.score_file`)."""
    progress = progress or SilentRows()
    started = time.perf_counter()
    scorer = load_scorer(release_root(request.target))
    reader = Reader(Path(request.input))
    check_columns(scorer, reader.columns, request.keep)
    total = reader.total()
    workers = request.workers or default_workers(total)
    if workers <= 1:
        scorer.model  # noqa: B018 -- a broken model fails here, before any file is opened
    disabled = scorer.switched_off()
    counts: collections.Counter[tuple[bool, str | None]] = collections.Counter()
    keep_schema: pa.Schema | None = None  # the first piece's (JSON Lines infers types)
    progress.start(f"scoring {Path(request.input).name}", total)
    try:
        with (
            AtomicTable(Path(request.output)) as output,
            AtomicTable(Path(request.errors_path)) as errors,
        ):
            pieces = reader.pieces(request.batch_size)
            for scored in scored_pieces(
                scorer, disabled, pieces, request.keep, request.batch_size, workers
            ):
                if keep_schema is None:
                    kept = scored.select(list(request.keep))
                    if reader.columns is None:
                        check_kept_json(kept, scored.num_rows)
                    keep_schema = settled(kept.schema)
                answered = pc.is_null(scored[ERROR])
                output.write(scored.filter(answered), output_schema(scorer, keep_schema))
                lines = error_lines(scored, request.keep)
                if lines:
                    errors.write(pa.Table.from_pylist(lines), errors_schema(keep_schema))
                failed = pc.invert(answered).to_pylist()
                counts.update(zip(failed, scored["reason"].to_pylist(), strict=True))
                progress.advance(scored.num_rows)
            keep_schema = keep_schema or pa.schema([(k, pa.string()) for k in request.keep])
            errors.commit(errors_schema(keep_schema))
            output.commit(output_schema(scorer, keep_schema))
    finally:
        progress.stop()
    return ScoreSummary(
        name=scorer.name,
        version=scorer.version,
        engine="local" if workers <= 1 else f"local, {workers} processes",
        seconds=time.perf_counter() - started,
        output=request.output,
        errors=request.errors_path,
        one_by_one=scorer.one_by_one,
        **tally(counts),
    )


# ---------------------------------------------------------------------- Python API


def _given(value: Any) -> bool:
    """False for what pandas uses to mean "no value" (None, NaN, NA, NaT)."""
    if value is None:
        return False
    try:
        return not bool(value != value)  # NaN, NaT and NA are not equal to themselves
    except (TypeError, ValueError):
        return True  # arrays, NA's ambiguous truth: a value


def score(
    dataframe: pd.DataFrame,
    release: str | Path,
    *,
    keep: Iterable[str] = (),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pd.DataFrame:
    """Score a pandas DataFrame with a release (a release directory or a bento tag).

    Returns one row per input row, with the same index: the ``keep`` columns, the Output
    fields, ``model_version``, ``degraded``, ``reason`` and ``error`` (null when the row was
    answered; else a JSON list of ``{"field", "message"}``: fields that break the contract, or
    why neither the model nor a fallback answered). Columns that are not Input fields are
    ignored; a missing value (None, NaN, NA, NaT) is a field not given.
    """
    import pandas as pd

    check_batch_size(batch_size)
    kept = list(keep)
    scorer = load_scorer(release_root(release))
    check_columns(scorer, [str(c) for c in dataframe.columns], kept)
    disabled = scorer.switched_off()
    fields = [name for name in scorer.input_fields if name in dataframe.columns]
    records = dataframe[fields].to_dict("records")
    parts = []
    if records:  # the model is loaded for rows to answer
        answerer = scorer.answerer(disabled)
        parts = [
            scorer.score_rows(
                [
                    {k: v for k, v in record.items() if _given(v)}
                    for record in records[start : start + batch_size]
                ],
                answerer,
                batch_size,
            )
            for start in range(0, len(records), batch_size)
        ]
    result = (pa.concat_tables(parts) if parts else scorer.schema.empty_table()).to_pandas()
    result.index = dataframe.index
    return pd.concat([dataframe[kept], result], axis=1) if kept else result
