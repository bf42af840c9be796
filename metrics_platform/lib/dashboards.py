"""The Grafana dashboards, generated from code.

    python -m metrics_platform.lib.dashboards           write grafana/dashboards/*.json
    python -m metrics_platform.lib.dashboards --check   exit 1 if the files differ from the code

Every `*.json` under `grafana/dashboards/` is an output of this module: edit the code, run the
first command, commit both. The dashboards are built with Grafana Labs' Foundation SDK (builders
for the dashboard JSON model, the classic schema that file provisioning loads); Postgres query
targets, which the SDK has no type for, are `SqlTarget` below.

Four dashboards, all on the provisioned data source (uid `metrics_platform`), all reading the
metric store's views `metrics.hourly_values_by_name` (metric, time, date, hour, value) and
`metrics.daily_values_by_name` (metric, date, value) and the catalog `metrics.metric`:

- `business.json`: acquisition (GA4), activation rate, users / profiles / API keys.
- `quality_of_service.json`: event latency percentiles, error rates, crawlers, HTTP requests.
- `platform_health.json`: freshness and size of each source's data, the catalog.
- `public.json`: what is safe to share: the activation rate and the median latency.

A panel whose metrics are not produced (a source not configured yet) runs and stays empty: names
are matched with `= ANY(ARRAY[...]::text[])`, which is valid SQL for an empty selection too.
Hourly panels aggregate to Grafana's `$__interval` (at least one hour): counters add up, gauges
keep the last value, percentiles keep the worst hour. Daily panels show one point per UTC day.
All times are UTC, as the store's hours and days are.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, common, dashboard, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "metrics_platform"
DATASOURCE = models.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)
TAG = "metrics-platform"
DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"

HOURLY = "metrics.hourly_values_by_name"
DAILY = "metrics.daily_values_by_name"
DAY_AS_TIME = "(date::timestamp AT TIME ZONE 'UTC') AS \"time\""


def _sql(text: str) -> str:
    return textwrap.dedent(text).strip()


# --- Postgres query targets -----------------------------------------------------------------------


@dataclass
class SqlQuery(cogvariants.Dataquery):
    """A raw-SQL target of the Postgres data source (`format`: `time_series` or `table`)."""

    ref_id: str
    raw_sql: str
    format: str = "time_series"

    def to_json(self) -> dict[str, object]:
        return {
            "refId": self.ref_id,
            "datasource": DATASOURCE,
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }


class SqlTarget(cogbuilder.Builder[SqlQuery]):
    def __init__(self, raw_sql: str, fmt: str = "time_series", ref_id: str = "A") -> None:
        if fmt not in ("time_series", "table"):
            raise ValueError(f"unknown query format {fmt!r}")
        self._internal = SqlQuery(ref_id, _sql(raw_sql), fmt)

    def build(self) -> SqlQuery:
        return self._internal


# --- Panel helpers --------------------------------------------------------------------------------


def _legend() -> common.VizLegendOptions:
    return (
        common.VizLegendOptions()
        .show_legend(True)
        .display_mode(common_models.LegendDisplayMode.LIST)
        .placement(common_models.LegendPlacement.BOTTOM)
    )


def _tooltip() -> common.VizTooltipOptions:
    return (
        common.VizTooltipOptions()
        .mode(common_models.TooltipDisplayMode.MULTI)
        .sort(common_models.SortOrder.DESCENDING)
    )


def time_series(
    title: str,
    description: str,
    raw_sql: str,
    *,
    unit: str,
    interval: str = "1h",
    bars: bool = False,
    minimum: float | None = 0,
    no_value: str | None = None,
):
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(SqlTarget(raw_sql, "time_series"))
        .interval(interval)
        .unit(unit)
        .legend(_legend())
        .tooltip(_tooltip())
        .line_width(1)
        .fill_opacity(80 if bars else 10)
        .draw_style(
            common_models.GraphDrawStyle.BARS if bars else common_models.GraphDrawStyle.LINE
        )
        .show_points(common_models.VisibilityMode.NEVER)
    )
    if minimum is not None:
        panel = panel.min(minimum)
    if no_value:
        panel = panel.no_value(no_value)
    return panel


def _thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=color) for value, color in steps])
    )


def stat_panel(
    title: str,
    description: str,
    raw_sql: str,
    *,
    unit: str,
    decimals: int | None = None,
    no_value: str | None = None,
):
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(SqlTarget(raw_sql, "table"))
        .interval("1h")
        .unit(unit)
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .color_mode(common_models.BigValueColorMode.NONE)
        .text_mode(common_models.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    if no_value:
        panel = panel.no_value(no_value)
    return panel


def table_panel(
    title: str, description: str, raw_sql: str, *, overrides: dict[str, str] | None = None
):
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(SqlTarget(raw_sql, "table"))
        .interval("1h")
        .show_header(True)
    )
    for column, unit in (overrides or {}).items():
        panel = panel.override_by_name(
            column, [models.DynamicConfigValue(id_val="unit", value=unit)]
        )
    return panel


def bar_gauge(
    title: str,
    description: str,
    raw_sql: str,
    *,
    unit: str,
    thresholds: dashboard.ThresholdsConfig | None = None,
):
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(SqlTarget(raw_sql, "table"))
        .interval("1h")
        .unit(unit)
        .min(0)
        .orientation(common_models.VizOrientation.HORIZONTAL)
        .display_mode(common_models.BarGaugeDisplayMode.BASIC)
        .reduce_options(common.ReduceDataOptions().values(True).calcs([]).fields(""))
    )
    if thresholds is not None:
        panel = panel.thresholds(thresholds)
    return panel


def name_variable(name: str, label: str, description: str, pattern: str) -> dashboard.QueryVariable:
    """A multi-value, include-all variable over the catalog's metric names LIKE `pattern`."""
    return catalog_variable(
        name,
        label,
        description,
        f"SELECT name FROM metrics.metric WHERE name LIKE '{pattern}' ORDER BY name",
    )


