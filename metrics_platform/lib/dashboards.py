"""The Grafana dashboards, generated from code.

    python -m metrics_platform.lib.dashboards           write grafana/dashboards/*.json
    python -m metrics_platform.lib.dashboards --check   exit 1 if the files differ from the code

Every `*.json` under `grafana/dashboards/` is an output of this module: edit the code, run the
first command, commit both. The dashboards are built with Grafana Labs' Foundation SDK (builders
for the dashboard JSON model, the classic schema that file provisioning loads); Postgres query
targets, which the SDK has no type for, are `SqlTarget` below. Each dashboard is a `Board` with
its variables and a table of rows and panels (`Row`, `TimeSeries`, `Stat`, `Table`, `BarGauge`):
what each panel shows, its query, its options and its width.

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
keep the last value, percentiles keep the worst hour. Daily panels show one point per business
day, placed at the day's start in the business time zone (`metrics.daily_series`: a Europe/Paris
day starts at 23:00 or 22:00 UTC and lasts 23, 24 or 25 hours). A statistic of a ratio over the
range is the ratio of the range's totals, never a mean of hourly or daily ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, common, dashboard, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.common import GraphDrawStyle

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "metrics_platform"
DATASOURCE = models.DataSourceRef(type_val=DATASOURCE_TYPE, uid=DATASOURCE_UID)
TAG = "metrics-platform"
DASHBOARD_DIR = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"

HOURLY = "metrics.hourly_values_by_name"
DAILY = "metrics.daily_values_by_name"
# Daily values with `time`, the start of their business day in the business time zone.
DAILY_SERIES = "metrics.daily_series"
# The hours inside the range: `$__timeFilter` is inclusive at both ends, so the hour that
# starts at the range's end (the next day's first hour, for a range of days) is left out.
IN_RANGE = "$__timeFilter(time) AND time < $__timeTo()"
# A panel's time bucket: the start of its `$__interval` (Grafana's `$__timeGroupAlias(time,
# $__interval)` buckets, counted from the epoch in UTC) by `date_bin`, which works on timestamps;
# the macro's `floor(extract(epoch from time)/N)*N` is numeric arithmetic on every hour read,
# four to six times slower (benchmarks/README.md, section 3).
TIME_BUCKET = (
    "date_bin(interval '1 millisecond' * $__interval_ms, time, timestamptz 'epoch') AS time"
)


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


# --- Panels ---------------------------------------------------------------------------------------


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


def _thresholds(*steps: tuple[float | None, str]) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=color) for value, color in steps])
    )


@dataclass(frozen=True)
class Row:
    """A row of a board: it holds the panels that follow it, up to the next row."""

    title: str


@dataclass(frozen=True)
class Panel:
    """A line of a board's table of panels: what it shows (title, description, the query of
    `sql`, `no_value` when the query returns nothing) and its place, `width` of the grid's 24
    columns and `height` rows. The subclasses add the options of their kind of panel; units
    default to Grafana's plain numbers (`short`)."""

    title: str
    description: str
    sql: str
    _: KW_ONLY
    width: int
    height: int = 8
    no_value: str | None = None

    def build(self) -> cogbuilder.Builder:
        """The SDK's builder of the panel."""
        panel = self._build()
        return panel.no_value(self.no_value) if self.no_value else panel

    def _build(self) -> cogbuilder.Builder:
        raise NotImplementedError

    def _query(self, panel, fmt: str, interval: str = "1h"):
        """`panel` with this line's title, description and query, on the data source."""
        return (
            panel.title(self.title)
            .description(self.description)
            .datasource(DATASOURCE)
            .with_target(SqlTarget(self.sql, fmt))
            .interval(interval)
        )


@dataclass(frozen=True, kw_only=True)
class TimeSeries(Panel):
    """Lines (or `bars`) over time, one point per `interval`, with `minimum` at the bottom."""

    unit: str = "short"
    interval: str = "1h"
    bars: bool = False
    minimum: float | None = 0

    def _build(self) -> timeseries.Panel:
        panel = (
            self._query(timeseries.Panel(), "time_series", self.interval)
            .unit(self.unit)
            .legend(_legend())
            .tooltip(_tooltip())
            .line_width(1)
            .fill_opacity(80 if self.bars else 10)
            .draw_style(GraphDrawStyle.BARS if self.bars else GraphDrawStyle.LINE)
            .show_points(common_models.VisibilityMode.NEVER)
        )
        return panel if self.minimum is None else panel.min(self.minimum)


