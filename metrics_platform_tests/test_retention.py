"""Retention of sign-up cohorts from a generated history in a real product database: D1 / D7 /
D30 equal a direct computation from the users and their activity, are stored only once final,
and converge when late activity arrives and the days whose cohorts are not final are re-read
(their automation condition, once a day)."""

from __future__ import annotations

import shutil
from collections import defaultdict
from datetime import datetime, time, timedelta, timezone

import dagster as dg
import pytest

from metrics_platform.definitions import build_definitions
from metrics_platform.defs.partitions import daily_partitions
from metrics_platform.defs.sources.retention.assets import COHORTS_KEY
from metrics_platform.defs.sources.retention.normalize import normalize_daily
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.errors import ConfigurationError, SourceError
from metrics_platform.lib.event_log import EVENT_BATCH_SIZE_ENV
from metrics_platform_tests.conftest import RANGE_TAGS, execute, new_database, new_store, query
from metrics_platform_tests.processes import instance_home

UTC = timezone.utc
SETTINGS = {
    "product_db": {"tables": [{"table": "users", "created_at_column": "created_at"}]},
    "retention": {"activity_table": "user_activity", "days": [1, 7, 30]},
}


def direct_retention(product_url: str, today) -> dict[tuple, float]:
    """{(cohort day, n): share} straight from the tables, for every n whose day has closed."""
    cohort = defaultdict(set)
    for user, created in query(product_url, "SELECT id, created_at FROM users"):
        cohort[created.astimezone(UTC).date()].add(user)
    active = defaultdict(set)
    for user, at in query(product_url, "SELECT user_id, occurred_at FROM user_activity"):
        active[at.astimezone(UTC).date()].add(user)
    return {
        (day, n): len(users & active[day + timedelta(days=n)]) / len(users)
        for day, users in cohort.items()
        for n in (1, 7, 30)
        if day + timedelta(days=n) < today
    }


def stored_retention(store_url: str) -> dict[tuple, float]:
    rows = query(
        store_url,
        "SELECT date, metric, value FROM metrics.daily_values_by_name "
        "WHERE metric IN ('retention.d1', 'retention.d7', 'retention.d30')",
    )
    return {(day, int(metric.split(".d")[1])): value for day, metric, value in rows}


@pytest.fixture(scope="module")
def databases(postgres_server) -> tuple[str, str]:
    return new_store(postgres_server, "retention_store"), new_database(postgres_server, "product")


@pytest.fixture(scope="module")
def platform(databases):
    """45 days of sign-ups and activity, their hours and days materialized (once: the tests
    run in order, the last one adds late activity)."""
    store_url, product_url = databases
    now = datetime.now(UTC)
    seed_product_database(product_url, now=now, days=45, users=600)  # with their activity
    env = pytest.MonkeyPatch()
    env.setenv(DATABASE_URL_ENV, store_url)
    env.setenv(PRODUCT_DATABASE_URL_ENV, product_url)
    # The repository's instance (the store's Postgres, its batched event log): a range run's
    # bookkeeping of 1,080 hours costs seconds there, not the minutes of a test instance.
    env.setenv(EVENT_BATCH_SIZE_ENV, "1000")
    home = instance_home("metrics_platform_retention_")
    defs = build_definitions(SETTINGS, env={PRODUCT_DATABASE_URL_ENV: product_url})
    today = now.date()
    first = today - timedelta(days=44)
    hours = (f"{first:%Y-%m-%d}-00:00", f"{today - timedelta(days=1):%Y-%m-%d}-23:00")
    days = (f"{first:%Y-%m-%d}", f"{today - timedelta(days=1):%Y-%m-%d}")
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

    def run(job: str, window: tuple[str, str]):
        with dg.DagsterInstance.from_config(str(home)) as instance:
            result = defs.resolve_job_def(job).execute_in_process(
                instance=instance, run_config=quiet, tags=dict(zip(RANGE_TAGS, window))
            )
        assert result.success, job

    run("hourly_metrics", hours)
    run("daily_metrics", days)
    yield defs, run, days, today
    env.undo()
    shutil.rmtree(home, ignore_errors=True)


