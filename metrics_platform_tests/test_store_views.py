"""The store's v2 views: every time-like column says its zone, and every hour has its business
day (the day of `daily_values`), in the business time zone `metrics-platform migrate` records."""

import subprocess

from metrics_platform_tests.conftest import execute, query
from metrics_platform_tests.processes import CLI, REPO


def migrate_with_zone(store_url: str, zone: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "METRICS_PLATFORM_DATABASE_URL": store_url,
        "METRICS_PLATFORM_BUSINESS_TIMEZONE": zone,
        "DAGSTER_HOME": str(REPO),
    }
    return subprocess.run(
        [*CLI, "migrate"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_hourly_values_carry_their_utc_and_business_days(store_url):
    result = migrate_with_zone(store_url, "Europe/Paris")
    assert result.returncode == 0, result.stderr
    assert "business time zone of the views: Europe/Paris" in result.stdout
    execute(
        store_url,
        "INSERT INTO metrics.metric (name, aggregation, source) VALUES ('x.count', 'sum', 't')",
    )
    execute(
        store_url,
        """INSERT INTO metrics.hourly_values (metric_id, hour, value)
           SELECT id, h, 1 FROM metrics.metric,
                  (VALUES ('2026-10-24 21:00+00'::timestamptz), ('2026-10-24 22:00+00'),
                          ('2026-10-25 00:00+00'), ('2026-10-25 01:00+00')) AS t(h)""",
    )
    execute(
        store_url,
        "INSERT INTO metrics.daily_values (metric_id, day, value) "
        "SELECT id, '2026-10-25', 24 FROM metrics.metric",
    )
    rows = query(
        store_url,
        """SELECT to_char(time_utc AT TIME ZONE 'UTC', 'HH24:MI'), date_utc::text, hour_utc,
                  business_date::text, business_hour, business_timezone
           FROM metrics.hourly_values_by_name_v2 ORDER BY time_utc""",
    )
    assert rows == [
        ("21:00", "2026-10-24", 21, "2026-10-24", 23, "Europe/Paris"),
        ("22:00", "2026-10-24", 22, "2026-10-25", 0, "Europe/Paris"),
        # The autumn change: 02:00 in Paris twice, two UTC hours.
        ("00:00", "2026-10-25", 0, "2026-10-25", 2, "Europe/Paris"),
        ("01:00", "2026-10-25", 1, "2026-10-25", 2, "Europe/Paris"),
    ]
    days = query(
        store_url,
        """SELECT business_date::text, to_char(start_utc AT TIME ZONE 'UTC', 'MM-DD HH24:MI'),
                  to_char(end_utc AT TIME ZONE 'UTC', 'MM-DD HH24:MI'), value
           FROM metrics.daily_values_by_name_v2""",
    )
    assert days == [("2026-10-25", "10-24 22:00", "10-25 23:00", 24.0)]  # a 25-hour day
    # The first views keep their columns (the dashboards read them).
    assert query(
        store_url, "SELECT date::text, hour FROM metrics.hourly_values_by_name ORDER BY time"
    )[1] == ("2026-10-24", 22)


def test_every_time_like_column_of_the_views_says_its_zone(store_url):
    assert migrate_with_zone(store_url, "UTC").returncode == 0
    rows = query(
        store_url,
        """SELECT c.table_name, c.column_name,
                  col_description(format('metrics.%I', c.table_name)::regclass, c.ordinal_position)
           FROM information_schema.columns c
           WHERE c.table_schema = 'metrics' AND c.table_name LIKE '%_by_name%'
             AND c.data_type IN ('date', 'timestamp with time zone', 'integer')
             AND c.column_name <> 'value'""",
    )
    assert len(rows) >= 11
    for table, column, comment in rows:
        said = f"{column} {comment or ''}"
        assert any(zone in said for zone in ("utc", "UTC", "business", "timestamptz")), (
            table,
            column,
            comment,
        )
