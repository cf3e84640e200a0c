"""A release imported for batch scoring: rows in, one result per row out, answered by the release.

The release's own code answers, never nb2prod's: its ``service/`` package (the notebook's
``pipeline.py`` and the copy of the runtime the release was built with) is imported from the
release under a module name of its own, after every file was checked against ``release.json``
(:func:`release_root`), and each row is answered by that runtime's answer path
(``runtime.answer.Answerer``), the very one behind ``POST /v1/predict``. So each row gets what
the service would answer:

- a row that breaks the contract is not scored; it gets an ``error`` naming each failing field
  (the service's 400);
- rows are answered in batches of ``batch_size``; a batch that raises is answered again row by
  row, so one bad row never degrades the others, and a release whose batches answer differently
  from their items alone (``monitoring.json``) has every row answered alone;
- where the model raises, the fallback answers with ``degraded`` true and ``reason`` ``error``;
  where Output has a ``confidence`` below ``[fallback] min_confidence``, ``low_confidence``;
  with ``NB2PROD_MODEL_DISABLED=1``, every row, ``disabled``; without a fallback (or when it
  raises too) the row is unanswered: an ``error`` saying why, and the ``reason`` (the
  service's 503).

There is no time budget and no circuit breaker: a batch job waits for the model and tries every
row. Both engines (:mod:`.local` and :mod:`.spark`) score through :func:`score_piece`.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa

from ..errors import ScoreError
from ..release.review import fields as schema_fields
from ..runtime.answer import summary
from .tables import Piece, Row, Unreadable

ENVELOPE = ("model_version", "degraded", "reason")
ERROR = "error"  # JSON list of {"field", "message"}; null when the row was answered
ROW = "row"  # 0-based position of a row in the input, in the errors file
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


class Scorer:
    """One release's pipeline, imported from the release for scoring (see the module docstring).

    The model is loaded on first use: a Spark driver only needs the contract.
    """

    def __init__(self, root: Path) -> None:
        service = root / "service"
        metadata_file = service / "metadata.json"
        if not metadata_file.is_file():
            raise ScoreError(f"{metadata_file}: missing; is {root} an nb2prod release?")
        if not (service / "runtime" / "answer.py").is_file():
            raise ScoreError(
                f"{root}: its runtime (service/runtime/) predates batch scoring through the "
                "service's answer path",
                hint="Package the notebook again with this nb2prod.",
            )
        digest = hashlib.sha256(metadata_file.read_bytes()).hexdigest()[:16]
        self.root = root
        self.module = f"_nb2prod_release_{digest}"
        self.pipeline = self._import("pipeline")
        self._answer = self._import("runtime.answer")
        self._guard = self._import("runtime.guard")
        schema = self._import("runtime.schema")
        try:
            self.metadata = schema.load(schema.ServiceMetadata, metadata_file)
            self.manifest = schema.load(schema.ModelManifest, root / "model" / "model.json")
            self.monitoring = schema.load(schema.MonitoringPlan, service / "monitoring.json")
        except (OSError, ValueError) as exc:
            raise ScoreError(str(exc)) from None
        batching = self.monitoring.batching
        # why the answer path calls the pipeline row by row, as the service answers
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
                f"{self.root}/service/{name.replace('.', '/')}.py cannot be imported: {summary(exc)}",
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
        """The model and its fitted state, loaded by the release's runtime, once per process."""
        try:
            return self._answer.load_model(self.root, self.manifest, self.pipeline)
        except Exception as exc:
            raise ScoreError(f"the release's model cannot be loaded: {summary(exc)}") from None

    def switched_off(self) -> bool:
        """The kill switch of a job starting now: NB2PROD_MODEL_DISABLED (a batch job has no
        kill-switch file)."""
        return bool(self._guard.disabled_by_env())

    def answerer(self, disabled: bool) -> Any:
        """The release's answer path for one job (``runtime.answer.Answerer``, scoring: no time
        budget, no circuit breaker), the kill switch as the job decided it (:meth:`switched_off`),
        whatever the environment of the process it runs in."""
        return self._answer.Answerer(
            self.pipeline, self.model, self.metadata, self.monitoring, scoring=True,
            disabled=disabled,
        )  # fmt: skip

    # ------------------------------------------------------------------ scoring

    def score_rows(self, rows: Sequence[Row], answerer: Any, batch_size: int) -> pa.Table:
        """One result per row, in order: the Output fields, the envelope and ``error``."""
        errors: dict[int, list[RowError]] = {}
        positions, inputs = self._validate(rows, errors)
        answers: list[Any] = []
        for start in range(0, len(inputs), batch_size):
            answers += answerer.answer_now(inputs[start : start + batch_size])
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

    def _table(
        self,
        count: int,
        positions: list[int],
        answers: list[Any],
        errors: dict[int, list[RowError]],
    ) -> pa.Table:
        """The answers (``runtime.answer.Answer`` tuples) and errors as the result's columns."""
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
                errors[position] = [RowError(None, failure.message(why, detail=True))]
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


def score_piece(
    scorer: Scorer, answerer: Any, piece: Piece, keep: Sequence[str], batch_size: int
) -> pa.Table:
    """One piece scored: its kept columns, ``row`` (position in the input) and the results."""
    result = scorer.score_rows(piece.rows(scorer.input_fields), answerer, batch_size)
    kept = piece.keep(keep)
    rows = pa.array(range(piece.first_row, piece.first_row + piece.num_rows), pa.int64())
    return pa.Table.from_arrays(
        [*kept.columns, rows, *result.columns],
        names=[*kept.column_names, ROW, *result.column_names],
    )