@dataclass(frozen=True, kw_only=True)
class Stat(Panel):
    """The last value of each column of a one-row table, as big numbers."""

    unit: str = "short"
    decimals: int | None = None

    def _build(self) -> stat.Panel:
        panel = (
            self._query(stat.Panel(), "table")
            .unit(self.unit)
            .graph_mode(common_models.BigValueGraphMode.NONE)
            .color_mode(common_models.BigValueColorMode.NONE)
            .text_mode(common_models.BigValueTextMode.VALUE_AND_NAME)
            .reduce_options(common.ReduceDataOptions().values(False).calcs(["lastNotNull"]))
        )
        return panel if self.decimals is None else panel.decimals(self.decimals)


@dataclass(frozen=True, kw_only=True)
class Table(Panel):
    """The query's rows; `units` by column name, for the columns that have one."""

    units: Mapping[str, str] = field(default_factory=dict)

    def _build(self) -> table.Panel:
        panel = self._query(table.Panel(), "table").show_header(True)
        for column, unit in self.units.items():
            panel = panel.override_by_name(
                column, [models.DynamicConfigValue(id_val="unit", value=unit)]
            )
        return panel


@dataclass(frozen=True, kw_only=True)
class BarGauge(Panel):
    """One horizontal bar per row of the query (label, value), from zero."""

    unit: str = "short"
    thresholds: dashboard.ThresholdsConfig | None = None

    def _build(self) -> bargauge.Panel:
        panel = (
            self._query(bargauge.Panel(), "table")
            .unit(self.unit)
            .min(0)
            .orientation(common_models.VizOrientation.HORIZONTAL)
            .display_mode(common_models.BarGaugeDisplayMode.BASIC)
            .reduce_options(common.ReduceDataOptions().values(True).calcs([]).fields(""))
        )
        return panel if self.thresholds is None else panel.thresholds(self.thresholds)


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
    """A dashboard under construction, with its `variables`: `build` adds its rows and panels,
    which get ids in order and flow over the 24-column grid."""

    def __init__(
        self,
        uid: str,
        title: str,
        description: str,
        *,
        variables: Sequence[dashboard.QueryVariable] = (),
        links: bool = True,
        time_from: str = "now-7d",
        tags: Sequence[str] = (),
    ) -> None:
        self.next_id = 1
        self.builder = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags([TAG, *tags])
            .timezone("utc")
            .time(time_from, "now")
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
        for variable in variables:
            self.builder = self.builder.with_variable(variable)

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def build(self, *items: Row | Panel) -> models.Dashboard:
        """The dashboard with its table of rows and panels, `items`, in order."""
        for item in items:
            if isinstance(item, Row):
                self.builder = self.builder.with_row(
                    dashboard.Row(item.title).id(self._id()).datasource(DATASOURCE).collapsed(False)
                )
            else:
                self.builder = self.builder.with_panel(
                    item.build().id(self._id()).span(item.width).height(item.height)
                )
        return self.builder.build()


# --- Shared queries -------------------------------------------------------------------------------

# The activation rate: sign-ups per new user (`kpi.acquisition_to_activation_rate`, the ratio
# of a day's totals) where the platform computes it; otherwise a proxy, new API keys per new
# user from the end-of-day counts. A range's rate is the ratio of the range's totals.
ACTIVATION = ("events.signup.count", "ga.new_users")
ACTIVATION_RATE_DAILY = f"""
    WITH kpi AS (
        SELECT time, value FROM {DAILY_SERIES}
        WHERE metric = 'kpi.acquisition_to_activation_rate' AND $__timeFilter(time)
    ), counts AS (
        SELECT date, time,
               max(value) FILTER (WHERE metric = 'objects.users.count') AS users,
               max(value) FILTER (WHERE metric = 'objects.api_keys.count') AS api_keys
        FROM {DAILY_SERIES}
        WHERE metric IN ('objects.users.count', 'objects.api_keys.count')
          AND date BETWEEN $__timeFrom()::date - 2 AND $__timeTo()::date + 1
        GROUP BY date, time
    ), computed AS (
        SELECT c.time, (c.api_keys - p.api_keys) / nullif(c.users - p.users, 0) AS value
        FROM counts c JOIN counts p ON p.date = c.date - 1
        WHERE $__timeFilter(c.time) AND NOT EXISTS (SELECT 1 FROM kpi)
    )
    SELECT time, value AS "activation rate"
    FROM (SELECT time, value FROM kpi UNION ALL SELECT time, value FROM computed) rates
    ORDER BY 1
"""
ACTIVATION_RATE_DESCRIPTION = (
    "Sign-ups per new user (kpi.acquisition_to_activation_rate: events.signup.count / "
    "ga.new_users of each business day, placed at the day's start). Without it, a proxy: new "
    "API keys per new user from the end-of-day counts (a key may come from an older user)."
)


