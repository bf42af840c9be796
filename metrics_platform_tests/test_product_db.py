"""The product database source: exact historical row counts, through to hourly and daily values."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pytest

from metrics_platform.definitions import build_definitions
from metrics_platform.defs.metrics.assets import DAILY_VALUES_KEY, HOURLY_VALUES_KEY
from metrics_platform.defs.sources.product_db.assets import ROW_COUNTS_KEY
from metrics_platform.defs.sources.product_db.normalize import normalize_row_counts
from metrics_platform.lib.chunks import PIECE_ROWS_ENV
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.errors import ConfigurationError, SourceError
from metrics_platform_tests.conftest import (
    SOURCE_DAYS,
    SOURCE_HOURS,
    execute,
    materialize,
    platform_resources,
    primary_key,
    query,
)

NOW = datetime(2026, 3, 12, 9, 17, tzinfo=timezone.utc)
HOURLY = dg.AssetSelection.assets(ROW_COUNTS_KEY, HOURLY_VALUES_KEY)


def expected_counts(product_url: str, table: str, hours) -> dict:
    created = pd.Series([r[0] for r in query(product_url, f"SELECT created_at FROM {table}")])
    created = pd.to_datetime(created, utc=True)
    return {hour: int((created < hour + timedelta(hours=1)).sum()) for hour in hours}


def hourly_values(store_url: str) -> dict:
    rows = query(store_url, "SELECT metric, time, value FROM " + SOURCE_HOURS)
    return {(m, pd.Timestamp(t)): v for m, t, v in rows}


@pytest.mark.parametrize("piece_rows", [None, "1"], ids=["one piece", "pieces of a day"])
def test_a_range_of_hours_counts_the_rows_that_existed_at_each_hours_end(
    store_url, product_url, piece_rows, monkeypatch
):
    if piece_rows:
        monkeypatch.setenv(PIECE_ROWS_ENV, piece_rows)
    seed_product_database(product_url, now=NOW, days=3, users=800)
    resources = platform_resources(store_url, product_url)
    result = materialize(
        resources, selection=HOURLY, partition_range=("2026-03-10-00:00", "2026-03-11-23:00")
    )
    assert result.success

    hours = pd.date_range("2026-03-10", periods=48, freq="h", tz="UTC")
    values = hourly_values(store_url)
    for table in ("users", "profiles", "api_keys"):
        expected = expected_counts(product_url, table, hours)
        got = {hour: values[(f"objects.{table}.count", hour)] for hour in hours}
        assert got == expected
        assert expected[hours[-1]] > expected[hours[0]]  # the demo really grows
    assert len(values) == 3 * 48

    materialization = result.asset_materializations_for_node("raw__product_db_row_counts")[0]
    assert materialization.metadata["dagster/partition_row_count"].value == 3 * 48
    assert materialization.metadata["rows_written"].value == 3 * 48
    # Keyed by hour first: a window of hours is read and replaced through the key's index.
    assert primary_key(store_url, "raw.product_db_row_counts") == ["hour", "metric"]
    assert "preview" in materialization.metadata
    checks = {
        c.check_name: c.passed
        for c in result.get_asset_check_evaluations()
        if c.asset_key == ROW_COUNTS_KEY
    }
    assert checks == {"counts_non_negative": True, "every_table_counted": True}


def test_a_rerun_hour_with_late_rows_changes_and_names_the_later_hours_it_left_stale(
    store_url, product_url
):
    seed_product_database(product_url, now=NOW, days=3, users=300)
    resources = platform_resources(store_url, product_url)
    materialize(
        resources, selection=HOURLY, partition_range=("2026-03-11-00:00", "2026-03-11-05:00")
    )
    before = hourly_values(store_url)
    # A row that arrives late, created during hour 03:00.
    execute(
        product_url,
        "INSERT INTO users (email, created_at) VALUES ('late@x', '2026-03-11 03:30+00')",
    )
    result = materialize(resources, selection=HOURLY, partition_key="2026-03-11-03:00")
    after = hourly_values(store_url)
    changed = {k for k in after if after[k] != before[k]}
    assert changed == {("objects.users.count", pd.Timestamp("2026-03-11 03:00", tz="UTC"))}
    assert len(after) == len(before)
    # The count is cumulative: the run says that the later hours it did not read are stale
    # (`later_hours_follow` recomputes them; see test_late_data.py).
    metadata = result.asset_materializations_for_node("raw__product_db_row_counts")[0].metadata
    assert metadata["later_hours_stale_from"].value == "2026-03-11-04:00"
    assert metadata["later_hours_stale_to"].value == "2026-03-11-05:00"
    assert metadata["later_hours_stale"].value.startswith("2026-03-11T04:00Z..2026-03-11T06:00Z")


def test_a_range_in_pieces_names_the_later_hours_its_last_hour_left_stale(
    store_url, product_url, monkeypatch
):
    monkeypatch.setenv(PIECE_ROWS_ENV, "1")  # pieces of a day: 03-10, then 03-11 00:00..03:00
    seed_product_database(product_url, now=NOW, days=3, users=300)
    resources = platform_resources(store_url, product_url)
    materialize(
        resources, selection=HOURLY, partition_range=("2026-03-10-00:00", "2026-03-11-05:00")
    )
    execute(
        product_url,
        "INSERT INTO users (email, created_at) VALUES ('late@x', '2026-03-11 02:30+00')",
    )
    result = materialize(
        resources, selection=HOURLY, partition_range=("2026-03-10-00:00", "2026-03-11-03:00")
    )
    metadata = result.asset_materializations_for_node("raw__product_db_row_counts")[0].metadata
    assert metadata["later_hours_stale_from"].value == "2026-03-11-04:00"
    assert metadata["later_hours_stale_to"].value == "2026-03-11-05:00"
    assert metadata["rows_written"].value == 3 * 28


def test_a_table_without_creation_column_counts_only_the_latest_closed_hour(store_url, product_url):
    seed_product_database(product_url, now=NOW, days=2, users=100)
    now = datetime.now(timezone.utc)
    last_closed = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    resources = platform_resources(store_url, product_url, tables=[{"table": "users"}])
    first = last_closed - timedelta(hours=2)
    materialize(
        resources,
        selection=HOURLY,
        partition_range=(first.strftime("%Y-%m-%d-%H:%M"), last_closed.strftime("%Y-%m-%d-%H:%M")),
    )
    assert hourly_values(store_url) == {("objects.users.count", pd.Timestamp(last_closed)): 100.0}

    # An older hour's count, taken when that hour was the latest, is kept when the window is
    # read again: the source cannot count it now, and stored values are never dropped.
    execute(
        store_url,
        "INSERT INTO raw.product_db_row_counts (hour, metric, value) "
        "VALUES (%s, 'objects.users.count', 90)",
        (first,),
    )
    again = materialize(
        resources,
        selection=HOURLY,
        partition_range=(first.strftime("%Y-%m-%d-%H:%M"), last_closed.strftime("%Y-%m-%d-%H:%M")),
    )
    assert again.success
    assert hourly_values(store_url) == {
        ("objects.users.count", pd.Timestamp(first)): 90.0,
        ("objects.users.count", pd.Timestamp(last_closed)): 100.0,
    }


def test_a_missing_table_fails_the_asset_naming_source_and_table(store_url, product_url):
    resources = platform_resources(store_url, product_url, tables=[{"table": "no_such_table"}])
    result = materialize(
        resources, selection=HOURLY, partition_key="2026-03-11-03:00", raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert "source 'product_db'" in failure.message
    assert "no_such_table" in failure.message
    assert query(store_url, "SELECT count(*) FROM metrics.hourly_values") == [(0,)]


def test_a_bad_table_name_in_the_settings_fails_when_definitions_load():
    settings = {"product_db": {"tables": [{"table": "users; DROP TABLE users"}]}}
    with pytest.raises(
        Exception, match=r"product_db\.tables\[\]\.table: 'users; DROP TABLE users'"
    ):
        build_definitions(settings, env={})
    settings = {"product_db": {"tables": [{"table": "users", "created_at_column": "x') --"}]}}
    with pytest.raises(Exception, match=r"created_at_column"):
        build_definitions(settings, env={})


def test_daily_values_sum_counters_and_keep_the_last_gauge(store_url, product_url):
    execute(
        store_url,
        """
        INSERT INTO metrics.metric (name, aggregation, source) VALUES
            ('signups', 'sum', 'test'), ('users', 'last', 'test');
        INSERT INTO metrics.hourly_values (metric_id, hour, value)
        SELECT m.id, h, CASE WHEN m.name = 'signups' THEN 2 ELSE extract(hour FROM h) + 100 END
        FROM metrics.metric m,
             generate_series('2026-03-09 22:00+00'::timestamptz, '2026-03-11 01:00+00', '1 hour') h;
    """,
    )
    resources = platform_resources(store_url, product_url)
    materialize(
        resources, selection=dg.AssetSelection.assets(DAILY_VALUES_KEY), partition_key="2026-03-10"
    )
    rows = query(store_url, f"SELECT metric, date::text, value FROM {SOURCE_DAYS} ORDER BY 1")
    assert rows == [("signups", "2026-03-10", 48.0), ("users", "2026-03-10", 123.0)]


@pytest.mark.parametrize("bad", [-1, 1.5, "12", None, True])
def test_normalize_refuses_anything_but_a_row_count(bad):
    hour = datetime(2026, 3, 10, tzinfo=timezone.utc)
    with pytest.raises(SourceError, match="source 'product_db'"):
        normalize_row_counts({"objects.users.count": [(hour, bad)]})


def test_normalize_builds_the_long_metric_rows():
    hour = datetime(2026, 3, 10, tzinfo=timezone.utc)
    frame = normalize_row_counts(
        {"objects.users.count": [(hour, 3), (hour + timedelta(hours=1), 5)]}
    )
    assert list(frame.columns) == ["hour", "metric", "value"]
    assert frame["value"].tolist() == [3.0, 5.0]


def test_settings_reject_an_unknown_metric_name():
    with pytest.raises(Exception, match="not a valid metric name"):
        build_definitions(
            env={}, settings={"product_db": {"tables": [{"table": "users", "metric": "bad name!"}]}}
        )
    assert ConfigurationError  # the error type the settings raise
