"""The observability files of a release's ``deploy/``: alerts, dashboard, load test.

:func:`observability_files` is the one entry point: from an :class:`~nb2prod.ops.slo.Observed`
(made at package time from the config and the capture, or read back from an existing release by
:func:`~nb2prod.ops.slo.observed_from`) it returns ``{relative path: bytes}``, the same bytes for
the same release, for :class:`~nb2prod.release.writer.Staging` (or ``deploy-files``) to write.
"""

from __future__ import annotations

from ..adapters.locust import LOCUSTFILE
from ..release.writer import canonical_json, canonical_yaml
from .alerts import header, prometheus_rule, rule_groups
from .dashboard import dashboard
from .loadplan import loadtest_settings
from .slo import Observed

PROMETHEUS_RULES = "deploy/prometheus-rules.yaml"
PROMETHEUS_RULE_OBJECT = "deploy/prometheus-rule.yaml"
GRAFANA_DASHBOARD = "deploy/grafana-dashboard.json"
LOCUSTFILE_PATH = "deploy/locustfile.py"
LOADTEST_SETTINGS = "deploy/loadtest.json"


def observability_files(observed: Observed) -> dict[str, bytes]:
    """Prometheus rules (plain and as a PrometheusRule object), the Grafana dashboard, and the
    locustfile with its settings (inputs and [slo])."""
    return {
        PROMETHEUS_RULES: canonical_yaml(rule_groups(observed), header(observed)),
        PROMETHEUS_RULE_OBJECT: canonical_yaml(prometheus_rule(observed), header(observed)),
        GRAFANA_DASHBOARD: canonical_json(dashboard(observed)),
        LOCUSTFILE_PATH: LOCUSTFILE.read_bytes(),
        LOADTEST_SETTINGS: canonical_json(loadtest_settings(observed)),
    }