def last_per_interval(series: str, variable: str) -> str:
    """The query of a gauge: the last hourly value in each interval of the metrics that the
    variable `$variable` selects, one series by `series` (a SELECT expression named metric)."""
    return f"""
        SELECT {TIME_BUCKET}, {series},
               (array_agg(value ORDER BY time DESC))[1] AS value
        FROM {HOURLY}
        WHERE $__timeFilter(time) AND metric = ANY(ARRAY[${variable}]::text[])
        GROUP BY 1, 2
        ORDER BY 1, 2
    """


def sum_per_interval(metric: str) -> str:
    """The query of a counter: the sum of the metric's hourly values in each interval."""
    return f"""
        SELECT {TIME_BUCKET}, metric, sum(value) AS value
        FROM {HOURLY}
        WHERE $__timeFilter(time) AND metric = ANY(ARRAY['{metric}']::text[])
        GROUP BY 1, 2
        ORDER BY 1, 2
    """


def daily_per_metric(series: str, metrics: Sequence[str]) -> str:
    """The daily values of `metrics`, each at its business day's start, one series by `series`
    (a SELECT expression named metric)."""
    names = ", ".join(f"'{name}'" for name in metrics)
    return f"""
        SELECT time, {series}, value
        FROM {DAILY_SERIES}
        WHERE $__timeFilter(time) AND metric = ANY(ARRAY[{names}]::text[])
        ORDER BY 1, 2
    """


LATENCY_P50_DAILY = f"""
    SELECT time, split_part(metric, '.', 2) AS metric, value
    FROM {DAILY_SERIES}
    WHERE $__timeFilter(time) AND metric LIKE 'events.%.duration.p50'
    ORDER BY 1, 2
"""


# --- Variables ------------------------------------------------------------------------------------

# The dashboards' variables, each named as the queries use it (`$objects`, ...).
OBJECTS = name_variable(
    "objects", "Objects", "Product objects counted in the product database.", "objects.%"
)
CRAWLER_METRIC = name_variable(
    "crawler_metric", "Crawler metrics", "Crawler counts (spider.*).", "spider.%"
)
EVENT_TYPE = catalog_variable(
    "event_type",
    "Event type",
    "Application event types (from events.<type>.count).",
    "SELECT DISTINCT split_part(name, '.', 2) AS event_type FROM metrics.metric "
    "WHERE name LIKE 'events.%.count' ORDER BY 1",
)
SOURCE = catalog_variable(
    "source",
    "Source",
    "Sources that registered metrics in the catalog.",
    "SELECT DISTINCT source FROM metrics.metric ORDER BY 1",
)


# --- Business -------------------------------------------------------------------------------------


