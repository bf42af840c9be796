"""Schedules and automation conditions: the closed hour is scheduled, a failed source does not
hold the others back, a day rolls up once its 24 hours are in and re-rolls when one changes."""

from datetime import datetime, timezone

import dagster as dg
import pytest

from metrics_platform.definitions import build_definitions
from metrics_platform.defs.automation.schedules import (
    closed_hour,
    lag_minutes,
    revisit_hours,
    revisited_hours,
)
from metrics_platform.defs.metrics.assets import DAILY_VALUES_KEY, HOURLY_VALUES_KEY
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform_tests.conftest import RANGE_TAGS, TEST_SETTINGS, execute, query

SETTINGS = {
    **TEST_SETTINGS,
    "product_db": {
        "tables": [
            {"table": "users", "created_at_column": "created_at"},
            {"table": "profiles", "created_at_column": "created_at"},
        ]
    },
    "schedule": {"lag_minutes": {"default": 5, "events": 150}},
}
ENV = {PRODUCT_DATABASE_URL_ENV: "set", DATABASE_URL_ENV: "set"}


@pytest.mark.parametrize(
    "tick, lag, hour",
    [
        ("2026-03-10T10:05:00", 5, "2026-03-10-09:00"),
        ("2026-03-10T10:59:00", 5, "2026-03-10-09:00"),
        ("2026-03-10T00:05:00", 5, "2026-03-09-23:00"),
        ("2026-03-10T12:30:00", 150, "2026-03-10-09:00"),
    ],
)
def test_the_schedule_asks_for_the_hour_that_closed_lag_minutes_earlier(tick, lag, hour):
    assert closed_hour(datetime.fromisoformat(tick).replace(tzinfo=timezone.utc), lag) == hour


def test_each_enabled_source_has_a_running_schedule_with_its_lag():
    defs = build_definitions(SETTINGS, ENV)
    schedules = {s.name: s for s in defs.schedules}
    assert set(schedules) == {
        "product_db_hourly_schedule",
        "crawlers_hourly_schedule",
        "events_hourly_schedule",
        "freshness_check_schedule",
    }
    events = schedules["events_hourly_schedule"]
    assert events.cron_schedule == "30 * * * *"
    assert events.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 3, 10, 12, 30, tzinfo=timezone.utc),
        )
        request = events(context)
    assert request.partition_key == request.run_key == "2026-03-10-09:00"


def test_a_bad_lag_is_refused_with_its_key():
    with pytest.raises(ConfigurationError, match=r"schedule\.lag_minutes\.ga4"):
        lag_minutes({"lag_minutes": {"ga4": -5}}, "ga4")


@pytest.mark.parametrize(
    "tick, lag, hours, expected",
    [
        ("2026-03-11T03:05:00", 5, 48, ("2026-03-09-03:00", "2026-03-11-02:00")),
        ("2026-03-11T03:30:00", 90, 2, ("2026-03-11-00:00", "2026-03-11-01:00")),
        ("2025-01-01T03:05:00", 5, 48, ("2025-01-01-00:00", "2025-01-01-02:00")),  # history start
    ],
)
def test_a_revisit_rereads_the_hours_that_closed_before_it(tick, lag, hours, expected):
    tick = datetime.fromisoformat(tick).replace(tzinfo=timezone.utc)
    assert revisited_hours(tick, lag, hours) == expected


def test_ga4_is_revisited_daily_over_two_days_unless_set_otherwise():
    assert revisit_hours({}, "ga4") == 48
    assert revisit_hours({}, "events") == 0
    assert revisit_hours({"revisit_hours": {"default": 6}}, "events") == 6
    assert revisit_hours({"revisit_hours": {"ga4": 0}}, "ga4") == 0
    with pytest.raises(ConfigurationError, match=r"schedule\.revisit_hours\.ga4"):
        revisit_hours({"revisit_hours": {"ga4": "48"}}, "ga4")
    with pytest.raises(ConfigurationError, match=r"schedule\.revisit_hour: unknown setting"):
        build_definitions({**SETTINGS, "schedule": {"revisit_hour": {"ga4": 48}}}, ENV)


