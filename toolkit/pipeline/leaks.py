"""After execute: nothing a release carries holds a credential of the packager's.

The executed notebook (``notebook.executed.ipynb`` in the release and the bento) and every file of
fitted state are scanned before anything is written, with the detectors ``nb2prod check`` runs on
cells (detect-secrets, :mod:`nb2prod.adapters.secrets`) and for the values of the packager's own
secret-looking environment variables (``NB2PROD_*`` and names with TOKEN, SECRET, PASSWORD, KEY,
CREDENTIAL or AUTH in them): the kernel no longer gets those variables (pipeline/execute.py), but a
notebook can still read a credential from a file or a vault and print it. A hit is an error that
names the cell (and the output line) or the artifact; the secret itself is never printed.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import nbformat

from ..adapters.secrets import SecretScanner
from ..errors import SecretLeakError
from ..notebook.annotations import AnnotatedNotebook

_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|KEY|CREDENTIAL|AUTH", re.IGNORECASE)
_MIN_VALUE = 8  # shorter values (flags, ports, "true") are not credentials and match everywhere
_MAX_ARTIFACT_BYTES = 16 << 20  # scanned in full up to this size, the first part of larger ones


@dataclass(frozen=True)
class Leak:
    where: str  # "cell 3 (train) `...`, output line 2" or "fitted state scaler (scaler.skops)"
    kind: str  # a detector's name, or "the value of DB_PASSWORD"

    def __str__(self) -> str:
        return f"{self.where}: {self.kind}"


def secret_values(environ: Mapping[str, str]) -> dict[str, str]:
    """The packager's secret-looking variables, value -> name."""
    return {
        value: name
        for name, value in environ.items()
        if len(value.strip()) >= _MIN_VALUE
        and (name.startswith("NB2PROD_") or _SECRET_NAME.search(name))
    }


def find_leaks(
    notebook: AnnotatedNotebook,
    executed: nbformat.NotebookNode,
    artifacts: Iterable[tuple[str, Path]],
    environ: Mapping[str, str],
) -> list[Leak]:
    """Every credential in ``executed``'s outputs and in the ``(name, file)`` artifacts."""
    values = secret_values(environ)
    labels = {c.index: c.label for c in notebook.cells}
    leaks: list[Leak] = []
    with SecretScanner() as scanner:
        for index, cell in enumerate(executed.cells):
            original = cell.get("metadata", {}).get("nb2prod", {}).get("index", index)
            where = labels.get(original, f"cell {original}")
            for number, line in enumerate(_output_lines(cell), start=1):
                leaks += [
                    Leak(f"{where}, output line {number}", k) for k in _kinds(line, scanner, values)
                ]
        for name, path in artifacts:
            kinds = sorted(
                {k for text in _artifact_texts(path) for k in _kinds(text, scanner, values)}
            )
            leaks += [Leak(f"fitted state {name} ({path.name})", k) for k in kinds]
    return leaks


def raise_for_leaks(leaks: list[Leak]) -> None:
    if not leaks:
        return
    shown = "\n".join(f"  {leak}" for leak in leaks[:20])
    raise SecretLeakError(
        f"{len(leaks)} credential(s) in what the release would carry (nothing was written):\n{shown}",
        hint="Do not print credentials or keep them in variables service code reads: read them "
        "where the service runs (os.environ in preprocess/postprocess), not in the notebook. "
        "Rotate any credential shown in an output that was shared.",
    )


def _kinds(text: str, scanner: SecretScanner, values: Mapping[str, str]) -> list[str]:
    found = [f"the value of {name} from the packager's environment"
             for value, name in values.items() if value in text]  # fmt: skip
    found += [hit.kind for hit in scanner.scan(text)]
    return sorted(set(found))


def _output_lines(cell: nbformat.NotebookNode) -> Iterator[str]:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            yield from _lines(output.get("text", ""))
        elif output.get("output_type") == "error":
            yield from _lines("\n".join(output.get("traceback", [])))
            yield from _lines(str(output.get("evalue", "")))
        for value in output.get("data", {}).values():
            if isinstance(value, str):
                yield from _lines(value)
            elif isinstance(value, list):
                yield from _lines("".join(v for v in value if isinstance(v, str)))


def _lines(text: str | list[str]) -> list[str]:
    return ("".join(text) if isinstance(text, list) else text).splitlines()


def _artifact_texts(path: Path) -> Iterator[str]:
    """The text an artifact holds: each member of a zip (skops), else the bytes themselves
    (pickles keep strings as UTF-8)."""
    if not path.is_file():
        return
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for member in archive.infolist():
                with archive.open(member) as handle:
                    yield handle.read(_MAX_ARTIFACT_BYTES).decode("utf-8", errors="replace")
        return
    with path.open("rb") as handle:
        yield handle.read(_MAX_ARTIFACT_BYTES).decode("utf-8", errors="replace")
