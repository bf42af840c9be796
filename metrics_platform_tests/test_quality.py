"""Quality checks per partition: freshness of the latest closed hour, completeness, bounds."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pytest

from metrics_platform.definitions import build_definitions, freshness_delay
from metrics_platform.defs.metrics.assets import (
    COMPLETE,
    DAILY_VALUES_KEY,
    DAY_COMPLETE_CHECK,
    HOURLY_VALUES_KEY,
    completeness,
)
from metrics_platform.defs.sources.crawlers.assets import STATUS_KEY as CRAWLER_KEY
from metrics_platform.defs.sources.events.assets import HOURLY_KEY as EVENTS_KEY
from metrics_platform.defs.sources.product_db.assets import ROW_COUNTS_KEY
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform_tests.conftest import (
    TEST_SETTINGS,
    execute,
    materialize,
    platform_resources,
    query,
)


def freshness(defs, instance):
    result = defs.resolve_job_def("freshness_checks").execute_in_process(instance=instance)
    return result.get_asset_check_evaluations()[0]


def test_freshness_fails_until_the_latest_closed_hour_lands(store_url, monkeypatch):
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    defs = build_definitions(
        {**TEST_SETTINGS, "quality": {"freshness_delay_minutes": 0}},
        env={PRODUCT_DATABASE_URL_ENV: "x"},
    )
    with dg.instance_for_test() as instance:
        assert not freshness(defs, instance).passed  # nothing has landed
        latest_closed = datetime.now(timezone.utc).replace(
            minute=0, second=0, microsecond=0
        ) - timedelta(hours=1)
        execute(
            store_url,
            "INSERT INTO metrics.metric (name, aggregation, source) VALUES ('m', 'sum', 't')",
        )
        execute(
            store_url,
            "INSERT INTO metrics.hourly_values SELECT id, %s, 1 FROM metrics.metric",
            (latest_closed - timedelta(hours=3),),
        )
        stale = freshness(defs, instance)
        assert not stale.passed
        assert stale.metadata["required_hour"].value == latest_closed.isoformat()
        execute(
            store_url,
            "INSERT INTO metrics.hourly_values SELECT id, %s, 1 FROM metrics.metric",
            (latest_closed,),
        )
        assert freshness(defs, instance).passed


def test_completeness_names_the_missing_metrics():
    hours = pd.date_range("2026-03-10", periods=2, freq="h", tz="UTC")
    named = pd.DataFrame(
        {
            "hour": [hours[0], hours[1], hours[0]],
            "metric": ["a", "a", "b"],
            "value": [1.0, 2.0, 3.0],
        }
    )
    start, end = hours[0].to_pydatetime(), (hours[1] + pd.Timedelta(hours=1)).to_pydatetime()
    assert completeness(named, ["a", "b", "c"], start, end) == (False, ["b", "c"])
    assert completeness(named, ["a"], start, end) == (True, [])
    by_id = named.assign(metric_id=named["metric"].map({"a": 1, "b": 2, "x": 9})).drop(
        columns="metric"
    )
    names = {1: "a", 2: "b"}
    assert completeness(by_id, ["a", "b", "c"], start, end, names) == (False, ["b", "c"])


def test_a_bad_freshness_delay_is_refused_with_its_key():
    with pytest.raises(ConfigurationError, match="quality.freshness_delay_minutes"):
        freshness_delay({"freshness_delay_minutes": "soon"})


def test_an_hour_a_source_did_not_land_is_incomplete_and_so_is_its_day(store_url, product_url):
    """Completeness sees every enabled source, whatever its metric names look like: an hour
    that one of them landed nothing for fails the check, is stored as incomplete, and the day
    rolled up from it is flagged too (in the check and in the store)."""
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=3, users=200
    )
    resources = platform_resources(store_url, product_url)
    sources = [ROW_COUNTS_KEY, CRAWLER_KEY, EVENTS_KEY]
    everything = dg.AssetSelection.assets(*sources, HOURLY_VALUES_KEY)
    # Every source for the day before and for 10 March but its last hour; the events source
    # never runs for 10 March 23:00.
    assert materialize(
        resources, selection=everything, partition_range=("2026-03-09-00:00", "2026-03-10-22:00")
    ).success
    hourly = materialize(
        resources,
        selection=dg.AssetSelection.assets(ROW_COUNTS_KEY, CRAWLER_KEY, HOURLY_VALUES_KEY),
        partition_key="2026-03-10-23:00",
    )
    [check] = [c for c in hourly.get_asset_check_evaluations() if c.check_name == COMPLETE]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["sources_missing"].value == "2026-03-10T23:00Z: events"
    assert check.metadata["incomplete_hours"].value == 1

    flags = dict(
        query(
            store_url,
            "SELECT time, value FROM metrics.hourly_values_by_name "
            "WHERE metric = 'platform.hour_complete'",
        )
    )
    assert len(flags) == 48
    assert [t for t, v in flags.items() if v == 0] == [
        datetime(2026, 3, 10, 23, tzinfo=timezone.utc)
    ]
    missing = query(
        store_url,
        "SELECT value FROM metrics.hourly_values_by_name "
        "WHERE metric = 'platform.sources_missing' AND time = '2026-03-10 23:00+00'",
    )
    assert missing == [(1.0,)]

    daily = materialize(
        resources,
        selection=dg.AssetSelection.assets(DAILY_VALUES_KEY),
        partition_range=("2026-03-09", "2026-03-10"),
    )
    [day_check] = [
        c for c in daily.get_asset_check_evaluations() if c.check_name == DAY_COMPLETE_CHECK
    ]
    assert not day_check.passed
    assert day_check.metadata["days_incomplete"].value == "2026-03-10: 23 of 24 hours complete"
    days = dict(
        query(
            store_url,
            "SELECT date::text, value FROM metrics.daily_values_by_name "
            "WHERE metric = 'platform.day_complete'",
        )
    )
    assert days == {"2026-03-09": 1.0, "2026-03-10": 0.0}
    complete_hours = dict(
        query(
            store_url,
            "SELECT date::text, value FROM metrics.daily_values_by_name "
            "WHERE metric = 'platform.hour_complete'",
        )
    )
    assert complete_hours == {"2026-03-09": 24.0, "2026-03-10": 23.0}
