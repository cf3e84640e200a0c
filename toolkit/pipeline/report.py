"""The report, written by ``package``'s write stage: evaluation/report.{json,md,html} and MODEL_CARD.md, as in-memory files.

Rendered from ``templates/report`` with Jinja in strict mode (an undefined variable is an error;
HTML is autoescaped). Pictures come from :mod:`nb2prod.adapters.charts` and are embedded, so
report.html is one self-contained file.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nbformat

from ..adapters import charts
from ..notebook.config import Config
from ..ops.monitoring import batching
from ..release.manifest import ColdStart
from ..release.review import declared, field_rows
from ..release.writer import canonical_json
from ..resources import render_template
from ..version import __version__
from .contract import Contract
from .evaluate import ROBUSTNESS, Evaluation, held_out_line

MODEL_CARD = "MODEL_CARD.md"
REPORT_JSON, REPORT_MD, REPORT_HTML = (f"evaluation/report.{e}" for e in ("json", "md", "html"))
# written by the write stage, before the bento is built (it carries report.json)
BEFORE_BUILD = (REPORT_JSON, MODEL_CARD)
# written once verify has measured the served release (they show its cold start)
AFTER_VERIFY = (REPORT_MD, REPORT_HTML)
PHASES = (
    ("import", "import_s"),
    ("model load", "model_load_s"),
    ("first answer", "first_answer_s"),
)
DESCRIPTION_CHARS = 400  # a summary longer than this is cut at a sentence (or a word)
_HEADING = re.compile(r"^\s{0,3}#{1,6}(\s.*)?$|^\s{0,3}(=+|-+)\s*$", re.MULTILINE)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)|!\[[^\]]*\]\[[^\]]*\]")
_HTML = re.compile(r"<!--.*?-->|<[^>\n]+>", re.DOTALL)
_LIMITATIONS = re.compile(r"^\s*(#+\s*|\*\*)limitations\b[.:]?(\*\*)?[.:]?\s*", re.IGNORECASE)


@dataclass(frozen=True)
class Limitations:
    text: str
    source: str  # where the text came from, said in the card


def render_reports(
    evaluation: Evaluation,
    *,
    name: str,
    version: str,
    notebook: str,
    node: nbformat.NotebookNode,
    config: Config,
    contract: Contract,
    model_class: str,
    model_format: str,
    training_data: Mapping[str, Any] | None,
    artifacts: Sequence[str] = (),
    lineage: Mapping[str, Any] | None = None,
    cold_start: ColdStart | None = None,
    parts: Collection[str] = (*BEFORE_BUILD, *AFTER_VERIFY),
    drawn: Sequence[Picture] | None = None,
) -> dict[str, bytes]:
    """The report's files named in ``parts`` (all by default); report.md and report.html show
    ``cold_start``, what verify measured, when it is given. ``drawn`` is
    :func:`evaluation_pictures` of ``evaluation``, when it was drawn beforehand."""
    report = evaluation.to_json()
    holdout = report["holdout"]
    slice_metric = _slice_metric(evaluation)
    gates = {r.gate.metric: r for r in evaluation.results}
    metric_rows = [
        {
            "name": metric,
            "value": f"{value:.4f}",
            "gate": str(gates[metric].gate) if metric in gates else "-",
            "verdict": ("pass" if gates[metric].passed else "FAIL") if metric in gates else "",
        }
        for metric, value in sorted(evaluation.metrics.items())
    ]
    robust = gates.get(ROBUSTNESS)
    if robust is not None:  # the contract probe's gate, beside the notebook's metrics
        metric_rows.append(
            {
                "name": ROBUSTNESS,
                "value": f"{robust.value:.4f}",
                "gate": str(robust.gate),
                "verdict": "pass" if robust.passed else "FAIL",
            }
        )
    description, limitations = _notebook_text(node, config)
    context = {
        "name": name,
        "version": version,
        "notebook": notebook,
        "nb2prod_version": __version__,
        "gates_enforced": evaluation.gates_enforced,
        "metric_rows": metric_rows,
        "holdout": holdout,
        "held_out_line": held_out_line(holdout) if holdout else "",
        "slice_metric": slice_metric,
        "previous": report["previous_release"],
        "latency": report["latency"],
        "eval_x": config.evaluation.eval_x,
        "eval_y": config.evaluation.eval_y,
        "robustness": _robustness(evaluation, config),
        "cold_start": _cold_start(cold_start),
    }
    pictures = (
        [
            {"png": base64.b64encode(png).decode(), "alt": alt, "section": section}
            for section, alt, png in [
                *(evaluation_pictures(evaluation) if drawn is None else drawn),
                *_cold_start_pictures(cold_start),
            ]
        ]
        if REPORT_HTML in parts
        else []
    )
    card = {
        **context,
        "owners": config.resolved_owners().roles(),  # `owner` is the model's when unset
        "intended_use": config.card.intended_use,
        "description": description,
        "limitations": limitations,
        "training_data": training_data,
        "model_class": model_class,
        "model_format": model_format,
        "artifacts": list(artifacts),
        "lineage": lineage or {"files": [], "unhashable": []},
        "contract_sha256": contract.sha256,
        "slo": config.slo.model_dump(),
        "contract_sides": [
            {
                "name": side.capitalize(),
                "rows": field_rows(declared(contract.to_json(), side), None),
            }
            for side in ("input", "output")
        ],
    }
    render = {
        REPORT_JSON: lambda: canonical_json(report),
        REPORT_MD: lambda: render_template("report.md.j2", context, html=False),
        REPORT_HTML: lambda: render_template(
            "report.html.j2", {**context, "pictures": pictures}, html=True
        ),
        MODEL_CARD: lambda: render_template("MODEL_CARD.md.j2", card, html=False),
    }
    return {name: make() for name, make in render.items() if name in parts}


def _cold_start(cold_start: ColdStart | None) -> dict[str, Any] | None:
    """The cold start as the templates show it: each phase with its share of the total."""
    if cold_start is None:
        return None
    total = cold_start.total_s
    return {
        "total_s": total,
        "phases": [
            {
                "name": name,
                "seconds": getattr(cold_start, key),
                "share": getattr(cold_start, key) / total if total > 0 else 0.0,
            }
            for name, key in PHASES
        ],
    }


def _robustness(evaluation: Evaluation, config: Config) -> dict[str, Any] | None:
    """The contract probe's figures, with the texts the templates show."""
    robustness = evaluation.robustness
    if robustness is None:
        return None
    smallest = robustness.smallest_failure
    return {
        **robustness.model_dump(mode="json"),
        "failed": robustness.tested - robustness.answered,
        "smallest_input": json.dumps(smallest.input, sort_keys=True) if smallest else None,
        "by_exception": ", ".join(f"{k} {v}" for k, v in sorted(robustness.exceptions.items())),
        "batching": batching(robustness, config).why,
    }


