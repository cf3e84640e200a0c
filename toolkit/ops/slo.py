"""What a release is watched and load-tested for: its objectives and the series that show them.

:class:`Observed` gathers, from the facts of a release, everything the alerting rules, the
Grafana dashboard and the load test are generated from: the ``[slo]`` objectives, the Output
fields counted by label or drawn as histograms, the Input fields scored for drift, and the
inputs a load test sends. It is read back from a release directory (or a bento) by
:func:`observed_from`, so ``deploy/`` files can be made again for an existing release.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..release.reader import Release
from ..runtime.schema import MonitoringPlan, Owners, ServiceLevels

PREDICT_ROUTES = "/v1/predict|/v1/predict_batch|/v2/infer"  # a regex over the `route` label


@dataclass(frozen=True)
class Observed:
    """One release, as its alerts, dashboard and load test see it."""

    name: str
    version: str
    slo: ServiceLevels
    classes: Mapping[str, tuple[str, ...]]  # Output fields counted by label -> their labels
    numeric: tuple[str, ...]  # Output fields drawn as histograms (nb2prod_prediction_<field>)
    drift_fields: tuple[str, ...]  # Input fields with a drift score
    input_schema: Mapping[str, Any] = field(default_factory=dict)  # contract.json "input"
    examples: tuple[Mapping[str, Any], ...] = ()  # the notebook's example inputs
    owners: Owners = Owners()  # [owners]: the alerts' `team` label and runbook links
    # the pod's memory limit deploy/ sets from what verify measured (None: not known yet, no
    # memory alert): ops/deploy.py fills it in once verify has run
    memory_limit_bytes: int | None = None

    @property
    def selector(self) -> str:
        """The label matcher of this service's series: the scrape job is named after it."""
        return f'job="{self.name}"'


def observed(
    name: str,
    version: str,
    monitoring: MonitoringPlan,
    input_schema: Mapping[str, Any],
    examples: tuple[Mapping[str, Any], ...],
    owners: Owners | None = None,
) -> Observed:
    return Observed(
        name=name,
        version=version,
        slo=monitoring.slo,
        classes={
            f: tuple(spec.values)
            for f, spec in sorted(monitoring.outputs.items())
            if spec.kind == "categorical"
        },
        numeric=tuple(sorted(f for f, s in monitoring.outputs.items() if s.kind == "numeric")),
        drift_fields=tuple(sorted(monitoring.drift.fields)),
        input_schema=input_schema,
        examples=examples,
        owners=owners or Owners(),
    )


def observed_from(release: Release) -> Observed:
    """The :class:`Observed` of an existing release (directory or bento)."""
    info = release.metadata.release
    return observed(
        info.name,
        info.version,
        release.monitoring,
        release.contract["input"],
        tuple(e.input for e in release.examples),
        owners=info.owners,
    )


@dataclass(frozen=True)
class Timing:
    """The windows and waits (seconds) of the alerting rules.

    The defaults follow the multiwindow, multi-burn-rate alerts of Google's SRE workbook; an
    end-to-end test uses :meth:`compressed` so that a real Prometheus fires within seconds.
    """

    rate: int = 300  # rate() window of error, fallback and traffic ratios
    fast_long: int = 3600  # fast burn: 1 h and 5 min windows, budget spent 14.4x too fast
    fast_short: int = 300
    slow_long: int = 21600  # slow burn: 6 h and 30 min windows, 6x too fast
    slow_short: int = 1800
    quiet: int = 600  # no traffic: no request in this window, for this long again
    shares: int = 1800  # window of the prediction shares (collapse to one class)
    min_predictions: int = 100  # fewer predictions in that window say nothing about collapse
    page: int = 120  # `for` of alerts that page: ready, errors
    ticket: int = 600  # `for` of alerts that open a ticket: fallbacks, collapse
    drift: int = 1800  # `for` of drift over the limit
    switched_off: int = 60

    @classmethod
    def compressed(cls) -> Timing:
        """For a Prometheus that scrapes every second: everything within seconds."""
        return cls(
            rate=10, fast_long=20, fast_short=5, slow_long=30, slow_short=10, quiet=10,
            shares=10, min_predictions=5, page=2, ticket=2, drift=2, switched_off=2,
        )  # fmt: skip


def duration(seconds: int) -> str:
    """A Prometheus duration: 3600 -> 1h, 300 -> 5m, 10 -> 10s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
