"""Stored values are never replaced by less: a write that would remove metric-hours the store
holds fails naming source, window and loss, keeps them, and goes through only when the run
allows it explicitly. Against real Postgres and real Prometheus servers."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice

from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.metrics.assets import (
    DAILY_VALUES_KEY,
    HOURLY_VALUES_KEY,
    build_daily_values,
    build_hourly_values,
)
from metrics_platform.defs.partitions import hourly_partitions
from metrics_platform.defs.sources.prometheus.assets import SERIES_KEY, build_prometheus_series
from metrics_platform.defs.sources.prometheus.resource import Prometheus, PrometheusQuery
from metrics_platform.lib.database import connect
from metrics_platform.lib.postgres_io import PostgresPandasIOManager
from metrics_platform.lib.postgres_io.client import column_types
from metrics_platform.lib.postgres_io.kept_values import ALLOW_FEWER_VALUES_TAG, values_lost
from metrics_platform_tests.conftest import RANGE_TAGS, SOURCE_DAYS, SOURCE_HOURS, execute, query
from metrics_platform_tests.prometheus_server import running_prometheus

UTC = timezone.utc
ONE_HOUR = timedelta(hours=1)
REQUESTS = PrometheusQuery(
    query="sum by (job) (increase(http_requests_total[1h]))",
    metric="http.requests.{job}",
    aggregation="sum",
)


def hour_slice(start: datetime, end: datetime, table="t") -> TableSlice:
    return TableSlice(
        table=table,
        schema="kept",
        partition_dimensions=[TablePartitionDimension("hour", TimeWindow(start, end))],
    )


def lost(url: str, table_slice: TableSlice, frame: pd.DataFrame, key):
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            return values_lost(cur, table_slice, frame, key, column_types(cur, table_slice))
    finally:
        conn.close()


@pytest.fixture
def kept_table(store_url) -> str:
    execute(
        store_url,
        """CREATE SCHEMA kept;
           CREATE TABLE kept.t (hour timestamptz, metric text, value float8,
                                PRIMARY KEY (metric, hour));
           CREATE TABLE kept.d (day date, metric text, value float8, PRIMARY KEY (metric, day));
           INSERT INTO kept.t VALUES
             ('2026-03-10 04:00Z', 'count', 1), ('2026-03-10 05:00Z', 'count', 2),
             ('2026-03-10 04:00Z', 'p99', 10), ('2026-03-10 05:00Z', 'p99', 11),
             ('2026-03-10 07:00Z', 'count', 3);
           INSERT INTO kept.d VALUES ('2026-03-10', 'count', 3), ('2026-03-11', 'count', 4);""",
    )
    return store_url


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "hour": pd.to_datetime([r[0] for r in rows], utc=True),
            "metric": [r[1] for r in rows],
            "value": [float(r[2]) for r in rows],
        }
    )


START, END = datetime(2026, 3, 10, 4, tzinfo=UTC), datetime(2026, 3, 10, 6, tzinfo=UTC)


def test_new_rows_covering_every_stored_key_lose_nothing(kept_table):
    new = frame([("2026-03-10 04:00", "count", 5), ("2026-03-10 05:00", "count", 6)])
    new = pd.concat([new, frame([("2026-03-10 04:00", "p99", 1), ("2026-03-10 05:00", "p99", 2)])])
    assert lost(kept_table, hour_slice(START, END), new, ["metric", "hour"]) is None
    # More than before is never a loss; the hour after the window is not the window's.
    more = pd.concat([new, frame([("2026-03-10 05:00", "p50", 1)])])
    assert lost(kept_table, hour_slice(START, END), more, ["metric", "hour"]) is None


def test_a_missing_key_and_a_moved_hour_are_losses(kept_table):
    # `count` is gone; `p99` covers 05:00 but not 04:00 any more (same number of rows).
    new = frame([("2026-03-10 05:00", "p99", 1)])
    loss = lost(kept_table, hour_slice(START, END), new, ["metric", "hour"])
    assert loss.rows == 3 and dict(loss.by_key) == {"count": 2, "p99": 1}
    assert loss.describe() == "3 stored value(s) of 2 key(s): count (2), p99 (1)"
    # Nothing stored in the window: nothing to lose.
    empty = frame([])
    later = hour_slice(datetime(2026, 3, 10, 8, tzinfo=UTC), datetime(2026, 3, 10, 9, tzinfo=UTC))
    assert lost(kept_table, later, empty, ["metric", "hour"]) is None


def test_days_are_compared_as_dates(kept_table):
    paris = ZoneInfo("Europe/Paris")  # a window of business days, in the business zone
    window = TimeWindow(datetime(2026, 3, 10, tzinfo=paris), datetime(2026, 3, 12, tzinfo=paris))
    table_slice = TableSlice(
        table="d", schema="kept", partition_dimensions=[TablePartitionDimension("day", window)]
    )
    one_day = pd.DataFrame({"day": [date(2026, 3, 11)], "metric": ["count"], "value": [1.0]})
    assert dict(lost(kept_table, table_slice, one_day, ["metric", "day"]).by_key) == {"count": 1}
    both = pd.DataFrame(
        {"day": [date(2026, 3, 10), date(2026, 3, 11)], "metric": ["count"] * 2, "value": [1.0] * 2}
    )
    assert lost(kept_table, table_slice, both, ["metric", "day"]) is None


# --- a Prometheus that lost its past, end to end -------------------------------------------------


def run_prometheus(store_url, url, first, last, tags=None):
    resources = {
        "io_manager": PostgresPandasIOManager(url=store_url),
        "metric_store": MetricStore(url=store_url),
        "prometheus": Prometheus(base_url=url, queries=[REQUESTS], max_retries=0),
    }
    keys = [hour.strftime("%Y-%m-%d-%H:%M") for hour in (first, last)]
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [build_prometheus_series(), build_hourly_values([SERIES_KEY])],
            instance=instance,
            resources=resources,
            tags={**dict(zip(RANGE_TAGS, keys)), **(tags or {})},
            raise_on_error=False,
        )


def stored(store_url) -> dict:
    raw = query(store_url, "SELECT metric, hour, value FROM raw.prometheus_series")
    hourly = query(store_url, "SELECT metric, time, value FROM " + SOURCE_HOURS)
    return {"raw": sorted(raw), "hourly": sorted(hourly)}


def test_an_empty_answer_for_an_old_window_fails_and_keeps_the_stored_values(store_url):
    with running_prometheus() as server:
        first, last = server.start, server.start + 23 * ONE_HOUR
        assert run_prometheus(store_url, server.url, first, last).success
    before = stored(store_url)
    assert len(before["raw"]) == 2 * 24 and len(before["hourly"]) == 2 * 24

    # The same window, re-run against a Prometheus that no longer has those hours.
    with running_prometheus(backfilled=False) as empty:
        result = run_prometheus(store_url, empty.url, first, last)
        assert not result.success
        [failure] = result.get_step_failure_events()
        assert failure.step_key == "raw__prometheus_series"
        message = failure.event_specific_data.error.message
        window = f"{first:%Y-%m-%dT%H:%MZ}..{last + ONE_HOUR:%Y-%m-%dT%H:%MZ}"
        assert f"source 'prometheus', window {window}" in message
        assert "would remove 48 stored value(s) of 2 key(s)" in message
        assert "http.requests.api (24), http.requests.web (24)" in message
        assert ALLOW_FEWER_VALUES_TAG in message
        # Refused at once, not retried: asking again gives the same answer.
        assert not any(e.is_step_up_for_retry for e in result.all_events)
        assert stored(store_url) == before

        # The operator's explicit decision lets the shrink through, for that run.
        allowed = run_prometheus(
            store_url, empty.url, first, last, tags={ALLOW_FEWER_VALUES_TAG: "true"}
        )
        assert allowed.success
    assert stored(store_url) == {"raw": [], "hourly": []}


# --- a disabled source's values ------------------------------------------------------------------

A, B = dg.AssetKey(["raw", "source_a"]), dg.AssetKey(["raw", "source_b"])
DAY = "2026-03-10"


def run_values(store_url, sources: dict[dg.AssetKey, str], tags=None) -> dg.ExecuteInProcessResult:
    """The hourly values of 05:00 and 06:00 from `sources` (key: source name), then their day."""
    specs = [
        dg.AssetSpec(key, partitions_def=hourly_partitions, metadata={"partition_expr": "hour"})
        for key in sources
    ]
    resources = {
        "io_manager": PostgresPandasIOManager(url=store_url),
        "metric_store": MetricStore(url=store_url),
    }
    assets = [
        *specs,
        build_hourly_values(list(sources), source_names=sources),
        build_daily_values([], source_names=list(sources.values())),
    ]
    with dg.instance_for_test() as instance:
        hours = dg.materialize(
            assets,
            selection=[HOURLY_VALUES_KEY],
            instance=instance,
            resources=resources,
            tags={
                **dict(zip(RANGE_TAGS, ("2026-03-10-05:00", "2026-03-10-06:00"))),
                **(tags or {}),
            },
            raise_on_error=False,
        )
        if not hours.success:
            return hours
        return dg.materialize(
            assets,
            selection=[DAILY_VALUES_KEY],
            instance=instance,
            resources=resources,
            partition_key=DAY,
            tags=tags,
            raise_on_error=False,
        )


def source_values(store_url) -> dict:
    hourly = query(store_url, "SELECT metric, time, value FROM " + SOURCE_HOURS)
    daily = query(store_url, "SELECT metric, date, value FROM " + SOURCE_DAYS)
    return {"hourly": sorted(hourly), "daily": sorted(daily)}


def test_a_disabled_source_keeps_its_values_when_the_others_are_recomputed(store_url):
    execute(
        store_url,
        """CREATE SCHEMA raw;
           CREATE TABLE raw.source_a (hour timestamptz, metric text, value float8,
                                      PRIMARY KEY (metric, hour));
           CREATE TABLE raw.source_b (LIKE raw.source_a INCLUDING ALL);
           INSERT INTO raw.source_a VALUES ('2026-03-10 05:00Z', 'a.count', 1),
                                           ('2026-03-10 06:00Z', 'a.count', 1);
           INSERT INTO raw.source_b VALUES ('2026-03-10 05:00Z', 'b.count', 5),
                                           ('2026-03-10 06:00Z', 'b.count', 6);
           INSERT INTO metrics.metric (name, aggregation, source)
           VALUES ('a.count', 'sum', 'a'), ('b.count', 'sum', 'b'),
                  ('b.daily_users', 'last', 'b');""",
    )
    assert run_values(store_url, {A: "a", B: "b"}).success
    # A value source `b` computed for the day itself (as GA4's daily report does).
    execute(
        store_url,
        "INSERT INTO metrics.daily_values (metric_id, day, value) "
        "SELECT id, %s, 42 FROM metrics.metric WHERE name = 'b.daily_users'",
        (DAY,),
    )
    before = source_values(store_url)
    assert [m for m, _, _ in before["daily"]] == ["a.count", "b.count", "b.daily_users"]

    # `b` is disabled (its settings or credentials are gone); `a` has a late row. The window is
    # recomputed from `a` alone: `a` moves, everything `b` landed stays as it was.
    execute(store_url, "UPDATE raw.source_a SET value = 2 WHERE hour = '2026-03-10 06:00Z'")
    assert run_values(store_url, {A: "a"}).success
    after = source_values(store_url)
    moved = {(m, str(t)): v for m, t, v in after["hourly"] if m == "a.count"}
    assert sorted(moved.values()) == [1.0, 2.0]
    assert [r for r in after["hourly"] if r[0] != "a.count"] == [
        r for r in before["hourly"] if r[0] != "a.count"
    ]
    assert [r for r in after["daily"] if r[0] != "a.count"] == [
        r for r in before["daily"] if r[0] != "a.count"
    ]
    assert [v for m, _, v in after["daily"] if m == "a.count"] == [3.0]

    # The operator's explicit decision recomputes the window from the enabled sources only.
    allowed = run_values(store_url, {A: "a"}, tags={ALLOW_FEWER_VALUES_TAG: "true"})
    assert allowed.success
    left = source_values(store_url)
    assert {m for m, _, _ in left["hourly"]} == {"a.count"}
    assert {m for m, _, _ in left["daily"]} == {"a.count"}
