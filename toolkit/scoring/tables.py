"""The tables batch scoring reads and writes: Parquet, CSV and JSON Lines, chosen by extension.

Input is read in chunks, so a file of ten million rows never sits in memory whole. Each chunk
gives the rows as the service would receive them (one dict of Input fields per row) and, beside
them, the columns to carry through (``--keep``). How each format maps to what a caller of
``/v1/predict`` sends:

- JSON Lines: each line is a request body: ``json.loads`` of it, nothing converted; a line that
  is not a JSON object is an invalid row.
- Parquet: each row as Python values (``pyarrow``); a null cell is a field not given.
- CSV: every cell is text, converted by the contract exactly as pydantic converts a JSON string
  (``"5.1"`` -> 5.1 for a float field; ``"007"`` stays ``"007"`` for a string field); an empty
  cell, quoted or not, is a field not given (as Spark reads it).

Output is written to a hidden file beside the destination and renamed into place on success
(:class:`AtomicTable`), so a failed job leaves no half file and never a stale one under the name.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import decimal
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pyarrow as pa

from ..errors import ScoreError

Format = Literal["parquet", "csv", "jsonl"]
EXTENSIONS: dict[str, Format] = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def table_format(path: Path | str) -> Format:
    """The format of ``path`` from its extension; an unknown one is an error naming the file."""
    suffix = Path(str(path)).suffix.lower()
    try:
        return EXTENSIONS[suffix]
    except KeyError:
        raise ScoreError(
            f"{path}: unknown table format {suffix or '(no extension)'!r}",
            hint="Name files .parquet, .csv or .jsonl (JSON Lines: one JSON object per line).",
        ) from None


@dataclass(frozen=True)
class Unreadable:
    """A row that is not a set of fields at all (a JSON Lines line that is not an object)."""

    message: str


Row = dict[str, Any] | Unreadable


@dataclass(frozen=True)
class Piece:
    """Consecutive input rows as read: an Arrow batch (Parquet, CSV) or JSON Lines text.

    Pieces are converted to rows where they are scored (a worker process, a Spark executor),
    so the reading process only reads.
    """

    first_row: int  # 0-based position in the input of the piece's first row
    batch: pa.RecordBatch | None = None
    lines: tuple[str, ...] = ()

    @property
    def num_rows(self) -> int:
        return self.batch.num_rows if self.batch is not None else len(self.lines)

    def rows(self, fields: Sequence[str]) -> list[Row]:
        """Each row's Input ``fields`` as the service would receive them (others ignored)."""
        if self.batch is None:
            wanted = set(fields)
            return [
                {k: v for k, v in row.items() if k in wanted} if isinstance(row, dict) else row
                for row in map(json_row, self.lines)
            ]
        return arrow_rows(self.batch, fields)

    def keep(self, names: Sequence[str]) -> pa.Table:
        """The carried-through columns (JSON Lines: types inferred; the writer fixes them)."""
        if self.batch is not None:
            return pa.Table.from_batches([self.batch]).select(list(names))
        if not names:  # nothing to carry: do not parse every line a second time
            return pa.table({})
        kept = [
            {n: row.get(n) for n in names} if isinstance(row, dict) else dict.fromkeys(names)
            for row in map(json_row, self.lines)
        ]
        return pa.Table.from_pylist(kept)


def arrow_rows(batch: pa.RecordBatch | pa.Table, fields: Sequence[str]) -> list[Row]:
    """The rows of ``batch`` restricted to the columns named in ``fields``; a null cell is a
    field not given."""
    names = [f for f in fields if f in batch.schema.names]
    if not names:
        return [{} for _ in range(batch.num_rows)]
    columns = [batch.column(name) for name in names]
    values = zip(*(column.to_pylist() for column in columns), strict=True)
    if any(column.null_count for column in columns):
        return [{k: v for k, v in zip(names, row, strict=True) if v is not None} for row in values]
    return [dict(zip(names, row, strict=True)) for row in values]


def settled(schema: pa.Schema) -> pa.Schema:
    """Inferred column types made final: a column that held only nulls so far is text."""
    return pa.schema([pa.field(f.name, pa.string()) if f.type == pa.null() else f for f in schema])


def json_row(line: str) -> Row:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        return Unreadable(f"not valid JSON: {exc}")
    if not isinstance(value, dict):
        return Unreadable(f"not a JSON object but {type(value).__name__}")
    return value


