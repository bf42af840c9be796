"""The raw SQL metric assets: every query per UTC hour, and `recomputed` ones per business day."""

from collections.abc import Iterable, Sequence
from datetime import timedelta

import dagster as dg
import pandas as pd

from metrics_platform.defs.automation.late_data import later_hours_stale, stale_metadata
from metrics_platform.defs.metadata import window_metadata
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.partitions import utc_window
from metrics_platform.defs.sources.failures import source_failures
from metrics_platform.defs.sources.raw import daily_raw_asset, raw_asset
from metrics_platform.defs.sources.sql_metrics import SOURCE
from metrics_platform.defs.sources.sql_metrics.normalize import combine, read_rows
from metrics_platform.defs.sources.sql_metrics.resource import SqlMetricQueries, SqlQuery
from metrics_platform.lib.metric_rows import fill_zeros, window_hours
from metrics_platform.lib.store import MetricSpec
from metrics_platform.lib.templates import template_fields, template_pattern

HOURLY_KEY = dg.AssetKey(["raw", "sql_metrics"])
DAILY_KEY = dg.AssetKey(["raw", "sql_metrics_daily"])
EVERY_QUERY_RETURNED = "every_query_returned_rows"


def owner(queries: Sequence[SqlQuery], name: str) -> SqlQuery | None:
    """The query that makes a metric name: the one named exactly so, else the first whose
    template can make it."""
    for query in queries:
        if query.metric == name:
            return query
    for query in queries:
        if template_fields(query.metric) and template_pattern(query.metric).fullmatch(name):
            return query
    return None


def metric_specs(queries: Sequence[SqlQuery], names: Iterable[str]) -> list[MetricSpec]:
    specs = []
    for name in sorted(set(names)):
        query = owner(queries, name)
        if query is not None:
            specs.append(
                MetricSpec(
                    name,
                    query.aggregation,
                    SOURCE,
                    query.unit,
                    query.description,
                    query.propagation,
                )
            )
    return specs


def _read(
    context: dg.AssetExecutionContext,
    sql_queries: SqlMetricQueries,
    queries: Sequence[SqlQuery],
    metric_store: MetricStore,
    periods: Sequence,
    *,
    period: str,
) -> tuple[pd.DataFrame, list[tuple[SqlQuery, int]]]:
    """Every query's rows for the run's window, combined, registered in the catalog, and with
    a 0 for every (period, known metric) of a query that is 0 when it returns nothing."""
    start, end = utc_window(context)
    first, last = (start, end) if period == "hour" else (periods[0], periods[-1])
    frames, counts = [], []
    with source_failures(context):
        for query in queries:
            columns, rows = sql_queries.read(query, start, end, daily=period == "day")
            frames.append(
                (query.metric, read_rows(query.metric, columns, rows, first, last, period=period))
            )
            counts.append((query, len(rows)))
        frame = combine(frames, period=period)
    static = [q.metric for q in queries if not template_fields(q.metric)]
    metric_store.register_metrics(metric_specs(queries, [*frame["metric"], *static]))
    known = {*metric_store.source_metrics(SOURCE), *static}
    zeros = [name for name in known if (q := owner(queries, name)) is not None and q.zeros]
    return fill_zeros(frame, zeros, periods, period=period), counts


def _metadata(start, end, queries, counts, frame: pd.DataFrame) -> dict:
    return window_metadata(
        start,
        end,
        queries=len(queries),
        rows_read=sum(rows for _, rows in counts),
        rows_written=len(frame),
        rows_rejected=0,
    )


def _every_query_returned(counts: Sequence[tuple[SqlQuery, int]]) -> dg.AssetCheckResult:
    silent = [query.metric for query, rows in counts if not rows]
    return dg.AssetCheckResult(
        check_name=EVERY_QUERY_RETURNED,
        passed=not silent,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"queries_without_rows": dg.MetadataValue.text(", ".join(silent) or "none")},
    )


@raw_asset(
    HOURLY_KEY,
    source=SOURCE,
    kinds={"postgres", "pandas"},
    checks=[(EVERY_QUERY_RETURNED, "Every SQL metric's query returned rows for the window.")],
)
def sql_metrics_hourly(
    context: dg.AssetExecutionContext, sql_queries: SqlMetricQueries, metric_store: MetricStore
):
    """The SQL metrics of the settings for every UTC hour, each from its query, read-only."""
    start, end = utc_window(context)
    queries = sql_queries.queries
    frame, counts = _read(
        context, sql_queries, queries, metric_store, window_hours(start, end), period="hour"
    )
    stale = later_hours_stale(
        metric_store, HOURLY_KEY, frame, metric_specs(queries, frame["metric"]), end
    )
    yield dg.Output(
        frame,
        metadata={**_metadata(start, end, queries, counts, frame), **stale_metadata(stale)},
    )
    yield _every_query_returned(counts)


@daily_raw_asset(
    DAILY_KEY,
    hourly=HOURLY_KEY,
    source=SOURCE,
    kinds={"postgres", "pandas"},
    checks=[(EVERY_QUERY_RETURNED, "Every daily query returned rows for the window.")],
)
def sql_metrics_daily(
    context: dg.AssetExecutionContext, sql_queries: SqlMetricQueries, metric_store: MetricStore
):
    """The `recomputed` SQL metrics (distinct counts) for every business day, each from its
    daily query."""
    start, end = utc_window(context)
    window = context.partition_time_window  # midnights of the business time zone
    first, last = window.start.date(), window.end.date() - timedelta(days=1)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    queries = [q for q in sql_queries.queries if q.aggregation == "recomputed"]
    frame, counts = _read(context, sql_queries, queries, metric_store, days, period="day")
    yield dg.Output(frame, metadata=_metadata(start, end, queries, counts, frame))
    yield _every_query_returned(counts)