def test_a_revisit_schedule_requests_one_range_run_of_its_source():
    settings = {**SETTINGS, "schedule": {"revisit_hours": {"events": 24}}}
    schedules = {s.name: s for s in build_definitions(settings, ENV).schedules}
    assert "product_db_revisit_schedule" not in schedules
    revisit = schedules["events_revisit_schedule"]
    assert revisit.cron_schedule == "5 3 * * *"
    assert revisit.job_name == schedules["events_hourly_schedule"].job_name
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 3, 11, 3, 5, tzinfo=timezone.utc),
        )
        request = revisit(context)
    assert request.partition_key is None
    assert [request.tags[tag] for tag in RANGE_TAGS] == ["2026-03-10-03:00", "2026-03-11-02:00"]
    assert request.run_key == "revisit 2026-03-10-03:00...2026-03-11-02:00"


def requested(defs, instance, cursor):
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    return result, {
        key: result.get_requested_partitions(key) for key in (HOURLY_VALUES_KEY, DAILY_VALUES_KEY)
    }


def metrics_at(store_url, hour):
    rows = query(
        store_url,
        "SELECT DISTINCT split_part(metric, '.', 1) FROM "
        "metrics.hourly_values_by_name WHERE time = %s AND metric NOT LIKE 'platform.%%'",
        (hour,),
    )
    return {r[0] for r in rows}


def test_a_failed_source_does_not_hold_back_the_others(store_url, product_url, monkeypatch):
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    monkeypatch.setenv(PRODUCT_DATABASE_URL_ENV, product_url)
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=3, users=200
    )
    execute(product_url, "ALTER TABLE profiles RENAME TO profiles_gone")
    defs = build_definitions(SETTINGS)
    hour = "2026-03-10-05:00"
    with dg.instance_for_test() as instance:
        result, _ = requested(defs, instance, None)
        run = defs.resolve_job_def("hourly_metrics").execute_in_process(
            instance=instance, partition_key=hour, raise_on_error=False
        )
        assert not run.success  # product_db failed, so hourly values were skipped in that run
        assert metrics_at(store_url, "2026-03-10 05:00+00") == set()

        result, asked = requested(defs, instance, result.cursor)
        assert asked[HOURLY_VALUES_KEY] == {hour}
        partial = defs.resolve_job_def("hourly_metrics").execute_in_process(
            instance=instance, partition_key=hour, asset_selection=[HOURLY_VALUES_KEY]
        )
        assert metrics_at(store_url, "2026-03-10 05:00+00") == {"spider", "events"}
        # ... and the hour is flagged incomplete, naming what is missing.
        checks = {c.check_name: c for c in partial.get_asset_check_evaluations()}
        assert not checks["every_expected_metric_present"].passed
        assert (
            checks["every_expected_metric_present"].metadata["incomplete"].value
            == "objects.profiles.count, objects.users.count"
        )
        assert query(
            store_url,
            "SELECT count(*) FROM metrics.hourly_values_by_name "
            "WHERE metric = 'objects.profiles.count'",
        ) == [(0,)]

        # The source comes back: its re-run lands, and the hour is recomputed with it.
        result, asked = requested(defs, instance, result.cursor)
        assert asked[HOURLY_VALUES_KEY] == set()
        execute(product_url, "ALTER TABLE profiles_gone RENAME TO profiles")
        defs.resolve_job_def("product_db_hourly").execute_in_process(
            instance=instance, partition_key=hour
        )
        result, asked = requested(defs, instance, result.cursor)
        assert asked[HOURLY_VALUES_KEY] == {hour}
        defs.resolve_job_def("hourly_metrics").execute_in_process(
            instance=instance, partition_key=hour, asset_selection=[HOURLY_VALUES_KEY]
        )
        assert query(
            store_url,
            "SELECT count(*) FROM metrics.hourly_values_by_name "
            "WHERE metric = 'objects.profiles.count'",
        ) == [(1,)]


