"""Batch scoring of a release: ``nb2prod score`` and ``nb2prod.score(dataframe, release)``.

The release's own code answers, never nb2prod's: its ``service/`` package (the notebook's
``pipeline.py`` and the copy of the runtime the release was built with) is imported from the
release under a module name of its own, after every file was checked against ``release.json``,
and the model is loaded by that runtime, which checks its sha256. Each row gets what
``POST /v1/predict`` would answer:

- a row that breaks the contract is not scored; it gets an ``error`` naming each failing field
  (the service's 400);
- the model answers in batches when the release recorded that a batch answers exactly as its
  items alone (``monitoring.json``), else one row per call; a batch that raises is retried row
  by row, so one bad row never degrades the others (as in the service);
- where the model raises, the fallback answers with ``degraded`` true and ``reason`` ``error``;
  where Output has a ``confidence`` below ``[fallback] min_confidence``, ``low_confidence``;
  with ``NB2PROD_MODEL_DISABLED=1``, every row, ``disabled``; without a fallback (or when it
  raises too) the row is unanswered: an ``error`` and the ``reason`` the model did not answer
  (the service's 503).

There is no time budget and no circuit breaker: a batch job waits for the model and tries every
row. Both engines (this one and :mod:`nb2prod.spark`) score through :meth:`Scorer.score_rows`.
"""

from __future__ import annotations

import collections
import hashlib
import importlib
import importlib.util
import json
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import Nb2ProdError, ScoreError
from ..progress import RowProgress, SilentRows
from ..release.review import fields as schema_fields
from .tables import AtomicTable, Piece, Reader, Row, Unreadable, settled, table_format

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_BATCH_SIZE = 1000
PARALLEL_ROWS = (
    1_000_000  # below this, starting worker processes (seconds each) costs more than it saves
)
ENVELOPE = ("model_version", "degraded", "reason")
ERROR = "error"  # JSON list of {"field", "message"}; null when the row was answered
ROW = "row"  # 0-based position of a row in the input, in the errors file
ERRORS_SCHEMA = (pa.field("field", pa.string()), pa.field("message", pa.string()))
COLUMN_TYPES = {  # an Output field's JSON types (null aside) -> its column's type
    frozenset({"number"}): pa.float64(),
    frozenset({"integer", "number"}): pa.float64(),
    frozenset({"integer"}): pa.int64(),
    frozenset({"boolean"}): pa.bool_(),
    frozenset({"string"}): pa.string(),
}


@dataclass(frozen=True)
class RowError:
    field: str | None  # dotted path of the failing field; None for the row as a whole
    message: str


# One input's answer: (the Output or None when nobody could answer, why the fallback was asked
# or None, why there is no answer or None). Plain tuples: one is made per row.
Answer = tuple[Any, str | None, str | None]


