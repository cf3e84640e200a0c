"""The model card's description: `[card] description`, else a short summary of the notebook's
markdown (not its first cell copied whole)."""

from __future__ import annotations

from nb2prod.notebook.config import Config
from nb2prod.pipeline.report import DESCRIPTION_CHARS, _notebook_text
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

INTRO = (
    "# Titanic: who survived?\n\n"
    "![banner](https://example.com/titanic.png)\n\n"
    "<img src='logo.png' width=200>\n\n"
    "This notebook predicts **survival** from the passenger list.\nIt follows a Kaggle tutorial.\n\n"
    "## Steps\n\n1. load\n2. clean\n3. fit\n\n"
    "**Limitations.** Trained on 891 passengers of one voyage."
)


def description(*cells: str, **card: str) -> str | None:
    node = new_notebook(cells=[new_markdown_cell(c) for c in cells] + [new_code_cell("x = 1")])
    text, _ = _notebook_text(node, Config.model_validate({"card": card}))
    return text


def test_the_description_is_the_first_paragraph_of_prose_not_the_whole_cell() -> None:
    assert description(INTRO) == (
        "This notebook predicts **survival** from the passenger list. It follows a Kaggle tutorial."
    )


def test_a_cell_with_only_a_title_and_a_logo_gives_way_to_the_next() -> None:
    assert description("# Churn\n\n![logo](l.png)", "Scores customers by churn risk.") == (
        "Scores customers by churn risk."
    )


def test_a_long_paragraph_is_cut_at_a_sentence() -> None:
    sentence = "Each sentence here says a little more about the model and its data. "
    text = description(sentence * 20)
    assert text is not None and len(text) <= DESCRIPTION_CHARS and text.endswith("data.")
    words = description("word " * 200)
    assert words is not None and len(words) <= DESCRIPTION_CHARS + 2 and words.endswith(" …")


def test_card_description_in_the_config_wins_verbatim() -> None:
    assert description(INTRO, description="Survival odds for a ticket.") == (
        "Survival odds for a ticket."
    )
    assert description() is None  # no markdown: the card says so