def business() -> models.Dashboard:
    no_ga = "no GA4 data"
    board = Board(
        "mp-business",
        "Business metrics",
        "Acquisition, activation and the growth of users, profiles and API keys.",
        variables=[OBJECTS],
    )
    return board.build(
        Row("Acquisition (Google Analytics)"),
        TimeSeries(
            "Sessions started",
            "ga.sessions per interval (GA4).",
            sum_per_interval("ga.sessions"),
            width=12,
            no_value=no_ga,
        ),
        TimeSeries(
            "New users",
            "ga.new_users per interval (GA4). Active users are distinct users, which do not add "
            "up over an interval: see them per day below (ga.active_users, recomputed by GA4 "
            "for each day).",
            sum_per_interval("ga.new_users"),
            width=12,
            no_value=no_ga,
        ),
        TimeSeries(
            "Acquisition per day",
            "GA4 sessions, new users and active users per business day.",
            daily_per_metric("metric", ("ga.sessions", "ga.new_users", "ga.active_users")),
            width=16,
            interval="1d",
            bars=True,
            no_value=no_ga,
        ),
        Stat(
            "Acquisition in the range",
            "GA4 sessions and new users over the whole time range.",
            f"""
            SELECT sum(value) FILTER (WHERE metric = 'ga.sessions') AS "sessions",
                   sum(value) FILTER (WHERE metric = 'ga.new_users') AS "new users"
            FROM {HOURLY}
            WHERE {IN_RANGE} AND metric IN ('ga.sessions', 'ga.new_users')
            """,
            width=8,
            decimals=0,
            no_value=no_ga,
        ),
        Row("Activation"),
        TimeSeries(
            "Activation rate per day",
            ACTIVATION_RATE_DESCRIPTION,
            ACTIVATION_RATE_DAILY,
            width=16,
            unit="percentunit",
            interval="1d",
            minimum=None,
        ),
        Stat(
            "Activation rate in the range",
            "Sign-ups per new user over the whole range: the range's sign-ups divided by its new "
            "users (events.signup.count / ga.new_users), never a mean of daily rates. Without "
            "them, API keys added per user added between the first and the last hour.",
            f"""
            WITH totals AS (
                SELECT sum(value) FILTER (WHERE metric = '{ACTIVATION[0]}') AS signups,
                       sum(value) FILTER (WHERE metric = '{ACTIVATION[1]}') AS new_users
                FROM {HOURLY}
                WHERE {IN_RANGE} AND metric IN ('{ACTIVATION[0]}', '{ACTIVATION[1]}')
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
                       (SELECT signups / nullif(new_users, 0) FROM totals),
                       (SELECT added FROM growth WHERE metric = 'objects.api_keys.count')
                       / nullif((SELECT added FROM growth WHERE metric = 'objects.users.count'), 0)
                   ) AS "activation rate"
            """,
            width=8,
            unit="percentunit",
            decimals=1,
        ),
        Row("Retention of sign-up cohorts"),
        TimeSeries(
            "Retention per cohort",
            "Of the users who signed up on each business day (the point at the day's start), "
            "the share active again 1, 7 and 30 days later (retention.d1 / d7 / d30). A "
            "cohort's D7 appears once its seventh day has closed.",
            daily_per_metric(
                "upper(split_part(metric, '.', 2)) AS metric",
                ("retention.d1", "retention.d7", "retention.d30"),
            ),
            width=16,
            unit="percentunit",
            interval="1d",
            no_value="no retention data",
        ),
        Stat(
            "Retention in the range",
            "Of the users who signed up on the range's business days, the share active again "
            "1, 7 and 30 days later: the cohorts' returning users over their sizes (only the "
            "cohorts whose day N has closed), never a mean of daily shares.",
            f"""
            WITH cohorts AS (
                SELECT date,
                       max(value) FILTER (WHERE metric = 'users.signed_up') AS size,
                       max(value) FILTER (WHERE metric = 'retention.d1.users') AS d1,
                       max(value) FILTER (WHERE metric = 'retention.d7.users') AS d7,
                       max(value) FILTER (WHERE metric = 'retention.d30.users') AS d30
                FROM {DAILY_SERIES}
                WHERE $__timeFilter(time) AND time < $__timeTo()
                  AND metric = ANY(ARRAY['users.signed_up', 'retention.d1.users',
                                         'retention.d7.users', 'retention.d30.users']::text[])
                GROUP BY date
            )
            SELECT sum(d1) / nullif(sum(size) FILTER (WHERE d1 IS NOT NULL), 0) AS "D1",
                   sum(d7) / nullif(sum(size) FILTER (WHERE d7 IS NOT NULL), 0) AS "D7",
                   sum(d30) / nullif(sum(size) FILTER (WHERE d30 IS NOT NULL), 0) AS "D30"
            FROM cohorts
            """,
            width=8,
            unit="percentunit",
            decimals=1,
            no_value="no retention data",
        ),
        Row("Users, profiles and API keys"),
        TimeSeries(
            "Totals",
            "Rows in the product database at the end of each interval ($objects).",
            last_per_interval("split_part(metric, '.', 2) AS metric", "objects"),
            width=12,
        ),
        TimeSeries(
            "Added per day",
            "End-of-day count minus the previous day's ($objects).",
            f"""
            SELECT d.time, split_part(d.metric, '.', 2) AS metric, d.value - p.value AS value
            FROM {DAILY_SERIES} d
            JOIN {DAILY_SERIES} p ON p.metric = d.metric AND p.date = d.date - 1
            WHERE $__timeFilter(d.time) AND d.metric = ANY(ARRAY[$objects]::text[])
            ORDER BY 1, 2
            """,
            width=12,
            interval="1d",
            bars=True,
            minimum=None,
        ),
        Table(
            "Totals at the end of the range",
            "The newest hourly count in the range ($objects).",
            f"""
            SELECT DISTINCT ON (metric) split_part(metric, '.', 2) AS "object", value AS "total",
                   time AS "as of"
            FROM {HOURLY}
            WHERE $__timeFilter(time) AND metric = ANY(ARRAY[$objects]::text[])
            ORDER BY metric, time DESC
            """,
            width=24,
            height=6,
        ),
    )


