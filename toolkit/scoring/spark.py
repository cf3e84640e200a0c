"""Batch scoring on Spark: ``nb2prod score --engine spark`` and ``nb2prod.spark.score``.

    from nb2prod.spark import score
    scored = score(spark.read.parquet("s3a://bucket/rows"), "dist/iris-classifier-1.0.0", keep=["id"])

The release travels to the executors as one zip of its ``service/`` and ``model/`` files
(``SparkContext.addFile``), named by its sha256, which each executor checks before unpacking it.
Each Python worker imports the release once and scores the Arrow batches Spark hands it
(``mapInArrow``: no conversion to pandas and back, so a null stays a null and an integer an
integer) with the same :class:`.scorer.Scorer` as the local engine: the answers are the local engine's,
row for row. Executors need what the release needs: the Python minor version it
was built with, its ``requirements.lock`` installed, and nb2prod (with pyarrow); docs/batch.md.
"""

from __future__ import annotations

import atexit
import collections
import os
import shutil
import sys
import tempfile
import time
import uuid
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..errors import MissingToolError, ScoreError
from ..progress import RowProgress
from ..release.writer import sha256_file
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
from .tables import Piece, settled, table_format

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

INSTALL_HINT = "pip install 'nb2prod[spark]' (PySpark; Java from Debian: apt-get install openjdk-17-jre-headless)"
JSON_LINE = "value"  # the column spark.read.text gives each line in
# pyspark warns about pandas 3 on every Arrow call although mapInArrow never touches pandas
warnings.filterwarnings(
    "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
)


def _pyspark() -> Any:
    try:
        import pyspark
    except ImportError:
        raise MissingToolError(
            "the Spark engine needs PySpark, which is not installed", hint=INSTALL_HINT
        ) from None
    return pyspark


def session(master: str | None = None) -> SparkSession:
    """A Spark session for the command line: ``local[*]`` unless ``master`` says otherwise."""
    _pyspark()
    from pyspark.sql import SparkSession

    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise MissingToolError(
            "the Spark engine needs Java, and there is no `java` on PATH nor JAVA_HOME",
            hint="apt-get install openjdk-17-jre-headless",
        )
    # local mode's Python workers must be this interpreter (the one with nb2prod and the
    # release's packages); on a cluster the executors' own Python is set by its configuration
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    master = master or "local[*]"
    builder = SparkSession.builder.master(master).appName("nb2prod score")
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # everything on loopback
        builder = (
            builder.config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")  # no web UI port opened for a batch job
        )
    fresh = SparkSession.getActiveSession() is None
    try:
        spark = builder.getOrCreate()
    except Exception as exc:
        raise ScoreError(f"Spark did not start ({master}): {_first_line(exc)}") from None
    if fresh:  # our own session: Spark's stage progress bar, not its INFO and WARN lines
        spark.sparkContext.setLogLevel("ERROR")
    return spark


# ---------------------------------------------------------------- shipping the release

_SHIPPED: dict[tuple[str, str], str] = {}  # (application id, zip sha256) -> file name
_UNPACKED: dict[str, Scorer] = {}  # zip sha256 -> the release, in an executor's worker