# (section, caption, PNG): one picture of report.html
Picture = tuple[str, str, bytes]


def _slice_metric(evaluation: Evaluation) -> str:
    holdout = evaluation.holdout
    return "accuracy" if holdout and holdout["task"] == "classification" else "mae"


def evaluation_pictures(evaluation: Evaluation) -> list[Picture]:
    """The pictures of the evaluation (hold-out scores, slices, latency): every picture of the
    report but the cold start's, known before verify (``package`` draws them meanwhile)."""
    slice_metric = _slice_metric(evaluation)
    pictures = []
    holdout = evaluation.holdout
    if holdout and "confusion" in holdout:  # multi-output classifications have none
        png = charts.confusion_matrix(holdout["labels"], holdout["confusion"])
        pictures.append(("holdout", "Confusion matrix", png))
    elif holdout and "residuals" in holdout:
        pictures.append(("holdout", "Residuals", charts.residuals(holdout["residuals"])))
    for column, groups in (holdout or {}).get("slices", {}).items():
        png = charts.slice_bars(column, groups, slice_metric)
        pictures.append(("holdout", f"{slice_metric} by {column}", png))
    if evaluation.latency:
        series = {f"batch {lat.batch}": lat.pipeline_ms for lat in evaluation.latency}
        pictures.append(("latency", "Latency histogram", charts.latency_histogram(series)))
    return pictures


def _cold_start_pictures(cold_start: ColdStart | None) -> list[Picture]:
    if cold_start is None:
        return []
    phases = {name: float(getattr(cold_start, key)) for name, key in PHASES}
    return [("cold_start", "Cold start in phases", charts.cold_start_phases(phases))]


def _notebook_text(node: nbformat.NotebookNode, config: Config) -> tuple[str | None, Limitations]:
    """The description (``[card] description``, else a summary of the notebook's markdown) and
    the limitations, saying where they came from."""
    summary = None
    found: Limitations | None = None
    for index, cell in enumerate(node.cells):
        if cell.cell_type != "markdown":
            continue
        paragraphs = [p.strip() for p in cell.source.split("\n\n") if p.strip()]
        kept = []
        for paragraph in paragraphs:
            if _LIMITATIONS.match(paragraph) and found is None:
                text = _LIMITATIONS.sub("", paragraph, count=1).strip()
                found = Limitations(text, f"markdown cell {index} of the notebook")
            else:
                kept.append(paragraph)
        if summary is None:
            summary = next((s for p in kept if (s := _prose(p))), None)
    description = config.card.description or (_bounded(summary) if summary else None)
    if config.card.limitations:
        return description, Limitations(config.card.limitations, "[card] limitations in the config")
    return description, found or Limitations(
        "Not stated.",
        "nowhere: add a markdown paragraph starting **Limitations** or set "
        "[card] limitations in the config",
    )


def _prose(paragraph: str) -> str:
    """A markdown paragraph without its headings, images and HTML, on one line ('' if nothing
    is left: a title, a logo, a badge)."""
    text = _HTML.sub("", _IMAGE.sub("", _HEADING.sub("", paragraph)))
    return " ".join(text.split())


def _bounded(text: str) -> str:
    """``text`` cut at the last sentence that ends within :data:`DESCRIPTION_CHARS`, else at a
    word, with an ellipsis."""
    if len(text) <= DESCRIPTION_CHARS:
        return text
    head = text[: DESCRIPTION_CHARS + 1]
    end = max(head.rfind(". "), head.rfind("! "), head.rfind("? "))
    if end >= DESCRIPTION_CHARS // 3:
        return head[: end + 1]
    return head.rsplit(" ", 1)[0].rstrip(",;:") + " …"
