"""A Grafana dashboard for a release (``deploy/grafana-dashboard.json``), built as data.

The first screen answers "is it up, is it fast enough, is it failing, is the fallback answering":
readiness and the kill switch, requests/s, p50/p95/p99 against the ``[slo]`` lines, the error and
fallback shares by reason against theirs. Below: what the model answers (class shares and the
histograms of numeric outputs), input drift against ``max_drift_psi``, batch sizes, stage
latencies, rejected inputs, the workers' memory (against the pod's limit), CPU, requests in
flight and starts, and the release that runs. Every query selects ``job="$job"`` (the
scrape job, named after the service by default) from the ``$datasource`` Prometheus.
"""

from __future__ import annotations

from typing import Any

from ..version import __version__
from .slo import PREDICT_ROUTES, Observed

RATE = "$__rate_interval"
PREDICT = f'job="$job",route=~"{PREDICT_ROUTES}"'
_WIDTH = 24


def dashboard(observed: Observed) -> dict[str, Any]:
    """The dashboard JSON model (Grafana 10+, schemaVersion 39); import it or provision it."""
    slo = observed.slo
    latency = 'nb2prod_request_duration_seconds_bucket{job="$job",route="/v1/predict"}'
    panels: list[dict[str, Any]] = [
        _row("Service level"),
        _stat("Ready replicas", 'sum(up{job="$job"})', "none", [(None, "red"), (1, "green")], 4),
        _stat(
            "Model switched off", 'max(nb2prod_model_disabled{job="$job"})', "none",
            [(None, "green"), (1, "orange")], 4, mappings={"0": "model on", "1": "OFF (fallback)"},
        ),
        _stat(
            "Availability (range)",
            f'1 - sum(increase(nb2prod_requests_total{{{PREDICT},status=~"5.."}}[$__range]))\n'
            f"  / sum(increase(nb2prod_requests_total{{{PREDICT}}}[$__range]))",
            "percentunit", [(None, "red"), (slo.availability, "green")], 4,
        ),
        _timeseries(
            "Requests/s by outcome",
            [(f"sum by (outcome) (rate(nb2prod_requests_total{{{PREDICT}}}[{RATE}]))",
              "{{outcome}}")],
            "reqps", [(slo.expected_rps, "blue")], 12, stacked=True,
        ),
        _timeseries(
            "Latency of /v1/predict against the SLO",
            [(f"histogram_quantile({q}, sum by (le) (rate({latency}[{RATE}])))", f"p{p}")
             for q, p in (("0.5", "50"), ("0.95", "95"), ("0.99", "99"))],
            "s", [(slo.p95_ms / 1000, "orange"), (slo.p99_ms / 1000, "red")], 12,
        ),
        _timeseries(
            "Error share (5xx) by reason against the SLO",
            [(f'sum by (status, reason) (rate(nb2prod_requests_total{{{PREDICT},status=~"5.."}}[{RATE}]))\n'
              f"  / scalar(sum(rate(nb2prod_requests_total{{{PREDICT}}}[{RATE}])))",
              "{{status}} {{reason}}")],
            "percentunit", [(slo.error_rate, "red")], 12, stacked=True,
        ),
        _timeseries(
            "Fallback share by reason against the SLO",
            [(f'sum by (reason) (rate(nb2prod_requests_total{{{PREDICT},outcome="degraded"}}[{RATE}]))\n'
              f'  / scalar(sum(rate(nb2prod_requests_total{{{PREDICT},outcome=~"ok|degraded"}}[{RATE}])))',
              "{{reason}}")],
            "percentunit", [(slo.fallback_rate, "red")], 12, stacked=True,
        ),
        _row("What the model answers"),
    ]  # fmt: skip
    for field in sorted(observed.classes):
        panels.append(
            _timeseries(
                f"Output.{field}: share of each label",
                [
                    (
                        f'sum by (value) (rate(nb2prod_predictions_total{{job="$job",field="{field}"}}[{RATE}]))\n'
                        f'  / scalar(sum(rate(nb2prod_predictions_total{{job="$job",field="{field}"}}[{RATE}])))',
                        "{{value}}",
                    )
                ],
                "percentunit",
                [],
                12,
                stacked=True,
            )  # fmt: skip
        )
    for field in observed.numeric:
        metric = f"nb2prod_prediction_{field}_bucket"
        panels.append(
            _heatmap(
                f"Output.{field}: distribution",
                f'sum by (le) (increase({metric}{{job="$job"}}[{RATE}]))',
            )
        )
    panels += [
        _timeseries(
            "Fallback answers/s by reason (items)",
            [(f'sum by (reason) (rate(nb2prod_fallback_total{{job="$job"}}[{RATE}]))', "{{reason}}")],
            "short", [], 12, stacked=True,
        ),
        _row("Inputs and internals"),
    ]  # fmt: skip
    if observed.drift_fields:  # a release without drift reference exports no drift series
        panels.append(
            _timeseries(
                "Input drift (PSI) by field against the limit",
                [('max by (field) (nb2prod_input_drift_psi{job="$job"})', "{{field}}")],
                "none",
                [(slo.max_drift_psi, "red")],
                12,
            )  # fmt: skip
        )
    panels += [
        _timeseries(
            "Rejected inputs/s by field",
            [(f'sum by (field) (rate(nb2prod_validation_failures_total{{job="$job"}}[{RATE}]))',
              "{{field}}")],
            "short", [], 12, stacked=True,
        ),
        _timeseries(
            "Batch size (inputs per model call)",
            [(f'sum(rate(nb2prod_batch_size_sum{{job="$job"}}[{RATE}]))\n'
              f'  / sum(rate(nb2prod_batch_size_count{{job="$job"}}[{RATE}]))', "mean"),
             (f'histogram_quantile(0.95, sum by (le) (rate(nb2prod_batch_size_bucket{{job="$job"}}[{RATE}])))',
              "p95")],
            "short", [], 12,
        ),
        _timeseries(
            "Model call p95 by stage",
            [(f'histogram_quantile(0.95, sum by (le, stage) (rate(nb2prod_stage_duration_seconds_bucket{{job="$job"}}[{RATE}])))',
              "{{stage}}")],
            "s", [], 12,
        ),
        *_resources(observed),
        _table("Release running", 'max by (name, version, bento_tag, contract_sha256) (nb2prod_release_info{job="$job"})'),
    ]  # fmt: skip
    return {
        "title": f"{observed.name} (nb2prod)",
        "uid": f"nb2prod-{observed.name}"[:40],
        "description": f"{observed.name} {observed.version}: generated by nb2prod {__version__} "
        "from its [slo] and monitoring.json",
        "tags": ["nb2prod", observed.name],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "refresh": "30s",
        "timezone": "utc",
        "templating": {"list": _variables(observed)},
        "annotations": {"list": []},
        "panels": _layout(panels),
    }