def ship(spark: SparkSession, root: Path) -> tuple[str, str]:
    """Add ``root``'s service/ and model/ to the Spark job as one zip: (file name, sha256)."""
    scratch = Path(tempfile.mkdtemp(prefix="nb2prod-spark-"))
    atexit.register(shutil.rmtree, scratch, True)  # Spark serves the file until the end
    archive = scratch / "release.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for folder in ("service", "model"):
            for path in sorted((root / folder).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    info = zipfile.ZipInfo(str(path.relative_to(root)), (1980, 1, 1, 0, 0, 0))
                    zipped.writestr(info, path.read_bytes(), zipfile.ZIP_DEFLATED)
    digest = sha256_file(archive)
    key = (spark.sparkContext.applicationId, digest)
    if key not in _SHIPPED:
        name = f"nb2prod-release-{digest[:16]}.zip"
        archive.rename(scratch / name)
        spark.sparkContext.addFile(str(scratch / name))
        _SHIPPED[key] = name
    return _SHIPPED[key], digest


def _unpacked(name: str, digest: str) -> Scorer:
    """On an executor: the shipped release, checked and imported once per Python worker."""
    if digest not in _UNPACKED:
        from pyspark import SparkFiles

        archive = Path(SparkFiles.get(name))
        actual = sha256_file(archive)
        if actual != digest:
            raise ScoreError(f"{archive}: sha256 {actual}, but the driver shipped {digest}")
        target = Path(tempfile.mkdtemp(prefix="nb2prod-release-"))
        atexit.register(shutil.rmtree, target, True)
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(target)
        _UNPACKED[digest] = load_scorer(target)
    return _UNPACKED[digest]


# ---------------------------------------------------------------- scoring a DataFrame


def _scored(
    dataframe: DataFrame,
    root: Path,
    keep: Sequence[str],
    batch_size: int,
    *,
    json_lines: bool = False,
    offsets: dict[int, int] | None = None,
) -> DataFrame:
    """``dataframe`` scored by mapInArrow: kept columns, (``row``,) results, ``error``."""
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
    from pyspark.sql.types import LongType, StructField, StructType

    scorer = load_scorer(root)
    spark = dataframe.sparkSession
    name, digest = ship(spark, root)
    disabled = scorer.switched_off()  # decided here, whatever the executors' environment
    fields = [f for f in scorer.input_fields if json_lines or f in dataframe.columns]
    if json_lines:
        sample = dataframe.limit(batch_size).collect()
        inferred = Piece(0, lines=tuple(r[JSON_LINE] for r in sample)).keep(keep)
        check_kept_json(inferred, len(sample))
        kept = list(from_arrow_schema(settled(inferred.schema)).fields)
        source = dataframe.select(JSON_LINE)
    else:
        kept = [dataframe.schema[k] for k in keep]
        source = dataframe.select(*dict.fromkeys([*keep, *fields]))
    schema = StructType(
        [
            *kept,
            *([StructField(ROW, LongType(), False)] if offsets is not None else []),
            *from_arrow_schema(scorer.schema).fields,
        ]
    )
    keep_arrow = to_arrow_schema(StructType(kept)) if json_lines else None
    columns = schema.names
    keep = tuple(keep)

    def score_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        release = _unpacked(name, digest)
        answerer = release.answerer(disabled)
        context = TaskContext.get()
        first = (offsets or {}).get(context.partitionId(), 0) if context else 0
        for batch in batches:
            for start in range(0, batch.num_rows, batch_size):
                part = batch.slice(start, batch_size)
                piece = (
                    Piece(first, lines=tuple(part.column(JSON_LINE).to_pylist()))
                    if json_lines
                    else Piece(first, batch=part)
                )
                first += part.num_rows
                table = score_piece(release, answerer, piece, keep, batch_size)
                for i, column in enumerate(keep_arrow or ()):  # JSON Lines: the driver's types
                    table = table.set_column(i, column, table.column(i).cast(column.type))
                yield from table.select(columns).to_batches()

    return source.mapInArrow(score_batches, schema)


def score(
    dataframe: DataFrame,
    release: str | Path,
    *,
    keep: Iterable[str] = (),
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> DataFrame:
    """Score a Spark DataFrame with a release (a release directory or a bento tag).

    Lazy, like any Spark transformation. The result has the ``keep`` columns, the Output
    fields, ``model_version``, ``degraded``, ``reason`` and ``error`` (null when the row was
    answered; else a JSON list of ``{"field", "message"}``), as :func:`nb2prod.score`.
    Columns that are not Input fields are ignored; a null is a field not given.
    """
    _pyspark()
    check_batch_size(batch_size)
    kept = list(keep)
    root = release_root(release)
    check_columns(load_scorer(root), dataframe.columns, kept)
    return _scored(dataframe, root, kept, batch_size)


# ---------------------------------------------------------------- the command line's job


def _uri(path: str) -> str:
    """A Spark path: URIs (hdfs://, s3a://, file:) as given, local paths made absolute."""
    return path if "://" in path or path.startswith("file:") else str(Path(path).resolve())


def _read(spark: SparkSession, path: str) -> tuple[DataFrame, bool]:
    """INPUT as a DataFrame, and whether it is JSON Lines text (one line per row)."""
    from pyspark.sql import functions as F

    fmt = table_format(path)
    try:
        if fmt == "parquet":
            return spark.read.parquet(path), False
        if fmt == "csv":  # every cell text, as the local engine reads it
            return spark.read.option("header", True).option("inferSchema", False).csv(path), False
        lines = spark.read.text(path)
        return lines.filter(F.trim(F.col(JSON_LINE)) != ""), True
    except Exception as exc:
        raise ScoreError(f"{path}: Spark cannot read it as {fmt}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """What went wrong, in one line: a Python worker's exception is the last line of its trace."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        return lines[-1].removeprefix("nb2prod.errors.")
    return lines[0]


def _staging(path: str) -> str:
    """A hidden sibling of ``path`` (Spark's readers skip names starting with a dot)."""
    folder, _, name = path.rpartition("/")
    return f"{folder}/.{name}.partial-{uuid.uuid4().hex[:12]}"


def _write(frame: DataFrame, path: str, fmt: str) -> None:
    writer = frame.write.mode("error")
    if fmt == "parquet":
        writer.parquet(path)
    elif fmt == "csv":
        writer.option("header", True).csv(path)
    else:
        writer.option("ignoreNullFields", False).json(path)


class _Files:
    """Hadoop's file system API through Spark: staging directories renamed into place."""

    def __init__(self, spark: SparkSession) -> None:
        self.jvm: Any = spark.sparkContext._jvm
        self.conf = spark.sparkContext._jsc.hadoopConfiguration()

    def _fs(self, path: str) -> tuple[Any, Any]:
        hadoop_path = self.jvm.org.apache.hadoop.fs.Path(path)
        return hadoop_path.getFileSystem(self.conf), hadoop_path

    def exists(self, path: str) -> bool:
        fs, hadoop_path = self._fs(path)
        return bool(fs.exists(hadoop_path))

    def remove(self, path: str) -> None:
        fs, hadoop_path = self._fs(path)
        fs.delete(hadoop_path, True)

    def replace(self, staged: str, path: str) -> None:
        fs, target = self._fs(path)
        fs.delete(target, True)
        if not fs.rename(self._fs(staged)[1], target):
            raise ScoreError(f"{path}: could not move the finished output into place")


def score_file(request: ScoreRequest, progress: RowProgress | None = None) -> ScoreSummary:
    """``nb2prod score --engine spark``: Spark reads INPUT, scores it, writes OUTPUT and the
    errors as directories of part files (Spark's layout), each moved into place at the end.

    ``progress`` is not drawn: Spark shows its own stage progress bar.
    """
    _pyspark()
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.storagelevel import StorageLevel

    started = time.perf_counter()
    root = release_root(request.target)
    scorer = load_scorer(root)
    source, output, errors_path = (
        _uri(p) for p in (request.input, request.output, request.errors_path)
    )
    for path in (output, errors_path):
        table_format(path)
    created = SparkSession.getActiveSession() is None
    spark = session(request.master)
    files = _Files(spark)
    staged = [_staging(p) for p in (output, errors_path)]
    try:
        frame, json_lines = _read(spark, source)
        check_columns(scorer, None if json_lines else frame.columns, request.keep)
        counts = frame.select(F.spark_partition_id().alias("p")).groupBy("p").count().collect()
        offsets, first = {}, 0
        for row in sorted(counts):
            offsets[row["p"]] = first
            first += row["count"]
        scored = _scored(
            frame, root, request.keep, request.batch_size, json_lines=json_lines, offsets=offsets
        ).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            answered = scored.filter(F.col(ERROR).isNull()).drop(ERROR, ROW)
            failed = scored.filter(F.col(ERROR).isNotNull()).select(
                ROW,
                *request.keep,
                F.inline(F.from_json(ERROR, "array<struct<field:string,message:string>>")),
            )
            _write(answered, staged[0], table_format(output))
            _write(failed, staged[1], table_format(errors_path))
            tallied = scored.groupBy(F.col(ERROR).isNotNull().alias("failed"), "reason").count()
            found = collections.Counter(
                {(r["failed"], r["reason"]): r["count"] for r in tallied.collect()}
            )
        finally:
            scored.unpersist()
        files.replace(staged[1], errors_path)
        files.replace(staged[0], output)
    except Exception as exc:
        for path in staged:
            if files.exists(path):
                files.remove(path)
        if isinstance(exc, ScoreError | MissingToolError):
            raise
        raise ScoreError(f"the Spark job failed: {_first_line(exc)}") from exc
    finally:
        if created:
            spark.stop()
    return ScoreSummary(
        name=scorer.name,
        version=scorer.version,
        engine=f"spark ({request.master or 'local[*]'})",
        seconds=time.perf_counter() - started,
        output=output,
        errors=errors_path,
        one_by_one=scorer.one_by_one,
        **tally(found),
    )
