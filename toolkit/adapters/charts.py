"""Adapter: the report's pictures, drawn with matplotlib (the only module that imports it).

Each function returns PNG bytes, embedded in report.html as data URIs so the report is one
self-contained file.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any


def prepare() -> None:
    """Import matplotlib with its Agg backend (seconds), drawing nothing: ``package`` does it in
    a thread while the kernel runs, so that the report's pictures are drawn at once."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


def _figure(width: float = 5.0, height: float = 3.6, **grid: Any) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; also keeps a user's backend setting out of it
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=100, **grid)


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def confusion_matrix(labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> bytes:
    fig, ax = _figure(4.6, 4.0)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            colour = "white" if count > top / 2 else "black"
            ax.text(j, i, str(count), ha="center", va="center", color=colour)
    ax.set_title("Confusion matrix (held-out data)")
    return _png(fig)


def residuals(points: Sequence[Sequence[float]]) -> bytes:
    fig, ax = _figure()
    ax.scatter([p[0] for p in points], [p[1] for p in points], s=8, alpha=0.6)
    ax.axhline(0, color="grey", linewidth=1)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true - predicted")
    ax.set_title("Residuals (held-out data)")
    return _png(fig)


def slice_bars(column: str, groups: Mapping[str, Mapping[str, float]], metric: str) -> bytes:
    fig, ax = _figure(5.0, 3.0)
    names = list(groups)
    ax.bar(names, [groups[n][metric] for n in names], color="#4c72b0")
    for i, n in enumerate(names):
        ax.text(
            i,
            groups[n][metric],
            f"n={int(groups[n]['rows'])}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by {column}")
    return _png(fig)


def latency_histogram(series: Mapping[str, Sequence[float]]) -> bytes:
    fig, ax = _figure(5.6, 3.2)
    for label, samples in series.items():
        ax.hist(samples, bins=20, alpha=0.6, label=label)
    ax.set_xlabel("milliseconds per request")
    ax.set_ylabel("requests")
    ax.set_title("Serving-path latency, in process")
    ax.legend()
    return _png(fig)


def cold_start_phases(phases: Mapping[str, float]) -> bytes:
    """One stacked horizontal bar: the served release's cold start, phase after phase."""
    fig, ax = _figure(6.4, 1.9)
    colours = ("#4c72b0", "#dd8452", "#55a868", "#8172b2")
    left = 0.0
    for (name, seconds), colour in zip(phases.items(), colours * len(phases), strict=False):
        ax.barh([0], [seconds], left=left, color=colour, label=f"{name} {seconds:.2f} s")
        left += seconds
    ax.set_yticks([])
    ax.set_xlim(0, max(left, 1e-3) * 1.02)
    ax.set_xlabel("seconds from process start")
    ax.set_title(f"Cold start under bentoml serve: {left:.2f} s to the first answer")
    ax.legend(fontsize=7, ncol=len(phases), loc="upper center", bbox_to_anchor=(0.5, -0.55))
    return _png(fig)


def latency_over_time(
    timeline: Sequence[Mapping[str, float]], p95_ms: float, p99_ms: float
) -> bytes:
    """p50/p95/p99 of each second of a load test against the SLO's lines, requests/s below."""
    fig, (top, bottom) = _figure(
        7.0, 4.6, nrows=2, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    seconds = [p["t"] for p in timeline]
    for key, colour in (("p50", "#4c72b0"), ("p95", "#dd8452"), ("p99", "#c44e52")):
        top.plot(seconds, [p[key] for p in timeline], label=key, color=colour, linewidth=1.4)
    top.axhline(
        p95_ms, color="#dd8452", linestyle="--", linewidth=1, label=f"SLO p95 {p95_ms:g} ms"
    )
    top.axhline(
        p99_ms, color="#c44e52", linestyle="--", linewidth=1, label=f"SLO p99 {p99_ms:g} ms"
    )
    top.set_yscale("log")
    top.set_ylabel("latency (ms)")
    top.set_title("Latency over time (each second of the load test)")
    top.legend(fontsize=7, ncol=2)
    bottom.bar(
        seconds, [p["requests"] for p in timeline], color="#8c8c8c", width=0.8, label="answered"
    )
    bottom.bar(
        seconds, [p["fallbacks"] + p["errors"] for p in timeline], color="#c44e52", width=0.8,
        label="fallback or error",
    )  # fmt: skip
    bottom.set_ylabel("requests/s")
    bottom.set_xlabel("seconds since start")
    bottom.legend(fontsize=7)
    return _png(fig)
