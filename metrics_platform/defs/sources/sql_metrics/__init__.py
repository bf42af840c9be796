"""Metrics defined by SQL queries in the settings: revenue per hour, distinct active accounts,
orders by plan... each a named query over a configured read-only database that returns one
value per hour (and per label), with no Python to write."""

from collections.abc import Mapping

from metrics_platform.defs.sources.registry import SourceDefinition, refuse_unknown
from metrics_platform.lib.templates import template_fields, template_glob

SOURCE = "sql_metrics"
_SETTINGS = ("url_env", "statement_timeout_seconds", "queries")


def build_source(section: Mapping, env: Mapping[str, str]) -> SourceDefinition:
    from metrics_platform.defs.sources.sql_metrics.assets import (
        sql_metrics_daily,
        sql_metrics_hourly,
    )
    from metrics_platform.defs.sources.sql_metrics.resource import SqlMetricQueries, load_queries

    refuse_unknown(SOURCE, section, _SETTINGS)
    queries = load_queries(section)
    reason = None
    missing = sorted({q.url_env for q in queries if not env.get(q.url_env)})
    if not queries:
        reason = f"no queries listed under `{SOURCE}.queries` in the settings file"
    elif missing:
        reason = f"{missing[0]} is not set"
    recomputed = [q for q in queries if q.aggregation == "recomputed"]
    return SourceDefinition(
        SOURCE,
        sql_metrics_hourly,
        {"sql_queries": SqlMetricQueries(queries=queries)},
        reason,
        daily_assets=[sql_metrics_daily] if recomputed or not queries else [],
        metrics=[template_glob(q.metric) for q in queries],
        # Only a metric that is 0 when its query returns nothing has a value every hour.
        expected=[q.metric for q in queries if q.zeros and not template_fields(q.metric)],
        cumulative=any(q.propagation == "later_hours" for q in queries),
    )