def catalog_variable(
    name: str, label: str, description: str, query: str
) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .description(description)
        .query(query)
        .datasource(DATASOURCE)
        .multi(True)
        .include_all(True)
        .allow_custom_value(False)
        .refresh(models.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


class Board:
    """A dashboard under construction: panels get ids in order and flow over the 24-column grid."""

    def __init__(self, uid: str, title: str, description: str, *, links: bool = True) -> None:
        self.next_id = 1
        self.builder = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags([TAG])
            .timezone("utc")
            .time("now-7d", "now")
            .refresh("15m")
            .readonly()
            .tooltip(models.DashboardCursorSync.CROSSHAIR)
            .annotations([])
        )
        if links:
            self.builder = self.builder.link(
                dashboard.DashboardLink("Metrics platform")
                .type(models.DashboardLinkType.DASHBOARDS)
                .tags([TAG])
                .as_dropdown(True)
                .keep_time(True)
                .include_vars(False)
                .target_blank(False)
            )

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def row(self, title: str) -> Board:
        self.builder = self.builder.with_row(
            dashboard.Row(title).id(self._id()).datasource(DATASOURCE).collapsed(False)
        )
        return self

    def add(self, panel, *, width: int, height: int = 8) -> Board:
        self.builder = self.builder.with_panel(panel.id(self._id()).span(width).height(height))
        return self

    def variable(self, variable: dashboard.QueryVariable) -> Board:
        self.builder = self.builder.with_variable(variable)
        return self

    def build(self) -> models.Dashboard:
        return self.builder.build()


# --- Shared queries -------------------------------------------------------------------------------

