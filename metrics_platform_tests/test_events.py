"""The events source against real tables: hourly counts, hourly and daily latency percentiles."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from metrics_platform.defs.metrics.assets import DAILY_VALUES_KEY, HOURLY_VALUES_KEY
from metrics_platform.defs.sources.events.assets import DAILY_KEY, HOURLY_KEY
from metrics_platform.defs.sources.events.normalize import normalize_hourly
from metrics_platform.defs.sources.events.resource import EventLog
from metrics_platform.lib.chunks import PIECE_ROWS_ENV
from metrics_platform.lib.demo_data import DEMO_SCHEMA_SQL
from metrics_platform.lib.errors import SourceError
from metrics_platform_tests.conftest import execute, materialize, platform_resources, query

DAY = datetime(2026, 3, 10, tzinfo=timezone.utc)


@pytest.fixture
def events_db(product_url):
    """Two days of events of two types with skewed durations; some without a timing."""
    execute(product_url, DEMO_SCHEMA_SQL)
    rng = np.random.default_rng(7)
    rows = []
    for minute in range(0, 2 * 24 * 60, 7):
        at = DAY - timedelta(hours=12) + timedelta(minutes=minute)
        rows.append(("api call", at, float(rng.exponential(40)), bool(rng.random() < 0.1)))
        if minute % 3 == 0:
            rows.append(("signup", at, None if minute % 2 else float(rng.exponential(900)), False))
    execute(
        product_url,
        "INSERT INTO events (type, occurred_at, duration_ms, failed) "
        "SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::float8[], %s::bool[])",
        [list(col) for col in zip(*rows)],
    )
    frame = pd.DataFrame(rows, columns=["type", "at", "duration", "failed"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return product_url, frame


def values(store_url, view="hourly_values_by_name", time="time"):
    rows = query(store_url, f"SELECT metric, {time}, value FROM metrics.{view}")
    return {(m, pd.Timestamp(t)): v for m, t, v in rows}


def test_hourly_counts_and_percentiles_match_the_raw_events(store_url, events_db):
    product_url, raw = events_db
    resources = platform_resources(store_url, product_url)
    assert materialize(
        resources,
        selection=dg.AssetSelection.assets(HOURLY_KEY, HOURLY_VALUES_KEY),
        partition_range=("2026-03-10-00:00", "2026-03-10-23:00"),
    ).success
    got = values(store_url)
    for hour in pd.date_range(DAY, periods=24, freq="h"):
        in_hour = raw[(raw["at"] >= hour) & (raw["at"] < hour + pd.Timedelta(hours=1))]
        calls = in_hour[in_hour["type"] == "api call"]
        assert got[("events.api_call.count", hour)] == len(calls)
        assert got[("events.api_call.errors", hour)] == calls["failed"].sum()
        for p in (50, 90, 99):
            assert got[(f"events.api_call.duration.p{p}", hour)] == pytest.approx(
                np.percentile(calls["duration"], p)
            )
        timed = in_hour[(in_hour["type"] == "signup") & in_hour["duration"].notna()]
        if len(timed):
            assert got[("events.signup.duration.p50", hour)] == pytest.approx(
                np.median(timed["duration"])
            )


def test_daily_percentiles_come_from_the_days_raw_timings(store_url, events_db):
    product_url, raw = events_db
    resources = platform_resources(store_url, product_url)
    materialize(
        resources,
        selection=dg.AssetSelection.assets(HOURLY_KEY, HOURLY_VALUES_KEY),
        partition_range=("2026-03-10-00:00", "2026-03-10-23:00"),
    )
    assert materialize(
        resources,
        selection=dg.AssetSelection.assets(DAILY_KEY, DAILY_VALUES_KEY),
        partition_key="2026-03-10",
    ).success
    daily = values(store_url, "daily_values_by_name", "date")
    day = pd.Timestamp("2026-03-10")
    calls = raw[
        (raw["type"] == "api call") & (raw["at"] >= DAY) & (raw["at"] < DAY + timedelta(days=1))
    ]
    p99 = daily[("events.api_call.duration.p99", day)]
    assert p99 == pytest.approx(np.percentile(calls["duration"], 99))
    hourly = values(store_url)
    mean_of_hourly = np.mean(
        [v for (m, _), v in hourly.items() if m == "events.api_call.duration.p99"]
    )
    assert p99 != pytest.approx(mean_of_hourly)  # never the average of hourly percentiles
    assert daily[("events.api_call.count", day)] == len(calls)  # counters still sum


def test_event_types_that_collide_as_metric_names_are_refused():
    hour = DAY
    with pytest.raises(SourceError, match="both map to events.api_call"):
        normalize_hourly(
            [
                (hour, "api call", 1, None, None),
                (hour, "api-call", 1, None, None),
                (hour, "api_call", 1, None, None),
            ],
            [50],
        )


def test_an_event_without_a_type_is_refused():
    with pytest.raises(SourceError, match="source 'events': an event has no type"):
        normalize_hourly([(DAY, None, 3, None, None)], [50])


def test_an_hour_without_events_of_a_known_type_counts_zero_and_has_no_percentiles(
    store_url, product_url
):
    """Zero versus missing: in every hour the event log was read, each known type has a count
    (0 when none of its events happened) and an error count; percentiles of no events stay
    absent. A type is known once seen in the window or registered in the catalog before."""
    execute(product_url, DEMO_SCHEMA_SQL)
    execute(
        product_url,
        """INSERT INTO events (type, occurred_at, duration_ms, failed) VALUES
           ('export', '2026-03-10 01:10+00', 12, true),
           ('export', '2026-03-10 01:20+00', NULL, false),
           ('signup', '2026-03-09 05:00+00', 100, false)""",
    )
    resources = platform_resources(store_url, product_url)
    selection = dg.AssetSelection.assets(HOURLY_KEY, HOURLY_VALUES_KEY)
    # `signup` happened the day before: it is in the catalog from then on.
    assert materialize(resources, selection=selection, partition_key="2026-03-09-05:00").success
    assert materialize(
        resources, selection=selection, partition_range=("2026-03-10-00:00", "2026-03-10-03:00")
    ).success

    got = values(store_url)
    hours = pd.date_range("2026-03-10", periods=4, freq="h", tz="UTC")
    for hour in hours:
        busy = hour.hour == 1
        assert got[("events.export.count", hour)] == (2 if busy else 0)
        assert got[("events.export.errors", hour)] == (1 if busy else 0)
        assert got[("events.signup.count", hour)] == 0
        assert got[("events.signup.errors", hour)] == 0
        # One timing in hour 01:00 makes its percentiles; no timing, no percentile.
        assert (("events.export.duration.p50", hour) in got) == busy
        assert ("events.signup.duration.p50", hour) not in got
    assert got[("events.export.duration.p99", hours[1])] == 12.0


def _events_on(product_url, rows):
    execute(product_url, DEMO_SCHEMA_SQL)
    execute(
        product_url,
        "INSERT INTO events (type, occurred_at, duration_ms, failed) "
        "SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::float8[], %s::bool[])",
        [list(col) for col in zip(*rows)],
    )


@pytest.fixture
def pieces_of_a_day(monkeypatch):
    """Pieces of one day each (the smallest); the windows the event log is asked for."""
    monkeypatch.setenv(PIECE_ROWS_ENV, "1")
    asked = []
    stats = EventLog.stats

    def recorded(self, start, end, **kwargs):
        asked.append((start, end, kwargs["by"]))
        return stats(self, start, end, **kwargs)

    monkeypatch.setattr(EventLog, "stats", recorded)
    return asked


def test_a_window_longer_than_a_piece_is_made_in_pieces_with_the_same_values(
    store_url, product_url, pieces_of_a_day
):
    """A range of nine days is made a day at a time: every hour has the counts of its own
    events, and a type first seen in the last day counts 0 in every earlier hour."""
    first, last = DAY + timedelta(minutes=5), DAY + timedelta(days=8, hours=3, minutes=5)
    _events_on(
        product_url,
        [
            ("api call", first, 10.0, False),
            ("api call", first + timedelta(minutes=1), 30.0, True),
            ("api call", last, 20.0, False),
            ("export", last, 500.0, False),
        ],
    )
    resources = platform_resources(store_url, product_url)
    assert materialize(
        resources,
        selection=dg.AssetSelection.assets(HOURLY_KEY),
        partition_range=("2026-03-10-00:00", "2026-03-18-23:00"),
    ).success
    assert [(s, e) for s, e, by in pieces_of_a_day if by == "hour"] == [
        (DAY + timedelta(days=d), DAY + timedelta(days=d + 1)) for d in range(9)
    ]
    rows = query(store_url, "SELECT hour, metric, value FROM raw.events_hourly")
    got = {(pd.Timestamp(h), m): v for h, m, v in rows}
    hours = pd.date_range(DAY, periods=9 * 24, freq="h")
    for metric in ("events.api_call.count", "events.api_call.errors", "events.export.count"):
        assert {h for (h, m) in got if m == metric} == set(hours), metric
    assert got[(hours[0], "events.api_call.count")] == 2
    assert got[(hours[0], "events.api_call.errors")] == 1
    assert got[(hours[0], "events.api_call.duration.p50")] == pytest.approx(20.0)
    assert got[(hours[0], "events.export.count")] == 0  # known from the last day
    assert got[(hours[8 * 24 + 3], "events.export.count")] == 1
    assert got[(hours[8 * 24 + 3], "events.export.duration.p50")] == 500.0
    assert sum(v for (h, m), v in got.items() if m == "events.api_call.count") == 3
    assert len(rows) == len(set(got))


def test_event_types_that_collide_in_different_pieces_are_refused(
    store_url, product_url, pieces_of_a_day
):
    _events_on(
        product_url,
        [("api call", DAY, 1.0, False), ("api_call", DAY + timedelta(days=8), 1.0, False)],
    )
    result = materialize(
        platform_resources(store_url, product_url),
        selection=dg.AssetSelection.assets(HOURLY_KEY),
        partition_range=("2026-03-10-00:00", "2026-03-18-23:00"),
        raise_on_error=False,
    )
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error
    assert "both map to events.api_call" in str(error)


def test_a_piece_that_fails_fails_the_range_and_keeps_what_was_stored(
    store_url, product_url, pieces_of_a_day
):
    """Bad data in a later piece fails the whole range with the source, the range and the
    cause, and the pieces made before it are rolled back with it."""
    _events_on(product_url, [("export", DAY + timedelta(hours=2), 5.0, False)])
    resources = platform_resources(store_url, product_url)
    selection = dg.AssetSelection.assets(HOURLY_KEY)
    window = ("2026-03-10-00:00", "2026-03-18-23:00")
    first = materialize(resources, selection=selection, partition_range=window)
    before = query(store_url, "SELECT hour, metric, value FROM raw.events_hourly ORDER BY 1, 2")
    metadata = first.asset_materializations_for_node("raw__events_hourly")[-1].metadata
    # export: count and errors every hour, three percentiles in the hour of its one event
    assert metadata["rows_written"].value == len(before) == 2 * 9 * 24 + 3
    assert metadata["metrics"].value == 5

    execute(
        product_url,
        "INSERT INTO events (type, occurred_at, duration_ms, failed) VALUES "
        "('export', %s, 7.0, false), ('export', %s, -1.0, false)",
        [DAY + timedelta(hours=2, minutes=1), DAY + timedelta(days=5)],
    )
    result = materialize(
        resources, selection=selection, partition_range=window, raise_on_error=False
    )
    assert not result.success
    error = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "events" in error and "negative" in error
    assert "2026-03-10-00:00...2026-03-18-23:00" in error
    assert query(store_url, "SELECT hour, metric, value FROM raw.events_hourly ORDER BY 1, 2") == (
        before
    )


def test_daily_percentiles_of_a_range_in_pieces_are_those_of_one_piece(
    store_url, events_db, monkeypatch
):
    product_url, _ = events_db
    resources = platform_resources(store_url, product_url)
    materialize(
        resources,
        selection=dg.AssetSelection.assets(HOURLY_KEY),
        partition_range=("2026-03-09-12:00", "2026-03-11-11:00"),
    )
    days = ("2026-03-09", "2026-03-11")
    daily = dg.AssetSelection.assets(DAILY_KEY)
    table = "SELECT day, metric, value FROM raw.events_daily_timings ORDER BY 1, 2"
    assert materialize(resources, selection=daily, partition_range=days).success
    whole = query(store_url, table)
    execute(store_url, "TRUNCATE raw.events_daily_timings")

    monkeypatch.setenv(PIECE_ROWS_ENV, "1")  # a piece per day
    asked = []
    stats = EventLog.stats
    monkeypatch.setattr(
        EventLog, "stats", lambda self, s, e, **kw: asked.append((s, e)) or stats(self, s, e, **kw)
    )
    result = materialize(resources, selection=daily, partition_range=days)
    assert len(asked) == 3
    assert query(store_url, table) == whole and len(whole) > 3
    metadata = result.asset_materializations_for_node("raw__events_daily_timings")[-1].metadata
    assert metadata["rows_written"].value == len(whole)
