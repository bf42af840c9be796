"""Business days in a configured time zone: daily partitions follow Europe/Paris calendar days,
23 and 25 hours long across DST, while hourly partitions stay in UTC."""

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from metrics_platform.lib.demo_data import DEMO_SCHEMA_SQL
from metrics_platform_tests.conftest import execute, query

REPO = Path(__file__).resolve().parent.parent
PARIS = ZoneInfo("Europe/Paris")

RUN = r"""
import sys
from metrics_platform.definitions import build_definitions
from metrics_platform_tests.conftest import RANGE_TAGS, TEST_SETTINGS
defs = build_definitions(TEST_SETTINGS)
hourly, daily = sys.argv[1:3], sys.argv[3:5]
for job, (start, end) in (("hourly_metrics", hourly), ("daily_metrics", daily)):
    result = defs.resolve_job_def(job).execute_in_process(
        tags=dict(zip(RANGE_TAGS, (start, end))),
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    assert result.success, job
"""


def run_with_zone(store_url, product_url, hourly, daily, **extra_env):
    env = {
        **os.environ,
        **extra_env,
        "METRICS_PLATFORM_BUSINESS_TIMEZONE": "Europe/Paris",
        "METRICS_PLATFORM_DATABASE_URL": store_url,
        "METRICS_PLATFORM_PRODUCT_DATABASE_URL": product_url,
        "PYTHONPATH": str(REPO),
    }
    out = subprocess.run(
        [sys.executable, "-c", RUN, *hourly, *daily],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.mark.parametrize("day, hours", [("2026-03-29", 23), ("2026-10-25", 25), ("2026-03-10", 24)])
def test_daily_sums_over_a_dst_day_equal_the_sums_by_hand(store_url, product_url, day, hours):
    execute(product_url, DEMO_SCHEMA_SQL)
    local_start = datetime.fromisoformat(day).replace(tzinfo=PARIS)
    local_end = (local_start + timedelta(days=1)).replace(tzinfo=PARIS)
    utc_start, utc_end = local_start.astimezone(timezone.utc), local_end.astimezone(timezone.utc)
    assert (utc_end - utc_start) == timedelta(hours=hours)
    # One event every 10 minutes from 3 hours before to 3 hours after the local day, duration
    # growing with time, so a wrong boundary changes both the count and the percentiles.
    execute(
        product_url,
        """
        INSERT INTO events (type, occurred_at, duration_ms)
        SELECT 'signup', t, extract(epoch FROM t - %(s)s + interval '3 hours') / 60
        FROM generate_series(%(s)s::timestamptz - interval '3 hours',
                             %(e)s::timestamptz + interval '3 hours', interval '10 minutes') t
    """,
        {"s": utc_start, "e": utc_end},
    )
    fmt = "%Y-%m-%d-%H:%M"
    run_with_zone(
        store_url,
        product_url,
        (
            (utc_start - timedelta(hours=3)).strftime(fmt),
            (utc_end + timedelta(hours=2)).strftime(fmt),
        ),
        (day, day),
    )

    events = pd.DataFrame(
        query(product_url, "SELECT occurred_at, duration_ms FROM events"), columns=["at", "ms"]
    )
    in_day = events[(events["at"] >= utc_start) & (events["at"] < utc_end)]
    daily = dict(
        query(
            store_url,
            "SELECT metric, value FROM metrics.daily_values_by_name WHERE date = %s",
            (day,),
        )
    )
    assert daily["events.signup.count"] == len(in_day) == hours * 6
    assert daily["events.signup.duration.p50"] == pytest.approx(in_day["ms"].median())
    assert query(store_url, "SELECT DISTINCT date::text FROM metrics.daily_values_by_name") == [
        (day,)
    ]
    # The hours stay UTC hours: the day's counts are the sum of exactly its local hours.
    hourly = query(
        store_url,
        "SELECT sum(value) FROM metrics.hourly_values_by_name WHERE "
        "metric = 'events.signup.count' AND time >= %s AND time < %s",
        (utc_start, utc_end),
    )
    assert hourly[0][0] == daily["events.signup.count"]


def test_an_unknown_time_zone_fails_when_the_definitions_load():
    env = {**os.environ, "METRICS_PLATFORM_BUSINESS_TIMEZONE": "Mars/Olympus"}
    out = subprocess.run(
        [sys.executable, "-c", "import metrics_platform.definitions"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0
    assert (
        "METRICS_PLATFORM_BUSINESS_TIMEZONE: 'Mars/Olympus' is not an IANA time zone" in out.stderr
    )


def test_a_range_of_days_across_dst_rolls_up_in_pieces_of_local_days(store_url, product_url):
    """Ten Paris days around the spring change, one range in pieces of a local day: each day's
    count is its own local hours' events, the 23-hour day included."""
    execute(product_url, DEMO_SCHEMA_SQL)
    first, last = "2026-03-24", "2026-04-02"
    local_start = datetime.fromisoformat(first).replace(tzinfo=PARIS)
    local_end = datetime.fromisoformat("2026-04-03").replace(tzinfo=PARIS)
    utc_start, utc_end = local_start.astimezone(timezone.utc), local_end.astimezone(timezone.utc)
    execute(
        product_url,
        "INSERT INTO events (type, occurred_at, duration_ms) SELECT 'signup', t, 1 "
        "FROM generate_series(%(s)s::timestamptz, %(e)s::timestamptz - interval '1 minute', "
        "interval '10 minutes') t",
        {"s": utc_start, "e": utc_end},
    )
    fmt = "%Y-%m-%d-%H:%M"
    run_with_zone(
        store_url,
        product_url,
        # Hourly partition keys are local hours too.
        (local_start.strftime(fmt), (local_end - timedelta(hours=1)).strftime(fmt)),
        (first, last),
        METRICS_PLATFORM_PIECE_ROWS="1",
    )
    daily = dict(
        query(
            store_url,
            "SELECT date::text, value FROM metrics.daily_values_by_name "
            "WHERE metric = 'events.signup.count'",
        )
    )
    days = pd.date_range(first, last, freq="D").strftime("%Y-%m-%d")
    expected = {day: 6 * (23 if day == "2026-03-29" else 24) for day in days}
    assert daily == expected
    complete = dict(
        query(
            store_url,
            "SELECT date::text, value FROM metrics.daily_values_by_name "
            "WHERE metric = 'platform.day_complete'",
        )
    )
    assert set(complete) == set(days)