# New API keys per new user, per UTC day, from the end-of-day counts (a proxy for activation),
# unless the platform computes `kpi.acquisition_to_activation_rate` itself.
ACTIVATION_RATE_DAILY = f"""
    WITH kpi AS (
        SELECT date, value FROM {DAILY}
        WHERE metric = 'kpi.acquisition_to_activation_rate' AND $__timeFilter(date)
    ), counts AS (
        SELECT date,
               max(value) FILTER (WHERE metric = 'objects.users.count') AS users,
               max(value) FILTER (WHERE metric = 'objects.api_keys.count') AS api_keys
        FROM {DAILY}
        WHERE metric IN ('objects.users.count', 'objects.api_keys.count')
          AND date BETWEEN $__timeFrom()::date - 1 AND $__timeTo()::date
        GROUP BY date
    ), computed AS (
        SELECT c.date, (c.api_keys - p.api_keys) / nullif(c.users - p.users, 0) AS value
        FROM counts c JOIN counts p ON p.date = c.date - 1
        WHERE NOT EXISTS (SELECT 1 FROM kpi)
    )
    SELECT {DAY_AS_TIME}, value AS "activation rate"
    FROM (SELECT date, value FROM kpi UNION ALL SELECT date, value FROM computed) rates
    ORDER BY 1
"""
ACTIVATION_RATE_DESCRIPTION = (
    "New API keys per new user, per UTC day, from the end-of-day counts of "
    "objects.api_keys.count and objects.users.count (a proxy: a key may come from an older "
    "user). Uses kpi.acquisition_to_activation_rate instead when the platform computes it."
)

LATENCY_P50_DAILY = f"""
    SELECT {DAY_AS_TIME}, split_part(metric, '.', 2) AS metric, value
    FROM {DAILY}
    WHERE $__timeFilter(date) AND metric LIKE 'events.%.duration.p50'
    ORDER BY 1, 2
"""


# --- Business -------------------------------------------------------------------------------------