def _summary(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


class Scorer:
    """One release's pipeline, imported from the release for scoring (see the module docstring).

    The model is loaded on first use: a Spark driver only needs the contract.
    """

    def __init__(self, root: Path) -> None:
        service = root / "service"
        metadata_file = service / "metadata.json"
        if not metadata_file.is_file():
            raise ScoreError(f"{metadata_file}: missing; is {root} an nb2prod release?")
        digest = hashlib.sha256(metadata_file.read_bytes()).hexdigest()[:16]
        self.root = root
        self.module = f"_nb2prod_release_{digest}"
        self.pipeline = self._import("pipeline")
        self.runtime = self._import("runtime.model")
        self._guard = self._import("runtime.guard")
        schema = self._import("runtime.schema")
        try:
            self.metadata = schema.load(schema.ServiceMetadata, metadata_file)
            self.manifest = schema.load(schema.ModelManifest, root / "model" / "model.json")
            batching = schema.load(schema.MonitoringPlan, service / "monitoring.json").batching
        except (OSError, ValueError) as exc:
            raise ScoreError(str(exc)) from None
        # a pipeline that answers a batch differently from its items is called row by row, as
        # the service answers it
        self.one_by_one: str | None = batching.why if batching.items_alone else None
        self.Input = self.pipeline.Input
        self.Output = self.pipeline.Output
        from pydantic import TypeAdapter

        self._inputs = TypeAdapter(list[self.Input])  # type: ignore[name-defined]
        self._outputs = TypeAdapter(list[self.Output])  # type: ignore[name-defined]
        contract = self.Input.model_json_schema()
        self.input_fields: tuple[str, ...] = tuple(contract.get("properties", {}))
        self.required: tuple[str, ...] = tuple(contract.get("required", ()))
        kinds = {
            name: spec.types - {"null"}
            for name, spec in schema_fields(
                self.Output.model_json_schema(mode="serialization")
            ).items()
        }
        self.output_types = {
            name: COLUMN_TYPES.get(kind, pa.string()) for name, kind in kinds.items()
        }
        # objects, arrays and unions are carried as their JSON text (every format holds text)
        self.as_json = frozenset(name for name, kind in kinds.items() if kind not in COLUMN_TYPES)
        clash = sorted(set(self.output_types) & {*ENVELOPE, ERROR, ROW})
        if clash:
            raise ScoreError(
                f"{root}: Output field {clash[0]!r} has the name of a column batch scoring adds",
                hint=f"Rename it in the notebook's contract ({', '.join([*ENVELOPE, ERROR])} are taken).",
            )
        self._output_schema = pa.schema(
            [pa.field(name, kind) for name, kind in self.output_types.items()]
        )
        self.schema = pa.schema(
            [
                *self._output_schema,
                pa.field("model_version", pa.string()),
                pa.field("degraded", pa.bool_()),
                pa.field("reason", pa.string()),
                pa.field(ERROR, pa.string()),
            ]
        )

    def _import(self, name: str) -> ModuleType:
        """``service.<name>`` of the release, under this release's own package name."""
        if self.module not in sys.modules:
            init = self.root / "service" / "__init__.py"
            spec = importlib.util.spec_from_file_location(
                self.module, init, submodule_search_locations=[str(init.parent)]
            )
            assert spec is not None and spec.loader is not None
            package = importlib.util.module_from_spec(spec)
            sys.modules[self.module] = package
            try:
                spec.loader.exec_module(package)
            except BaseException:
                del sys.modules[self.module]
                raise
        try:
            return importlib.import_module(f"{self.module}.{name}")
        except Exception as exc:
            raise ScoreError(
                f"{self.root}/service/{name.replace('.', '/')}.py cannot be imported: {_summary(exc)}",
                hint="Scoring runs the release's own code: install its requirements.lock "
                "(pip install -r requirements.lock) in this environment.",
            ) from None

    @property
    def name(self) -> str:
        return str(self.metadata.release.name)

    @property
    def version(self) -> str:
        return str(self.metadata.release.version)

    @cached_property
    def model(self) -> Any:
        manifest = self.manifest
        directory = self.root / "model"
        try:
            model = self.runtime.load_model(
                directory / manifest.file, manifest.sha256, manifest.format, list(manifest.trusted)
            )
            # fitted state the notebook's service code reads by name, as the service loads it
            self.runtime.load_artifacts(directory, manifest.artifacts, self.pipeline)
        except Exception as exc:
            raise ScoreError(f"the release's model cannot be loaded: {_summary(exc)}") from None
        return model

    def guard(self) -> Any:
        """The release's own guard (confidence floor; NB2PROD_MODEL_DISABLED read now)."""
        fallback = self.metadata.release.fallback
        return self._guard.Guard(
            timeout_ms=None,
            min_confidence=fallback.min_confidence,
            failures=fallback.circuit_breaker.failures,
            reset_s=fallback.circuit_breaker.reset_s,
            disable_file=self.metadata.service.disable_file,
        )

    # ------------------------------------------------------------------ scoring

    def score_rows(self, rows: Sequence[Row], guard: Any, batch_size: int) -> pa.Table:
        """One result per row, in order: the Output fields, the envelope and ``error``."""
        errors: dict[int, list[RowError]] = {}
        positions, inputs = self._validate(rows, errors)
        size = 1 if self.one_by_one else batch_size
        answers: list[Answer] = []
        for start in range(0, len(inputs), size):
            answers += self.answer(inputs[start : start + size], guard)
        return self._table(len(rows), positions, answers, errors)

    def _validate(
        self, rows: Sequence[Row], errors: dict[int, list[RowError]]
    ) -> tuple[list[int], list[Any]]:
        from pydantic import ValidationError

        candidates: list[tuple[int, dict[str, Any]]] = []
        for position, row in enumerate(rows):
            if isinstance(row, Unreadable):
                errors[position] = [RowError(None, row.message)]
            else:
                candidates.append((position, row))
        try:  # one pass for the whole chunk: pydantic-core loops, names every failing row
            return [p for p, _ in candidates], self._inputs.validate_python(
                [r for _, r in candidates]
            )
        except ValidationError as exc:
            failed: dict[int, list[RowError]] = {}
            for error in exc.errors(include_url=False, include_input=False):
                index, *path = error["loc"]
                field_path = ".".join(str(part) for part in path) or None
                failed.setdefault(int(index), []).append(RowError(field_path, error["msg"]))
        for index, found in failed.items():
            errors[candidates[index][0]] = found
        valid = [c for k, c in enumerate(candidates) if k not in failed]
        return [p for p, _ in valid], self._inputs.validate_python([r for _, r in valid])

    def answer(self, inputs: list[Any], guard: Any) -> list[Answer]:
        """What the service's answer path (``runtime.app.Handlers.answer``) gives each input."""
        if guard.disabled:
            return [self._fallback(inp, "disabled", None) for inp in inputs]
        try:
            outputs = self.runtime.run(self.pipeline, self.model, inputs)
        except Exception as exc:
            if len(inputs) > 1:  # one bad row must not degrade the others: retry row by row
                return [self.answer([inp], guard)[0] for inp in inputs]
            return [self._fallback(inputs[0], "error", exc)]
        if guard.min_confidence is None:  # the guard's low_confidence is always False then
            return [(out, None, None) for out in outputs]
        return [
            self._fallback(inp, "low_confidence", None)
            if guard.low_confidence(out)
            else (out, None, None)
            for inp, out in zip(inputs, outputs, strict=True)
        ]

    def _fallback(self, inp: Any, reason: str, exc: BaseException | None) -> Answer:
        why = {
            "disabled": "the model is switched off (NB2PROD_MODEL_DISABLED)",
            "low_confidence": "the model's confidence is below [fallback] min_confidence",
        }.get(reason) or f"the model could not answer ({_summary(exc) if exc else reason})"
        if not self.metadata.release.fallback.available:
            return (None, reason, f"{why} and the notebook defines no fallback")
        try:
            return (self.runtime.fallback(self.pipeline, inp), reason, None)
        except Exception as fallback_exc:
            return (None, reason, f"{why} and the fallback failed ({_summary(fallback_exc)})")

    def _table(
        self,
        count: int,
        positions: list[int],
        answers: list[Answer],
        errors: dict[int, list[RowError]],
    ) -> pa.Table:
        version: list[str | None] = [None] * count
        degraded: list[bool | None] = [None] * count
        reason: list[str | None] = [None] * count
        error: list[str | None] = [None] * count
        taken: list[int | None] = [None] * count  # row -> its place among the answered rows
        answered: list[Any] = []
        model_version = self.version
        for position, (output, why, failure) in zip(positions, answers, strict=True):
            reason[position] = why
            if output is None:
                errors[position] = [RowError(None, failure or "no answer")]
                continue
            taken[position] = len(answered)
            answered.append(output)
            version[position] = model_version
            degraded[position] = why is not None
        values = self._outputs.dump_python(answered, mode="json")
        for name in self.as_json:  # objects and arrays: their JSON text
            for value in values:
                if value.get(name) is not None:
                    value[name] = json.dumps(value[name])
        outputs = pa.Table.from_pylist(values, schema=self._output_schema)
        if len(answered) < count:  # invalid and unanswered rows get nulls
            outputs = outputs.take(pa.array(taken, pa.int64()))
        for position, found in errors.items():
            error[position] = json.dumps([{"field": e.field, "message": e.message} for e in found])
        envelope = [
            pa.array(version, pa.string()),
            pa.array(degraded, pa.bool_()),
            pa.array(reason, pa.string()),
            pa.array(error, pa.string()),
        ]
        return pa.Table.from_arrays([*outputs.columns, *envelope], schema=self.schema)


_LOADED: dict[tuple[Path, str], Scorer] = {}


def load_scorer(root: Path) -> Scorer:
    """The release at ``root``, imported once per process (Spark's Python workers reuse it);
    a release replaced at the same path since is imported anew."""
    root = root.resolve()
    metadata = root / "service" / "metadata.json"
    key = (root, hashlib.sha256(metadata.read_bytes()).hexdigest() if metadata.is_file() else "")
    if key not in _LOADED:
        _LOADED[key] = Scorer(root)
    return _LOADED[key]


def release_root(target: str | Path) -> Path:
    """The directory of TARGET's service/ and model/, its files checked first
    (:meth:`~nb2prod.release.reader.Release.check_integrity`: a release directory's every file
    against ``release.json``, the runtime copy against ``service/metadata.json``; the model's
    sha256 is checked when it is loaded)."""
    from ..release.reader import resolve

    release = resolve(str(target))
    release.check_integrity()
    return release.root.resolve()


def check_columns(scorer: Scorer, columns: Sequence[str] | None, keep: Sequence[str]) -> None:
    """Refuse a job that cannot work before scoring a row: a missing Input field or kept column."""
    taken = {*scorer.output_types, *ENVELOPE, ERROR, ROW}
    for name in keep:
        if name in taken:
            raise ScoreError(
                f"--keep {name}: the output already has a column {name!r}",
                hint="Rename the column in the input.",
            )
    if len(set(keep)) != len(keep):
        raise ScoreError("--keep names a column twice")
    if columns is None:
        return  # JSON Lines: each line names its own fields
    for name in keep:
        if name not in columns:
            raise ScoreError(f"--keep {name}: the input has no such column ({', '.join(columns)})")
    missing = [name for name in scorer.required if name not in columns]
    if missing:
        raise ScoreError(
            f"the input has no column {missing[0]!r}, which Input requires "
            f"(Input fields: {', '.join(scorer.input_fields)})",
            hint="Rename the input's columns to the contract's field names (nb2prod contract show).",
        )


def check_kept_json(kept: pa.Table, rows: int) -> None:
    """A kept field no line of the first piece has is a typo, not a column of nulls."""
    for name in kept.column_names:
        if rows and kept[name].null_count == rows:
            raise ScoreError(f"--keep {name}: none of the first {rows:,} lines has this field")


# ---------------------------------------------------------------------- the job


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


def score_piece(
    scorer: Scorer, guard: Any, piece: Piece, keep: Sequence[str], batch_size: int
) -> pa.Table:
    """One piece scored: its kept columns, ``row`` (position in the input) and the results."""
    result = scorer.score_rows(piece.rows(scorer.input_fields), guard, batch_size)
    kept = piece.keep(keep)
    rows = pa.array(range(piece.first_row, piece.first_row + piece.num_rows), pa.int64())
    return pa.Table.from_arrays(
        [*kept.columns, rows, *result.columns],
        names=[*kept.column_names, ROW, *result.column_names],
    )


_WORKER: list[Any] = []  # (scorer, guard) of a worker process, or the error that stopped it


def _start_worker(root: Path, disabled: bool) -> None:
    try:
        scorer = load_scorer(root)
        scorer.model  # noqa: B018 -- loaded once here, not inside the first piece
    except Nb2ProdError as exc:  # raised with the first piece: a failing initializer only
        _WORKER[:] = [exc]  # says "broken pool"
        return
    guard = scorer.guard()
    guard.disabled = disabled  # the parent's decision, whatever this process's environment
    _WORKER[:] = [scorer, guard]


def _score_in_worker(piece: Piece, keep: Sequence[str], batch_size: int) -> pa.Table:
    if isinstance(_WORKER[0], Nb2ProdError):
        raise _WORKER[0]
    return score_piece(_WORKER[0], _WORKER[1], piece, keep, batch_size)


def scored_pieces(
    scorer: Scorer,
    guard: Any,
    pieces: Iterable[Piece],
    keep: Sequence[str],
    batch_size: int,
    workers: int,
) -> Iterator[pa.Table]:
    """Each piece scored, in input order; with ``workers`` > 1 in that many processes.

    Workers are spawned (never forked: pyarrow's and the model's threads do not survive a
    fork) and each imports the release once; at most two pieces per worker are in flight.
    """
    if workers <= 1:
        for piece in pieces:
            yield score_piece(scorer, guard, piece, keep, batch_size)
        return
    pool = ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(scorer.root, bool(guard.disabled)),
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


def check_batch_size(batch_size: int) -> None:
    """Every entry point (CLI, nb2prod.score, nb2prod.spark.score) refuses the same sizes."""
    if batch_size < 1:
        raise ScoreError(f"batch size (--batch-size) must be at least 1 (got {batch_size})")


def score_file(request: ScoreRequest, progress: RowProgress | None = None) -> ScoreSummary:
    """Score INPUT into OUTPUT (and the errors file) with the release's pipeline."""
    check_batch_size(request.batch_size)
    paths = (request.input, request.output, request.errors_path)
    for path in paths:
        table_format(path)
    if len({str(Path(p).resolve()) for p in paths}) < len(paths):
        raise ScoreError(f"{request.output}: INPUT, OUTPUT and the errors file must differ")
    if request.engine == "spark":
        from .spark import score_file as spark_score_file

        return spark_score_file(request, progress)
    if request.master is not None:
        raise ScoreError("--master is a Spark setting: add --engine spark")
    progress = progress or SilentRows()
    started = time.perf_counter()
    scorer = load_scorer(release_root(request.target))
    reader = Reader(Path(request.input))
    check_columns(scorer, reader.columns, request.keep)
    total = reader.total()
    workers = request.workers or default_workers(total)
    if workers <= 1:
        scorer.model  # noqa: B018 -- a broken model fails here, before any file is opened
    guard = scorer.guard()
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
                scorer, guard, pieces, request.keep, request.batch_size, workers
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
    guard = scorer.guard()
    fields = [name for name in scorer.input_fields if name in dataframe.columns]
    records = dataframe[fields].to_dict("records")
    parts = [
        scorer.score_rows(
            [
                {k: v for k, v in record.items() if _given(v)}
                for record in records[start : start + batch_size]
            ],
            guard,
            batch_size,
        )
        for start in range(0, len(records), batch_size)
    ]
    result = (pa.concat_tables(parts) if parts else scorer.schema.empty_table()).to_pandas()
    result.index = dataframe.index
    return pd.concat([dataframe[kept], result], axis=1) if kept else result
