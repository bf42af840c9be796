"""Metric alerts: being told when a number moves.

The rules come from the settings (`alerts:` and the KPIs' `bounds`, see `lib/alert_rules.py`);
the platform evaluates them after each hour and day lands (`checks.py`) and keeps their
episodes in the store (`episodes.py`); Grafana gets the same rules as provisioned alert rules.
"""

from collections.abc import Mapping, Sequence

import dagster as dg

from metrics_platform.defs.metrics.kpis import Kpi
from metrics_platform.defs.monitor.checks import build_alert_checks
from metrics_platform.lib.alert_rules import parse_alerts

SECTION = "alerts"
GRAFANA_URL_ENV = "METRICS_PLATFORM_GRAFANA_URL"
DEFAULT_GRAFANA_URL = "http://127.0.0.1:3001"


def build_monitor(
    section, kpis: Sequence[Kpi], known_metrics: Sequence[str], env: Mapping[str, str]
) -> list[dg.AssetChecksDefinition]:
    """The alert checks of the `alerts` settings and of the KPIs' bounds; metric names must be
    ones a configured source (`known_metrics`, names or patterns) or a KPI produces."""
    names = [kpi.name for kpi in kpis]
    rules = parse_alerts(
        section,
        [(kpi.name, kpi.bounds) for kpi in kpis if kpi.bounds is not None],
        known=[*known_metrics, *names],
    )
    return build_alert_checks(rules, names, env.get(GRAFANA_URL_ENV) or DEFAULT_GRAFANA_URL)