def business() -> models.Dashboard:
    no_ga = "no GA4 data"
    board = Board(
        "mp-business",
        "Business metrics",
        "Acquisition, activation and the growth of users, profiles and API keys.",
    )
    board.variable(
        name_variable(
            "objects", "Objects", "Product objects counted in the product database.", "objects.%"
        )
    )

    board.row("Acquisition (Google Analytics)")
    board.add(
        time_series(
            "Sessions started",
            "ga.sessions per interval (GA4).",
            f"""
        SELECT $__timeGroupAlias(time, $__interval), metric, sum(value) AS value
        FROM {HOURLY}
        WHERE $__timeFilter(time) AND metric = ANY(ARRAY['ga.sessions']::text[])
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
            unit="short",
            no_value=no_ga,
        ),
        width=12,
    )
    board.add(
        time_series(
            "New and active users",
            "ga.new_users and ga.active_users per interval (GA4).",
            f"""
        SELECT $__timeGroupAlias(time, $__interval), metric, sum(value) AS value
        FROM {HOURLY}
        WHERE $__timeFilter(time)
          AND metric = ANY(ARRAY['ga.new_users', 'ga.active_users']::text[])
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
            unit="short",
            no_value=no_ga,
        ),
        width=12,
    )
    board.add(
        time_series(
            "Acquisition per day",
            "GA4 sessions, new users and active users per UTC day.",
            f"""
        SELECT {DAY_AS_TIME}, metric, value
        FROM {DAILY}
        WHERE $__timeFilter(date)
          AND metric = ANY(ARRAY['ga.sessions', 'ga.new_users', 'ga.active_users']::text[])
        ORDER BY 1, 2
        """,
            unit="short",
            interval="1d",
            bars=True,
            no_value=no_ga,
        ),
        width=16,
    )
    board.add(
        stat_panel(
            "Acquisition in the range",
            "GA4 sessions and new users over the whole time range.",
            f"""
        SELECT sum(value) FILTER (WHERE metric = 'ga.sessions') AS "sessions",
               sum(value) FILTER (WHERE metric = 'ga.new_users') AS "new users"
        FROM {HOURLY}
        WHERE $__timeFilter(time) AND metric IN ('ga.sessions', 'ga.new_users')
        """,
            unit="short",
            decimals=0,
            no_value=no_ga,
        ),
        width=8,
    )

    board.row("Activation")
    board.add(
        time_series(
            "Activation rate per day",
            ACTIVATION_RATE_DESCRIPTION,
            ACTIVATION_RATE_DAILY,
            unit="percentunit",
            interval="1d",
            minimum=None,
        ),
        width=16,
    )
    board.add(
        stat_panel(
            "Activation rate in the range",
            "API keys added per user added between the first and the last hour of the range "
            "(or the mean of kpi.acquisition_to_activation_rate when the platform computes it).",
            f"""
        WITH kpi AS (
            SELECT avg(value) AS value FROM {DAILY}
            WHERE metric = 'kpi.acquisition_to_activation_rate' AND $__timeFilter(date)
        ), growth AS (
            SELECT metric,
                   (array_agg(value ORDER BY time DESC))[1] - (array_agg(value ORDER BY time))[1]
                       AS added
            FROM {HOURLY}
            WHERE metric IN ('objects.users.count', 'objects.api_keys.count')
              AND $__timeFilter(time)
            GROUP BY metric
        )
        SELECT coalesce(
                   (SELECT value FROM kpi),
                   (SELECT added FROM growth WHERE metric = 'objects.api_keys.count')
                   / nullif((SELECT added FROM growth WHERE metric = 'objects.users.count'), 0)
               ) AS "activation rate"
        """,
            unit="percentunit",
            decimals=1,
        ),
        width=8,
    )

    board.row("Users, profiles and API keys")
    board.add(
        time_series(
            "Totals",
            "Rows in the product database at the end of each interval ($objects).",
            f"""
        SELECT $__timeGroupAlias(time, $__interval), split_part(metric, '.', 2) AS metric,
               (array_agg(value ORDER BY time DESC))[1] AS value
        FROM {HOURLY}
        WHERE $__timeFilter(time) AND metric = ANY(ARRAY[$objects]::text[])
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
            unit="short",
        ),
        width=12,
    )
    board.add(
        time_series(
            "Added per day",
            "End-of-day count minus the previous day's ($objects).",
            f"""
        SELECT (d.date::timestamp AT TIME ZONE 'UTC') AS "time",
               split_part(d.metric, '.', 2) AS metric, d.value - p.value AS value
        FROM {DAILY} d
        JOIN {DAILY} p ON p.metric = d.metric AND p.date = d.date - 1
        WHERE $__timeFilter(d.date) AND d.metric = ANY(ARRAY[$objects]::text[])
        ORDER BY 1, 2
        """,
            unit="short",
            interval="1d",
            bars=True,
            minimum=None,
        ),
        width=12,
    )
    board.add(
        table_panel(
            "Totals at the end of the range",
            "The newest hourly count in the range ($objects).",
            f"""
        SELECT DISTINCT ON (metric) split_part(metric, '.', 2) AS "object", value AS "total",
               time AS "as of"
        FROM {HOURLY}
        WHERE $__timeFilter(time) AND metric = ANY(ARRAY[$objects]::text[])
        ORDER BY metric, time DESC
        """,
        ),
        width=24,
        height=6,
    )
    return board.build()


# --- Quality of service ---------------------------------------------------------------------------


def quality_of_service() -> models.Dashboard:
    board = Board(
        "mp-quality-of-service",
        "Quality of service",
        "Latency and errors of application events, crawler activity, HTTP requests.",
    )
    board.variable(
        catalog_variable(
            "event_type",
            "Event type",
            "Application event types (from events.<type>.count).",
            "SELECT DISTINCT split_part(name, '.', 2) AS event_type FROM metrics.metric "
            "WHERE name LIKE 'events.%.count' ORDER BY 1",
        )
    )
    board.variable(
        name_variable("crawler_metric", "Crawler metrics", "Crawler counts (spider.*).", "spider.%")
    )

    board.row("Latency")
    for percentile in ("p50", "p90", "p99"):
        board.add(
            time_series(
                f"Latency {percentile}",
                f"Hourly {percentile} event duration by event type ($event_type); over intervals "
                "longer than an hour, the worst hour.",
                f"""
            SELECT $__timeGroupAlias(time, $__interval), split_part(metric, '.', 2) AS metric,
                   max(value) AS value
            FROM {HOURLY}
            WHERE $__timeFilter(time) AND metric LIKE 'events.%.duration.{percentile}'
              AND split_part(metric, '.', 2) = ANY(ARRAY[$event_type]::text[])
            GROUP BY 1, 2
            ORDER BY 1, 2
            """,
                unit="ms",
            ),
            width=8,
        )
    board.add(
        time_series(
            "Latency percentiles per day",
            "Daily percentiles, recomputed from the day's raw timings ($event_type).",
            f"""
        SELECT {DAY_AS_TIME},
               split_part(metric, '.', 2) || ' ' || split_part(metric, '.', 4) AS metric, value
        FROM {DAILY}
        WHERE $__timeFilter(date) AND metric LIKE 'events.%.duration.p%'
          AND split_part(metric, '.', 2) = ANY(ARRAY[$event_type]::text[])
        ORDER BY 1, 2
        """,
            unit="ms",
            interval="1d",
        ),
        width=24,
    )

    board.row("Errors")
    error_rate = """
        sum(value) FILTER (WHERE split_part(metric, '.', 3) = 'errors')
            / nullif(sum(value) FILTER (WHERE split_part(metric, '.', 3) = 'count'), 0)
    """.strip()
    board.add(
        time_series(
            "Error rate",
            "events.<type>.errors / events.<type>.count per interval ($event_type).",
            f"""
        SELECT $__timeGroupAlias(time, $__interval), split_part(metric, '.', 2) AS metric,
               {error_rate} AS value
        FROM {HOURLY}
        WHERE $__timeFilter(time) AND metric LIKE 'events.%'
          AND split_part(metric, '.', 3) IN ('count', 'errors')
          AND split_part(metric, '.', 2) = ANY(ARRAY[$event_type]::text[])
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
            unit="percentunit",
        ),
        width=12,
    )
    board.add(
        time_series(
            "Error rate per day",
            "Errors / events per UTC day ($event_type).",
            f"""
        SELECT {DAY_AS_TIME}, split_part(metric, '.', 2) AS metric, {error_rate} AS value
        FROM {DAILY}
        WHERE $__timeFilter(date) AND metric LIKE 'events.%'
          AND split_part(metric, '.', 3) IN ('count', 'errors')
          AND split_part(metric, '.', 2) = ANY(ARRAY[$event_type]::text[])
        GROUP BY date, split_part(metric, '.', 2)
        ORDER BY 1, 2
        """,
            unit="percentunit",
            interval="1d",
        ),
        width=12,
    )
    board.add(
        time_series(
            "Events and errors",
            "Events and failed events per interval ($event_type).",
            f"""
        SELECT $__timeGroupAlias(time, $__interval),
               split_part(metric, '.', 2) || ' ' || split_part(metric, '.', 3) AS metric,
               sum(value) AS value
        FROM {HOURLY}
        WHERE $__timeFilter(time) AND metric LIKE 'events.%'
          AND split_part(metric, '.', 3) IN ('count', 'errors')
          AND split_part(metric, '.', 2) = ANY(ARRAY[$event_type]::text[])
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
            unit="short",
        ),
        width=24,
    )

    board.row("Crawlers")
    board.add(
        time_series(
            "Crawlers",
            "Active, idle and total crawlers at the end of each interval ($crawler_metric).",
            f"""
        SELECT $__timeGroupAlias(time, $__interval), metric,
               (array_agg(value ORDER BY time DESC))[1] AS value
        FROM {HOURLY}
        WHERE $__timeFilter(time) AND metric = ANY(ARRAY[$crawler_metric]::text[])
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
            unit="short",
        ),
        width=16,
    )
    board.add(
        stat_panel(
            "Crawlers at the end of the range",
            "The newest hourly crawler counts in the range.",
            f"""
        SELECT max(value) FILTER (WHERE metric = 'spider.active') AS "active",
               max(value) FILTER (WHERE metric = 'spider.idle') AS "idle",
               max(value) FILTER (WHERE metric = 'spider.total') AS "total"
        FROM (
            SELECT DISTINCT ON (metric) metric, value
            FROM {HOURLY}
            WHERE $__timeFilter(time) AND metric LIKE 'spider.%'
            ORDER BY metric, time DESC
        ) newest
        """,
            unit="short",
            decimals=0,
        ),
        width=8,
    )

    board.row("HTTP (Prometheus)")
    board.add(
        time_series(
            "HTTP requests by job",
            "http.requests.<job> per interval (Prometheus).",
            f"""
        SELECT $__timeGroupAlias(time, $__interval),
               substr(metric, length('http.requests.') + 1) AS metric, sum(value) AS value
        FROM {HOURLY}
        WHERE $__timeFilter(time) AND metric LIKE 'http.requests.%'
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
            unit="short",
            no_value="no Prometheus data",
        ),
        width=24,
    )
    return board.build()


# --- Platform health ------------------------------------------------------------------------------


def platform_health() -> models.Dashboard:
    board = Board(
        "mp-platform-health",
        "Platform health",
        "How fresh and how complete each source's data is in the metric store.",
    )
    board.variable(
        catalog_variable(
            "source",
            "Source",
            "Sources that registered metrics in the catalog.",
            "SELECT DISTINCT source FROM metrics.metric ORDER BY 1",
        )
    )

    board.add(
        table_panel(
            "Freshness by source",
            "Per source: its metrics, the newest hour and day in the store, and how long ago the "
            "newest hour ended (now, not the dashboard's range).",
            f"""
        SELECT m.source AS "source",
               count(*) AS "metrics",
               max(h.newest) AS "newest hour",
               extract(epoch FROM now() - (max(h.newest) + interval '1 hour')) AS "age",
               max(d.newest) AS "newest day"
        FROM metrics.metric m
        LEFT JOIN LATERAL (
            SELECT max(v.time) AS newest FROM {HOURLY} v WHERE v.metric = m.name
        ) h ON true
        LEFT JOIN LATERAL (
            SELECT max(v.date) AS newest FROM {DAILY} v WHERE v.metric = m.name
        ) d ON true
        WHERE m.source = ANY(ARRAY[$source]::text[])
        GROUP BY m.source
        ORDER BY m.source
        """,
            overrides={"age": "s"},
        ),
        width=24,
        height=7,
    )
    board.add(
        bar_gauge(
            "Hours since the newest value",
            "Hours between now and the end of each source's newest landed hour.",
            f"""
        SELECT m.source AS "source",
               extract(epoch FROM now() - (max(h.newest) + interval '1 hour')) / 3600 AS "hours"
        FROM metrics.metric m
        JOIN LATERAL (
            SELECT max(v.time) AS newest FROM {HOURLY} v WHERE v.metric = m.name
        ) h ON h.newest IS NOT NULL
        WHERE m.source = ANY(ARRAY[$source]::text[])
        GROUP BY m.source
        ORDER BY m.source
        """,
            unit="h",
            thresholds=_thresholds((None, "green"), (3, "yellow"), (24, "red")),
        ),
        width=12,
    )
    board.add(
        bar_gauge(
            "Metrics per source",
            "Metric names each source registered in the catalog.",
            """
        SELECT source AS "source", count(*) AS "metrics"
        FROM metrics.metric
        WHERE source = ANY(ARRAY[$source]::text[])
        GROUP BY source
        ORDER BY source
        """,
            unit="short",
        ),
        width=12,
    )
    board.add(
        time_series(
            "Metrics landed per hour",
            "Metrics with a value, per landed hour and source (mean over the interval): a dip is "
            "a metric missing for some hours.",
            f"""
        SELECT $__timeGroupAlias(time, $__interval), source AS metric, avg(landed) AS value
        FROM (
            SELECT v.time, m.source, count(*) AS landed
            FROM {HOURLY} v JOIN metrics.metric m ON m.name = v.metric
            WHERE $__timeFilter(v.time) AND m.source = ANY(ARRAY[$source]::text[])
            GROUP BY v.time, m.source
        ) per_hour
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
            unit="short",
        ),
        width=12,
    )
    board.add(
        time_series(
            "Metrics landed per day",
            "Metrics with a daily value, per UTC day and source.",
            f"""
        SELECT (v.date::timestamp AT TIME ZONE 'UTC') AS "time", m.source AS metric,
               count(*) AS value
        FROM {DAILY} v JOIN metrics.metric m ON m.name = v.metric
        WHERE $__timeFilter(v.date) AND m.source = ANY(ARRAY[$source]::text[])
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
            unit="short",
            interval="1d",
            bars=True,
        ),
        width=12,
    )
    board.add(
        table_panel(
            "Metric catalog",
            "Every metric the sources registered, with its unit and daily rollup.",
            """
        SELECT name AS "metric", source AS "source", aggregation AS "daily rollup",
               unit AS "unit", description AS "description"
        FROM metrics.metric
        WHERE source = ANY(ARRAY[$source]::text[])
        ORDER BY source, name
        """,
        ),
        width=24,
        height=10,
    )
    return board.build()


# --- Public ---------------------------------------------------------------------------------------


def public() -> models.Dashboard:
    """Safe to share: ratios and latency only, no volumes; no variables (shared dashboards
    do not support them)."""
    board = Board(
        "mp-public",
        "Public metrics",
        "Activation and response times, safe to share.",
        links=False,
    )
    board.add(
        time_series(
            "Activation rate per day",
            ACTIVATION_RATE_DESCRIPTION,
            ACTIVATION_RATE_DAILY,
            unit="percentunit",
            interval="1d",
            minimum=None,
        ),
        width=12,
    )
    board.add(
        time_series(
            "Median latency per day",
            "Daily median (p50) event duration, by event type.",
            LATENCY_P50_DAILY,
            unit="ms",
            interval="1d",
        ),
        width=12,
    )
    return board.build()


DASHBOARDS = {
    "business.json": business,
    "quality_of_service.json": quality_of_service,
    "platform_health.json": platform_health,
    "public.json": public,
}


# --- Files ----------------------------------------------------------------------------------------


def render(build) -> str:
    """A dashboard as the committed file's text: 2-space JSON and a final newline."""
    return json.dumps(build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def rendered() -> dict[str, str]:
    return {name: render(build) for name, build in DASHBOARDS.items()}


def differences(directory: Path) -> list[str]:
    """File names whose committed text differs from the code's (missing, changed or stale)."""
    expected = rendered()
    present = {path.name for path in directory.glob("*.json")} if directory.is_dir() else set()
    changed = [
        name
        for name, text in expected.items()
        if name not in present or (directory / name).read_text(encoding="utf-8") != text
    ]
    return sorted(changed + sorted(present - set(expected)))


def write(directory: Path) -> list[str]:
    """Write every dashboard, remove JSON files no dashboard produces; returns what changed."""
    changed = differences(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in rendered().items():
        (directory / name).write_text(text, encoding="utf-8")
    for path in directory.glob("*.json"):
        if path.name not in DASHBOARDS:
            path.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metrics_platform.lib.dashboards",
        description="Generate the Grafana dashboards (grafana/dashboards/*.json) from code.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when the files differ from the code",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DASHBOARD_DIR,
        help=f"where the dashboards live (default: {DASHBOARD_DIR})",
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = differences(args.output_dir)
        if stale:
            print(
                f"dashboards out of date in {args.output_dir}: {', '.join(stale)}; "
                "run `python -m metrics_platform.lib.dashboards`",
                file=sys.stderr,
            )
            return 1
        print(f"dashboards up to date in {args.output_dir}")
        return 0
    changed = write(args.output_dir)
    print(
        f"wrote {len(DASHBOARDS)} dashboards to {args.output_dir}"
        f"{' (changed: ' + ', '.join(changed) + ')' if changed else ' (no change)'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