class Reader:
    """One input table: its column names (where the format has them), size and pieces."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise ScoreError(f"{path}: no such file")
        self.path = path
        self.format = table_format(path)
        self.columns: tuple[str, ...] | None = self._columns()

    def _columns(self) -> tuple[str, ...] | None:
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return tuple(pq.read_schema(self.path).names)
        if self.format == "csv":
            with self.path.open(newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle), None)
            if not header:
                raise ScoreError(f"{self.path}: empty CSV file (no header line)")
            return tuple(header)
        return None  # JSON Lines: each line names its own fields

    def total(self) -> int:
        """Rows in the file (for the progress bar; CSV: lines, so a close estimate)."""
        if self.format == "parquet":
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(self.path).metadata.num_rows)
        lines = 0
        with self.path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                lines += block.count(b"\n")
        return max(lines - 1, 0) if self.format == "csv" else lines

    def pieces(self, size: int) -> Iterator[Piece]:
        """The input in pieces of ``size`` rows (the last may be shorter)."""
        first = 0
        if self.format == "jsonl":
            lines: list[str] = []
            with self.path.open(encoding="utf-8") as handle:
                for line in handle:
                    if not line.strip():
                        continue  # a blank line is not a row
                    lines.append(line)
                    if len(lines) == size:
                        yield Piece(first, lines=tuple(lines))
                        first, lines = first + size, []
            if lines:
                yield Piece(first, lines=tuple(lines))
            return
        for batch in self._arrow_batches(size):
            yield Piece(first, batch=batch)
            first += batch.num_rows

    def _arrow_batches(self, size: int) -> Iterator[pa.RecordBatch]:
        try:
            if self.format == "parquet":
                import pyarrow.parquet as pq

                # decoding small batches is slow: read large ones, hand out `size` rows at a time
                for large in pq.ParquetFile(self.path).iter_batches(batch_size=max(size, 1 << 16)):
                    for start in range(0, large.num_rows, size):
                        yield large.slice(start, size)
                return
            import pyarrow.csv as pcsv

            assert self.columns is not None
            reader = pcsv.open_csv(
                self.path,
                convert_options=pcsv.ConvertOptions(
                    column_types={name: pa.string() for name in self.columns},
                    strings_can_be_null=True,  # an empty cell, "" too: the field is not given
                ),
            )
            pending: list[pa.RecordBatch] = []
            rows = 0
            for batch in reader:  # CSV blocks are sized in bytes: re-cut them to `size` rows
                pending.append(batch)
                rows += batch.num_rows
                while rows >= size:
                    table = pa.Table.from_batches(pending)
                    yield from table.slice(0, size).combine_chunks().to_batches()
                    rest = table.slice(size)
                    pending, rows = rest.to_batches(), rest.num_rows
            if rows:
                yield from pa.Table.from_batches(pending).combine_chunks().to_batches()
        except (pa.ArrowInvalid, OSError) as exc:
            raise ScoreError(f"{self.path}: cannot read it as {self.format}: {exc}") from None


def json_default(value: Any) -> Any:
    """JSON for the values a typed table holds beyond JSON's own (dates, decimals, bytes)."""
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class AtomicTable:
    """A table written to a hidden file beside ``path`` and renamed onto it by :meth:`commit`.

    Leaving the ``with`` block without committing removes the hidden file: a failed job leaves
    no half table, and an earlier file of that name stays as it was. The first write fixes the
    columns (later tables are cast to them).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = table_format(path)
        self.partial = path.with_name(f".{path.name}.partial-{os.getpid()}-{id(self):x}")
        self.schema: pa.Schema | None = None
        self._writer: Any = None
        self._file: Any = None

    def __enter__(self) -> AtomicTable:
        if not self.path.parent.is_dir():
            raise ScoreError(f"{self.path.parent}: no such directory for {self.path.name}")
        return self

    def _open(self, schema: pa.Schema) -> None:
        self.schema = schema
        if self.format == "parquet":
            import pyarrow.parquet as pq

            self._writer = pq.ParquetWriter(self.partial, schema)
        elif self.format == "csv":
            import pyarrow.csv as pcsv

            self._writer = pcsv.CSVWriter(self.partial, schema)
        else:
            self._file = self.partial.open("w", encoding="utf-8")

    def write(self, table: pa.Table, schema: pa.Schema) -> None:
        if self.schema is None:
            self._open(schema)
        assert self.schema is not None
        try:
            table = table.select(self.schema.names).cast(self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise ScoreError(
                f"{self.path}: a column changes type along the input ({exc})",
                hint="Give kept JSON Lines fields one type in every line, or use Parquet.",
            ) from None
        if self._file is not None:
            for row in table.to_pylist():
                self._file.write(json.dumps(row, ensure_ascii=False, default=json_default) + "\n")
        else:
            self._writer.write_table(table)

    def _close(self) -> None:
        for closeable in (self._writer, self._file):
            if closeable is not None:
                closeable.close()
        self._writer = self._file = None

    def commit(self, schema: pa.Schema) -> None:
        """Close and rename into place; ``schema`` makes an empty table when nothing was written."""
        if self.schema is None:
            self._open(schema)
        self._close()
        os.replace(self.partial, self.path)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()
        with contextlib.suppress(FileNotFoundError):
            self.partial.unlink()