# --- Quality of service ---------------------------------------------------------------------------


def quality_of_service() -> models.Dashboard:
    board = Board(
        "mp-quality-of-service",
        "Quality of service",
        "Latency and errors of application events, crawler activity, HTTP requests.",
        variables=[EVENT_TYPE, CRAWLER_METRIC],
    )
    # Parts of the error queries below: errors / events, and the counts and errors of the event
    # types $event_type selects. Their lines after the first are indented as those queries' lines.
    error_rate = """sum(value) FILTER (WHERE split_part(metric, '.', 3) = 'errors')
                / nullif(sum(value) FILTER (WHERE split_part(metric, '.', 3) = 'count'), 0)"""
    counts_and_errors = """metric LIKE 'events.%'
              AND split_part(metric, '.', 3) IN ('count', 'errors')
              AND split_part(metric, '.', 2) = ANY(ARRAY[$event_type]::text[])"""
    return board.build(
        Row("Latency"),
        *(
            TimeSeries(
                f"Latency {percentile}",
                f"Hourly {percentile} event duration by event type ($event_type); over intervals "
                "longer than an hour, the worst hour.",
                f"""
                SELECT {TIME_BUCKET}, split_part(metric, '.', 2) AS metric,
                       max(value) AS value
                FROM {HOURLY}
                WHERE $__timeFilter(time) AND metric LIKE 'events.%.duration.{percentile}'
                  AND split_part(metric, '.', 2) = ANY(ARRAY[$event_type]::text[])
                GROUP BY 1, 2
                ORDER BY 1, 2
                """,
                width=8,
                unit="ms",
            )
            for percentile in ("p50", "p90", "p99")
        ),
        TimeSeries(
            "Latency percentiles per day",
            "Daily percentiles, recomputed from the day's raw timings ($event_type).",
            f"""
            SELECT time,
                   split_part(metric, '.', 2) || ' ' || split_part(metric, '.', 4) AS metric, value
            FROM {DAILY_SERIES}
            WHERE $__timeFilter(time) AND metric LIKE 'events.%.duration.p%'
              AND split_part(metric, '.', 2) = ANY(ARRAY[$event_type]::text[])
            ORDER BY 1, 2
            """,
            width=24,
            unit="ms",
            interval="1d",
        ),
        Row("Errors"),
        TimeSeries(
            "Error rate",
            "events.<type>.errors / events.<type>.count per interval ($event_type).",
            f"""
            SELECT {TIME_BUCKET}, split_part(metric, '.', 2) AS metric,
                   {error_rate} AS value
            FROM {HOURLY}
            WHERE $__timeFilter(time) AND {counts_and_errors}
            GROUP BY 1, 2
            ORDER BY 1, 2
            """,
            width=12,
            unit="percentunit",
        ),
        TimeSeries(
            "Error rate per day",
            "Errors / events per business day ($event_type).",
            f"""
            SELECT time, split_part(metric, '.', 2) AS metric, {error_rate} AS value
            FROM {DAILY_SERIES}
            WHERE $__timeFilter(time) AND {counts_and_errors}
            GROUP BY time, split_part(metric, '.', 2)
            ORDER BY 1, 2
            """,
            width=12,
            unit="percentunit",
            interval="1d",
        ),
        TimeSeries(
            "Events and errors",
            "Events and failed events per interval ($event_type).",
            f"""
            SELECT {TIME_BUCKET},
                   split_part(metric, '.', 2) || ' ' || split_part(metric, '.', 3) AS metric,
                   sum(value) AS value
            FROM {HOURLY}
            WHERE $__timeFilter(time) AND {counts_and_errors}
            GROUP BY 1, 2
            ORDER BY 1, 2
            """,
            width=24,
        ),
        Row("Crawlers"),
        TimeSeries(
            "Crawlers",
            "Active, idle and total crawlers at the end of each interval ($crawler_metric).",
            last_per_interval("metric", "crawler_metric"),
            width=16,
        ),
        Stat(
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
            width=8,
            decimals=0,
        ),
        Row("HTTP (Prometheus)"),
        TimeSeries(
            "HTTP requests by job",
            "http.requests.<job> per interval (Prometheus).",
            f"""
            SELECT {TIME_BUCKET},
                   substr(metric, length('http.requests.') + 1) AS metric, sum(value) AS value
            FROM {HOURLY}
            WHERE $__timeFilter(time) AND metric LIKE 'http.requests.%'
            GROUP BY 1, 2
            ORDER BY 1, 2
            """,
            width=24,
            no_value="no Prometheus data",
        ),
    )