def test_a_day_rolls_up_once_complete_and_re_rolls_when_an_hour_changes(
    store_url, product_url, monkeypatch
):
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    monkeypatch.setenv(PRODUCT_DATABASE_URL_ENV, product_url)
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=3, users=200
    )
    defs = build_definitions(SETTINGS)
    hourly_job = defs.resolve_job_def("hourly_metrics")
    daily_job = defs.resolve_job_def("daily_metrics")
    with dg.instance_for_test() as instance:
        result, _ = requested(defs, instance, None)
        hourly_job.execute_in_process(
            instance=instance, tags=dict(zip(RANGE_TAGS, ("2026-03-10-00:00", "2026-03-10-22:00")))
        )
        result, asked = requested(defs, instance, result.cursor)
        assert "2026-03-10" not in asked[DAILY_VALUES_KEY]  # 23 of 24 hours

        hourly_job.execute_in_process(instance=instance, partition_key="2026-03-10-23:00")
        result, asked = requested(defs, instance, result.cursor)
        assert asked[DAILY_VALUES_KEY] == {"2026-03-10"}
        daily_job.execute_in_process(instance=instance, partition_key="2026-03-10")
        before = query(
            store_url,
            "SELECT value FROM metrics.daily_values_by_name WHERE metric = 'events.signup.count'",
        )

        # A late event for 14:00, then that hour is re-landed: the day is re-rolled.
        execute(
            product_url,
            "INSERT INTO events (type, occurred_at, duration_ms) "
            "VALUES ('signup', '2026-03-10 14:20+00', 10)",
        )
        result, asked = requested(defs, instance, result.cursor)
        assert asked[DAILY_VALUES_KEY] == set()
        hourly_job.execute_in_process(instance=instance, partition_key="2026-03-10-14:00")
        result, asked = requested(defs, instance, result.cursor)
        assert asked[DAILY_VALUES_KEY] == {"2026-03-10"}
        daily_job.execute_in_process(instance=instance, partition_key="2026-03-10")
        after = query(
            store_url,
            "SELECT value FROM metrics.daily_values_by_name WHERE metric = 'events.signup.count'",
        )
        assert after[0][0] == before[0][0] + 1


def test_the_automation_does_not_redo_what_the_command_line_just_did(
    store_url, product_url, monkeypatch
):
    """`metrics-platform materialize` runs sources, then hourly values, then days: separate
    runs, yet the automation treats them as one and requests nothing they already computed;
    a source landing from anywhere else still gets its hour recomputed."""
    from metrics_platform import materialize as runs

    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    monkeypatch.setenv(PRODUCT_DATABASE_URL_ENV, product_url)
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=3, users=200
    )
    defs = build_definitions(SETTINGS)
    with dg.instance_for_test() as instance:
        result, _ = requested(defs, instance, None)
        steps = runs.plan(defs, "key:raw/* or key:metrics/*", "2026-03-10..2026-03-10")
        assert [step.name for step in steps] == [
            "hourly sources",
            "hourly values",
            "daily sources",
            "daily values",
        ]
        invocation = runs.new_invocation()
        for step in steps:
            assert runs.run_step(defs, step, instance, invocation=invocation).success
        for _ in range(2):
            result, asked = requested(defs, instance, result.cursor)
            assert asked == {HOURLY_VALUES_KEY: set(), DAILY_VALUES_KEY: set()}
            assert not result.get_requested_partitions(dg.AssetKey(["metrics", "hourly_kpis"]))

        # A source re-landing one hour outside the command (its schedule's job) counts.
        defs.resolve_job_def("product_db_hourly").execute_in_process(
            instance=instance, partition_key="2026-03-10-05:00"
        )
        result, asked = requested(defs, instance, result.cursor)
        assert asked[HOURLY_VALUES_KEY] == {"2026-03-10-05:00"}
