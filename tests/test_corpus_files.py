"""tests/corpus/ is what tests/corpus/make_corpus.py writes, and every notebook cites its source."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from tests.corpus.make_corpus import CORPUS, HERE, Entry, write

CITATION = re.compile(r"Pattern seen in https://github\.com/[\w.-]+/[\w.-]+/blob/[0-9a-f]{40}/\S+")


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_committed_files_are_what_the_generator_writes(entry: Entry, tmp_path: Path) -> None:
    fresh = write(entry, root=tmp_path)
    committed = HERE / entry.name
    names = sorted(p.name for p in fresh.iterdir())
    assert sorted(p.name for p in committed.iterdir() if p.name != "__pycache__") == names, (
        "run `python tests/corpus/make_corpus.py` and commit what it writes"
    )
    for name in names:
        assert (committed / name).read_text() == (fresh / name).read_text(), (
            f"tests/corpus/{entry.name}/{name} differs from the generator's: run "
            "`python tests/corpus/make_corpus.py`"
        )


@pytest.mark.parametrize("entry", CORPUS, ids=[e.name for e in CORPUS])
def test_each_notebook_cites_its_source_and_has_unseen_inputs(entry: Entry) -> None:
    nb = nbformat.read(HERE / entry.name / f"{entry.name}.ipynb", as_version=4)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and CITATION.search(first.source), first.source
    unseen = nb.metadata["nb2prod_test"]["unseen"]
    examples_cell = next(c for c in nb.cells if c.source.startswith("#| nb2prod: examples"))
    scope: dict[str, object] = {}
    exec(examples_cell.source, scope)  # a literal list of dicts
    assert unseen and not [u for u in unseen if u in scope["examples"]]  # type: ignore[operator]