# --- Platform health ------------------------------------------------------------------------------


def platform_health() -> models.Dashboard:
    board = Board(
        "mp-platform-health",
        "Platform health",
        "How fresh and how complete each source's data is in the metric store.",
        variables=[SOURCE],
    )
    return board.build(
        Table(
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
            width=24,
            height=7,
            units={"age": "s"},
        ),
        Stat(
            "Complete hours in the range",
            "Share of the range's landed hours for which every enabled source landed values "
            "(platform.hour_complete).",
            f"""
            SELECT sum(value) / nullif(count(*), 0) AS "complete"
            FROM {HOURLY}
            WHERE {IN_RANGE} AND metric = 'platform.hour_complete'
            """,
            width=6,
            unit="percentunit",
            decimals=1,
        ),
        Table(
            "Incomplete hours",
            "Hours of the range that an enabled source landed nothing for, newest first, with "
            "how many sources are missing (the hourly values' completeness check names them).",
            f"""
            SELECT c.time AS "hour", m.value AS "sources missing"
            FROM {HOURLY} c
            JOIN {HOURLY} m ON m.time = c.time AND m.metric = 'platform.sources_missing'
            WHERE $__timeFilter(c.time) AND c.metric = 'platform.hour_complete' AND c.value = 0
            ORDER BY c.time DESC
            LIMIT 200
            """,
            width=9,
            height=7,
        ),
        Table(
            "Incomplete days",
            "Business days of the range rolled up from missing or incomplete hours, newest "
            "first, with their complete hours.",
            f"""
            SELECT d.date AS "day", h.value AS "complete hours"
            FROM {DAILY_SERIES} d
            LEFT JOIN {DAILY_SERIES} h ON h.date = d.date AND h.metric = 'platform.hour_complete'
            WHERE $__timeFilter(d.time) AND d.metric = 'platform.day_complete' AND d.value = 0
            ORDER BY d.date DESC
            """,
            width=9,
            height=7,
        ),
        BarGauge(
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
            width=12,
            unit="h",
            thresholds=_thresholds((None, "green"), (3, "yellow"), (24, "red")),
        ),
        BarGauge(
            "Metrics per source",
            "Metric names each source registered in the catalog.",
            """
            SELECT source AS "source", count(*) AS "metrics"
            FROM metrics.metric
            WHERE source = ANY(ARRAY[$source]::text[])
            GROUP BY source
            ORDER BY source
            """,
            width=12,
        ),
        TimeSeries(
            "Metrics landed per hour",
            "Metrics with a value, per landed hour and source (mean over the interval): a dip is "
            "a metric missing for some hours.",
            f"""
            SELECT {TIME_BUCKET}, source AS metric, avg(landed) AS value
            FROM (
                SELECT v.time, m.source, count(*) AS landed
                FROM {HOURLY} v JOIN metrics.metric m ON m.name = v.metric
                WHERE $__timeFilter(v.time) AND m.source = ANY(ARRAY[$source]::text[])
                GROUP BY v.time, m.source
            ) per_hour
            GROUP BY 1, 2
            ORDER BY 1, 2
            """,
            width=12,
        ),
        TimeSeries(
            "Metrics landed per day",
            "Metrics with a daily value, per business day and source.",
            f"""
            SELECT v.time, m.source AS metric, count(*) AS value
            FROM {DAILY_SERIES} v JOIN metrics.metric m ON m.name = v.metric
            WHERE $__timeFilter(v.time) AND m.source = ANY(ARRAY[$source]::text[])
            GROUP BY 1, 2
            ORDER BY 1, 2
            """,
            width=12,
            interval="1d",
            bars=True,
        ),
        Table(
            "Metric catalog",
            "Every metric the sources and KPIs registered: its unit and description, its latest "
            "value (the newest hour, else the newest business day) and how long ago that period "
            "ended (now, not the dashboard's range).",
            f"""
            SELECT m.name AS "metric", m.unit AS "unit", m.description AS "description",
                   coalesce(h.value, d.value) AS "latest value",
                   coalesce(h.time, d.time) AS "as of",
                   extract(epoch FROM now() - coalesce(h.time + interval '1 hour', d.day_end))
                       AS "freshness",
                   m.source AS "source", m.aggregation AS "daily rollup"
            FROM metrics.metric m
            LEFT JOIN LATERAL (
                SELECT v.time, v.value FROM {HOURLY} v WHERE v.metric = m.name
                ORDER BY v.time DESC LIMIT 1
            ) h ON true
            LEFT JOIN LATERAL (
                SELECT v.time, v.value,
                       (v.date + 1)::timestamp AT TIME ZONE c.time_zone AS day_end
                FROM {DAILY_SERIES} v CROSS JOIN metrics.business_calendar c
                WHERE v.metric = m.name
                ORDER BY v.date DESC LIMIT 1
            ) d ON true
            WHERE m.source = ANY(ARRAY[$source]::text[])
            ORDER BY m.source, m.name
            """,
            width=24,
            height=10,
            units={"freshness": "s"},
        ),
        Table(
            "Metric alerts",
            "Alert episodes of the metric alert rules, open ones first, then the latest: when "
            "each fired, the value and expected range, and when the metric came back.",
            """
            SELECT rule AS "rule", metric AS "metric", grain AS "grain",
                   fired_period AS "fired at", fired_value AS "value",
                   expected_low AS "expected low", expected_high AS "expected high",
                   resolved_period AS "resolved at", reason AS "reason"
            FROM metrics.alert_episodes
            ORDER BY resolved_at IS NULL DESC, opened_at DESC
            LIMIT 100
            """,
            width=24,
            height=8,
        ),
    )


# --- Public ---------------------------------------------------------------------------------------


def public() -> models.Dashboard:
    """Safe to share externally (Grafana's shared dashboards, see grafana/README.md): ratios and
    latency only, no volumes; no variables, links or annotations, which a shared dashboard does
    not support, and a fixed range of 30 business days (a shared link shows the dashboard's own
    range unless time selection is enabled on it)."""
    board = Board(
        "mp-public",
        "Public metrics",
        "Activation and response times, safe to share.",
        links=False,
        time_from="now-30d",
        tags=["public"],
    )
    return board.build(
        TimeSeries(
            "Activation rate per day",
            ACTIVATION_RATE_DESCRIPTION,
            ACTIVATION_RATE_DAILY,
            width=12,
            unit="percentunit",
            interval="1d",
            minimum=None,
        ),
        TimeSeries(
            "Median latency per day",
            "Daily median (p50) event duration, by event type.",
            LATENCY_P50_DAILY,
            width=12,
            unit="ms",
            interval="1d",
        ),
    )


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
