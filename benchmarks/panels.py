"""Section 3: Grafana-style panel queries over many metrics and a long history.

`metrics` catalog entries get one value per hour over `days` days in `metrics.hourly_values`
and one per day in `metrics.daily_values`, loaded with COPY hour by hour (every metric of an
hour together, the order in which hourly runs write them), then vacuumed and analyzed as
autovacuum would. Each panel query is the shape dashboards send: one metric by name over a
time range, through the `*_by_name` views, with literal values (Grafana expands its macros
into the SQL text). Every repetition asks for another metric. The dashboards' own hourly
panels are measured too, as Grafana sends them: summed per the `$__interval` Grafana picks for
a panel 1,000 px wide, with the dashboards' `date_bin` bucket and with Grafana's
`$__timeGroupAlias` macro for reference.

The queries are measured against the schema as migrated, where every value table's primary key
also carries `value` (migration 4): a panel's rows come from the key's index alone (an
index-only scan). For reference they are measured again with the keys as they were before
(`KEYS_WITHOUT_VALUE`), and migration 4's key rebuild is timed at this size, since it locks the
tables while it runs.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg2.extensions

from benchmarks.synthetic import catalog_metrics
from metrics_platform.lib.dashboards import HOURLY, TIME_BUCKET
from metrics_platform.lib.database import connect
from metrics_platform.lib.grafana_macros import TimeRange, expand, panel_interval
from metrics_platform.lib.grafana_role import DEFAULT_ROLE, ensure_reader_role
from metrics_platform.lib.store import VALUE_TABLES


def _rebuild_keys(include: str) -> str:
    return "\n".join(
        f"ALTER TABLE metrics.{table} DROP CONSTRAINT {table}_pkey, "
        f"ADD CONSTRAINT {table}_pkey PRIMARY KEY (metric_id, {period}){include};"
        for table, period in VALUE_TABLES
    )


KEYS_WITHOUT_VALUE = _rebuild_keys("")  # the keys before migration 4
KEYS_WITH_VALUE = _rebuild_keys(" INCLUDE (value)")  # migration 4's rebuild

PANELS: dict[str, str] = {
    "hourly values": (
        "SELECT time, value FROM metrics.hourly_values_by_name "
        "WHERE metric = %(metric)s AND time >= %(from)s AND time < %(to)s ORDER BY time"
    ),
    "hourly values by day": (
        "SELECT date_trunc('day', time) AS time, sum(value) AS value "
        "FROM metrics.hourly_values_by_name "
        "WHERE metric = %(metric)s AND time >= %(from)s AND time < %(to)s "
        "GROUP BY 1 ORDER BY 1"
    ),
    "daily values": (
        "SELECT date AS time, value FROM metrics.daily_values_by_name "
        "WHERE metric = %(metric)s AND date >= %(from)s::date AND date < %(to)s::date "
        "ORDER BY date"
    ),
}
# A panel of several series: the hourly values of `MULTI_METRICS` metrics (another set every
# time) over `MULTI_DAYS` days, in time order as Grafana wants them.
MULTI_METRICS, MULTI_DAYS = 20, 90
MULTI_PANEL = (
    f"{MULTI_METRICS} metrics' hourly values",
    "SELECT time, metric, value FROM metrics.hourly_values_by_name "
    "WHERE metric = ANY(%(metrics)s) AND time >= %(from)s AND time < %(to)s ORDER BY time",
)

# The dashboards' own hourly panels (`lib/dashboards.py`) aggregate to Grafana's `$__interval`:
# the interval Grafana picks for a panel of `PANEL_WIDTH_PX` pixels (its data points by
# default), at least the dashboards' hour. Each is measured with the dashboards' time bucket,
# then with Grafana's `$__timeGroupAlias` macro in its place for reference. Macros are expanded
# as Grafana expands them.
PANEL_WIDTH_PX = 1000
DASHBOARD_PANEL = (
    "SELECT {bucket}, metric, sum(value) AS value FROM " + HOURLY + " "
    "WHERE $__timeFilter(time) AND metric = ANY(%(metrics)s) GROUP BY 1, 2 ORDER BY 1, 2"
)
BUCKETS = {
    "date_bin": TIME_BUCKET,
    "$__timeGroupAlias": "$__timeGroupAlias(time, $__interval)",
}


def dashboard_panels(end: datetime, windows: dict[str, int], multi_days: int) -> list[tuple]:
    """(panel, window, days, SQL with its macros expanded, metrics) of the dashboards' panel
    shape: one metric over each window, `MULTI_METRICS` over `multi_days`."""
    panels = []
    for window, days, count in [
        *((window, days, 1) for window, days in windows.items()),
        (f"{multi_days} days", multi_days, MULTI_METRICS),
    ]:
        time_range = TimeRange(end - timedelta(days=days), end)
        interval = panel_interval(time_range, PANEL_WIDTH_PX, "1h")
        for name, bucket in BUCKETS.items():
            sql = expand(DASHBOARD_PANEL.format(bucket=bucket), time_range, interval=interval)
            label = f"dashboard panel, {count} metric{'s' if count > 1 else ''}, sum per {interval}"
            panels.append((f"{label} ({name})", window, days, sql, count))
    return panels


class _CopySource:
    """A file-like object that generates COPY text on demand, a block of hours at a time."""

    def __init__(self, blocks):
        self._blocks = iter(blocks)
        self._buffer = ""

    def read(self, size: int = -1) -> str:
        while size < 0 or len(self._buffer) < size:
            block = next(self._blocks, None)
            if block is None:
                break
            self._buffer += block
        if size < 0:
            out, self._buffer = self._buffer, ""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    readline = read


def _hour_blocks(metrics: int, start: datetime, periods: int, step: timedelta, fmt: str):
    rng = np.random.default_rng(11)
    prefixes = [f"{metric_id}\t" for metric_id in range(1, metrics + 1)]
    for index in range(periods):
        stamp = f"{(start + index * step).strftime(fmt)}\t"
        values = rng.integers(0, 100_000, size=metrics).astype(str)
        yield "".join(f"{p}{stamp}{v}\n" for p, v in zip(prefixes, values))


def _vacuum(conn) -> None:
    """What autovacuum does to a store after its writes: set hint bits and the visibility map,
    which index-only scans need, and refresh the statistics. The throwaway server commits
    asynchronously, and VACUUM cannot mark a page all-visible until the commits of its rows are
    flushed: the checkpoint flushes them, as a store committing synchronously would have."""
    with conn.cursor() as cur:
        cur.execute("CHECKPOINT")
        cur.execute("VACUUM ANALYZE metrics.hourly_values")
        cur.execute("VACUUM ANALYZE metrics.daily_values")


def load(url: str, metrics: int, start: datetime, days: int) -> dict:
    conn = connect(url)
    try:
        catalog_metrics(conn, metrics, "panel.metric_")
        started = time.perf_counter()
        with conn, conn.cursor() as cur:
            cur.copy_expert(
                "COPY metrics.hourly_values (metric_id, hour, value) FROM STDIN",
                _CopySource(
                    _hour_blocks(metrics, start, days * 24, timedelta(hours=1), "%Y-%m-%d %H:00+00")
                ),
            )
            cur.copy_expert(
                "COPY metrics.daily_values (metric_id, day, value) FROM STDIN",
                _CopySource(_hour_blocks(metrics, start, days, timedelta(days=1), "%Y-%m-%d")),
            )
        copied = time.perf_counter() - started
        conn.autocommit = True
        _vacuum(conn)
        return {
            "hourly_rows": metrics * days * 24,
            "daily_rows": metrics * days,
            "load_seconds": copied,
            "total_seconds": time.perf_counter() - started,
        }
    finally:
        conn.close()


def rebuild_keys(url: str, statements: str) -> float:
    conn = connect(url)
    conn.autocommit = True
    started = time.perf_counter()
    try:
        with conn.cursor() as cur:
            cur.execute(statements)
        _vacuum(conn)
    finally:
        conn.close()
    return time.perf_counter() - started


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def reader_url(url: str) -> str:
    """The store's URL for the dashboards' read-only role (created as `metrics-platform` does,
    with its session settings), which is how Grafana connects."""
    conn = connect(url)
    try:
        ensure_reader_role(conn)
    finally:
        conn.close()
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{DEFAULT_ROLE}@{host}"))


def measure_queries(
    url: str, metrics: int, end: datetime, windows: dict[str, int], repetitions: int
) -> list[dict]:
    """p50/p95 latency (ms) of every panel over every window, one connection of the reader role
    as Grafana keeps. Each query is timed twice: until its whole result is in the client's
    buffer (libpq has read every row: the server's and the wire's time, what a dashboard waits
    for before its own decoding), and until psycopg2 has also built a Python tuple of every
    row (a cost of this client, not of Grafana, which decodes rows in Go)."""
    rng = random.Random(5)
    conn = connect(url, application_name="metrics_platform benchmark panels")
    conn.autocommit = True
    # Times and dates stay text: the decoded figure does not count the microsecond psycopg2
    # spends building each Python datetime.
    for oid in (1082, 1114, 1184):  # date, timestamp, timestamptz
        psycopg2.extensions.register_type(
            psycopg2.extensions.new_type((oid,), f"TEXT_{oid}", lambda value, cursor: value), conn
        )

    def names(count: int) -> list[str]:
        return [f"panel.metric_{n:04d}" for n in rng.sample(range(1, metrics + 1), count)]

    multi_days = min(MULTI_DAYS, max(windows.values()))
    asked = [
        (panel, window, days, query, 1)
        for window, days in windows.items()
        for panel, query in PANELS.items()
    ] + [(MULTI_PANEL[0], f"{multi_days} days", multi_days, MULTI_PANEL[1], MULTI_METRICS)]
    asked += dashboard_panels(end, windows, multi_days)
    results = []
    try:
        with conn.cursor() as cur:
            for panel, window, days, query, count in asked:
                params = {"from": end - timedelta(days=days), "to": end}
                received, decoded, rows = [], [], 0

                def ask(chosen: list[str], query=query, params=params) -> tuple[float, float, int]:
                    # The SQL text with its literals, as Grafana sends it, built before timing.
                    text = cur.mogrify(query, {**params, "metric": chosen[0], "metrics": chosen})
                    started = time.perf_counter()
                    cur.execute(text)
                    in_buffer = time.perf_counter()
                    count = len(cur.fetchall())
                    done = time.perf_counter()
                    return (in_buffer - started) * 1000, (done - started) * 1000, count

                for _ in range(3):  # warm the connection's plan and catalog caches
                    ask(names(count))
                for _ in range(repetitions):
                    in_buffer_ms, done_ms, rows = ask(names(count))
                    received.append(in_buffer_ms)
                    decoded.append(done_ms)
                results.append(
                    {
                        "panel": panel,
                        "metrics": count,
                        "window": window,
                        "rows": rows,
                        "p50_ms": statistics.median(received),
                        "p95_ms": _percentile(received, 0.95),
                        "p95_decoded_ms": _percentile(decoded, 0.95),
                    }
                )
    finally:
        conn.close()
    return results


def measure(
    create_database: Callable[[str], str],
    *,
    metrics: int,
    start: datetime,
    days: int,
    repetitions: int,
) -> dict:
    url = create_database("panels")
    loaded = load(url, metrics, start, days)
    end = start + timedelta(days=days)
    # The last 30 days, the last year, and the whole store when it holds more.
    windows = {f"{n} days": n for n in sorted({min(30, days), min(365, days), days})}
    reader = reader_url(url)
    as_migrated = measure_queries(reader, metrics, end, windows, repetitions)
    rebuild_keys(url, KEYS_WITHOUT_VALUE)
    without_value = measure_queries(reader, metrics, end, windows, repetitions)
    return {
        "metrics": metrics,
        "days": days,
        "load": loaded,
        "migration_seconds": rebuild_keys(url, KEYS_WITH_VALUE),
        "as_migrated": as_migrated,
        "keys_without_value": without_value,
    }