def test_retention_equals_a_direct_computation_of_the_cohorts(platform, databases):
    store_url, product_url = databases
    _, _, _, today = platform
    expected = direct_retention(product_url, today)
    stored = stored_retention(store_url)
    first = today - timedelta(days=44)
    expected = {k: v for k, v in expected.items() if first <= k[0] < today}
    assert stored.keys() == expected.keys()
    assert all(stored[k] == pytest.approx(expected[k]) for k in expected)
    # Final only: yesterday's cohort has no D1 yet, last week's no D30.
    assert (today - timedelta(days=1), 1) not in stored and (today - timedelta(days=2), 1) in stored
    assert (today - timedelta(days=8), 7) in stored and (
        today - timedelta(days=8),
        30,
    ) not in stored
    assert 0.3 < stored[(today - timedelta(days=10), 1)] < 0.7  # the demo's returns are realistic
    signups = query(
        store_url,
        "SELECT sum(value) FROM metrics.hourly_values_by_name WHERE metric = 'users.signed_up'",
    )[0][0]
    in_window = query(
        product_url,
        "SELECT count(*) FROM users WHERE created_at >= %s AND created_at < %s",
        (datetime.combine(first, time(), UTC), datetime.combine(today, time(), UTC)),
    )[0][0]
    assert signups == in_window


def test_late_activity_converges_when_the_cohorts_are_read_again(platform, databases):
    store_url, product_url = databases
    defs, run, days, today = platform
    cohort_day = today - timedelta(days=9)
    late_users = query(
        product_url,
        "SELECT id FROM users WHERE created_at >= %s AND created_at < %s ORDER BY id",
        (
            datetime.combine(cohort_day, time(), UTC),
            datetime.combine(cohort_day, time(), UTC) + timedelta(days=1),
        ),
    )
    # Activity that arrives late: every user of the cohort was active on its D7.
    execute(
        product_url,
        "INSERT INTO user_activity SELECT id, %s FROM users WHERE id = ANY(%s)",
        (
            datetime.combine(cohort_day + timedelta(days=7), time(12), UTC),
            [u for (u,) in late_users],
        ),
    )
    assert stored_retention(store_url)[(cohort_day, 7)] < 1

    # Once a day, after the business day closed, the days whose cohorts are not final yet are
    # requested again, in one go.
    with dg.instance_for_test() as instance:
        before = datetime.combine(today, time(0, 10), UTC)
        result = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            asset_selection=dg.AssetSelection.assets(COHORTS_KEY),
            evaluation_time=before,
        )
        result = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            asset_selection=dg.AssetSelection.assets(COHORTS_KEY),
            evaluation_time=before + timedelta(minutes=10),
            cursor=result.cursor,
        )
        requested = sorted(result.get_requested_partitions(COHORTS_KEY))
    assert requested[-1] == f"{today - timedelta(days=1):%Y-%m-%d}"
    assert f"{today - timedelta(days=31):%Y-%m-%d}" in requested and len(requested) <= 32
    assert all(daily_partitions.has_partition_key(key) for key in requested)

    run("daily_metrics", (requested[0], requested[-1]))
    assert stored_retention(store_url)[(cohort_day, 7)] == 1.0
    expected = direct_retention(product_url, today)
    stored = stored_retention(store_url)
    assert all(stored[k] == pytest.approx(expected[k]) for k in stored)


def test_cohorts_are_checked_and_settings_validated():
    with pytest.raises(SourceError, match="returned of"):
        normalize_daily([], [(datetime(2026, 3, 1).date(), 1, 2.0, 3.0)])
    frame = normalize_daily([], [(datetime(2026, 3, 1).date(), 7, 0.0, 0.0)])
    assert list(frame["metric"]) == ["retention.d7.users"]  # no share of an empty cohort
    for section, message in (
        ({"days": [0]}, "retention.days"),
        ({"days": [31]}, "retention.days"),
        ({"activity_table": "x; DROP TABLE users"}, "retention.activity_table"),
        ({"user_column": "bad column"}, "retention.user_column"),
        ({"typo": 1}, "retention.typo"),
    ):
        with pytest.raises(ConfigurationError, match=message):
            build_definitions({"retention": section}, env={PRODUCT_DATABASE_URL_ENV: "x"})