def _resources(observed: Observed) -> list[dict[str, Any]]:
    """The serving workers: memory against the pod's limit, CPU, requests in flight, starts."""
    limit = observed.memory_limit_bytes
    return [
        _timeseries(
            "Resident memory by replica against the limit",
            [('sum by (instance) (nb2prod_process_resident_memory_bytes{job="$job"})',
              "{{instance}}")],
            "bytes", [(limit, "red")] if limit is not None else [], 12,
        ),
        _timeseries(
            "CPU cores used by replica",
            [(f'sum by (instance) (rate(nb2prod_process_cpu_seconds_total{{job="$job"}}[{RATE}]))',
              "{{instance}}")],
            "none", [], 12,
        ),
        _timeseries(
            "Requests in flight by replica",
            [('sum by (instance) (nb2prod_requests_in_flight{job="$job"})', "{{instance}}")],
            "short", [], 12,
        ),
        _timeseries(
            "Worker starts by replica (restarts: starts above the worker count)",
            [('sum by (instance) (nb2prod_worker_starts_total{job="$job"})', "{{instance}}")],
            "short", [], 12,
        ),
    ]  # fmt: skip


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard (for tests and reviewers)."""
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


# ---------------------------------------------------------------- panels


def _variables(observed: Observed) -> list[dict[str, Any]]:
    return [
        {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus"},
        {
            "name": "job",
            "label": "scrape job",
            "type": "textbox",
            "query": observed.name,
            "current": {"text": observed.name, "value": observed.name},
        },
    ]


def _target(expr: str, legend: str, ref: str, **extra: Any) -> dict[str, Any]:
    return {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend,
        "refId": ref,
        **extra,
    }


def _thresholds(steps: list[tuple[float | None, str]]) -> dict[str, Any]:
    """Grafana's threshold steps; the base step (value None) is green unless given."""
    if not steps or steps[0][0] is not None:
        steps = [(None, "green"), *steps]
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def _row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "w": _WIDTH, "h": 1}


def _timeseries(
    title: str,
    targets: list[tuple[str, str]],
    unit: str,
    lines: list[tuple[float | None, str]],
    width: int,
    stacked: bool = False,
) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": [_target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(targets)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "thresholds": _thresholds(list(lines)),
                "custom": {
                    # the SLO as a dashed line, where the panel has one
                    "thresholdsStyle": {"mode": "dashed" if lines else "off"},
                    "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
                    "fillOpacity": 20 if stacked else 0,
                },
            },
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "w": width,
        "h": 8,
    }


def _stat(
    title: str,
    expr: str,
    unit: str,
    steps: list[tuple[float | None, str]],
    width: int,
    mappings: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": [_target(expr, "", "A", instant=True)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": _thresholds(steps),
                "mappings": [
                    {"type": "value", "options": {k: {"text": v} for k, v in mappings.items()}}
                ]
                if mappings
                else [],
            },
            "overrides": [],
        },
        "options": {"colorMode": "background", "reduceOptions": {"calcs": ["lastNotNull"]}},
        "w": width,
        "h": 4,
    }


def _heatmap(title: str, expr: str) -> dict[str, Any]:
    return {
        "type": "heatmap",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": [_target(expr, "{{le}}", "A", format="heatmap")],
        "options": {"calculate": False, "yAxis": {"unit": "short"}},
        "fieldConfig": {"defaults": {}, "overrides": []},
        "w": 12,
        "h": 8,
    }


def _table(title: str, expr: str) -> dict[str, Any]:
    return {
        "type": "table",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": [_target(expr, "", "A", instant=True, format="table")],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "w": _WIDTH,
        "h": 4,
    }


def _layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ids and grid positions: panels fill rows of 24 columns left to right, top to bottom."""
    placed, x, y, row_height = [], 0, 0, 0
    for number, panel in enumerate(panels, start=1):
        w, h = panel["w"], panel["h"]
        if x + w > _WIDTH:
            x, y, row_height = 0, y + row_height, 0
        body = {k: v for k, v in panel.items() if k not in ("w", "h")}
        placed.append({**body, "id": number, "gridPos": {"x": x, "y": y, "w": w, "h": h}})
        x, row_height = x + w, max(row_height, h)
    return placed
