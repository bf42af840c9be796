"""The crawler source against real tables: total, active and idle crawlers at each hour's end."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_platform.defs.metrics.assets import HOURLY_VALUES_KEY
from metrics_platform.defs.sources.crawlers.assets import STATUS_KEY
from metrics_platform.defs.sources.crawlers.normalize import normalize_status
from metrics_platform.defs.sources.crawlers.resource import CrawlerRegistry
from metrics_platform.lib.demo_data import DEMO_SCHEMA_SQL
from metrics_platform.lib.errors import SourceError
from metrics_platform_tests.conftest import execute, materialize, platform_resources, query

T0 = datetime(2026, 3, 10, tzinfo=timezone.utc)

# (crawler, created hours after T0) and (crawler, stage, minutes after T0).
CRAWLERS = [(1, 0), (2, 0), (3, 2)]
CHANGES = [
    (1, "crawl", 10),
    (1, None, 130),
    (1, "parse", 240),  # 240 = exactly the end of hour 03:00
    (2, "export", 59),
    (2, "", 61),  # empty stage means idle
    (3, "crawl", 150),
]


def hand_counts(hour_end: datetime) -> tuple[int, int]:
    alive = [c for c, created in CRAWLERS if T0 + timedelta(hours=created) < hour_end]
    active = 0
    for crawler in alive:
        before = [
            (m, stage)
            for c, stage, m in CHANGES
            if c == crawler and T0 + timedelta(minutes=m) < hour_end
        ]
        if before and max(before)[1]:
            active += 1
    return len(alive), active


@pytest.fixture
def crawler_db(product_url):
    execute(product_url, DEMO_SCHEMA_SQL)
    for crawler, created in CRAWLERS:
        execute(
            product_url,
            "INSERT INTO spiders (id, name, created_at) OVERRIDING SYSTEM VALUE "
            "VALUES (%s, %s, %s)",
            (crawler, f"s{crawler}", T0 + timedelta(hours=created)),
        )
    for crawler, stage, minutes in CHANGES:
        execute(
            product_url,
            "INSERT INTO spider_status VALUES (%s, %s, %s)",
            (crawler, stage, T0 + timedelta(minutes=minutes)),
        )
    return product_url


def test_counts_at_every_hour_end_follow_the_status_history(store_url, crawler_db):
    resources = platform_resources(store_url, crawler_db)
    result = materialize(
        resources,
        selection=dg.AssetSelection.assets(STATUS_KEY, HOURLY_VALUES_KEY),
        partition_range=("2026-03-10-00:00", "2026-03-10-05:00"),
    )
    assert result.success
    rows = query(store_url, "SELECT metric, time, value FROM metrics.hourly_values_by_name")
    got = {(m, pd.Timestamp(t)): v for m, t, v in rows}
    for h in range(6):
        hour = pd.Timestamp(T0 + timedelta(hours=h))
        total, active = hand_counts(T0 + timedelta(hours=h + 1))
        assert got[("spider.total", hour)] == total
        assert got[("spider.active", hour)] == active
        assert got[("spider.idle", hour)] == total - active
    # Spot checks of the semantics: a change at 04:00 sharp counts for hour 04:00, not 03:00.
    assert got[("spider.active", pd.Timestamp("2026-03-10 03:00", tz="UTC"))] == 1
    assert got[("spider.active", pd.Timestamp("2026-03-10 04:00", tz="UTC"))] == 2


def test_impossible_counts_are_refused():
    with pytest.raises(SourceError, match="source 'crawlers'.*3 active of 2"):
        normalize_status([(T0, 2, 3)])


def test_a_missing_status_table_fails_naming_the_source(store_url, product_url):
    execute(product_url, "CREATE TABLE spiders (id int, created_at timestamptz)")
    resources = platform_resources(store_url, product_url)
    result = materialize(
        resources,
        selection=dg.AssetSelection.assets(STATUS_KEY),
        partition_key="2026-03-10-00:00",
        raise_on_error=False,
    )
    assert not result.success
    message = result.get_step_failure_events()[0].event_specific_data.error.message
    assert "source 'crawlers'" in message and "spider_status" in message


# A crawler: (created, deleted or None, [(minutes, stage)]), minutes after T0; changes of one
# crawler at distinct minutes (two changes at the same instant have no order).
_crawler = st.tuples(
    st.integers(0, 600),
    st.none() | st.integers(0, 720),
    st.dictionaries(st.integers(0, 720), st.sampled_from([None, "", "crawl", "parse"]), max_size=8),
)


def _oracle(crawlers, hour_end: datetime) -> tuple[int, int]:
    total = active = 0
    for created, deleted, changes in crawlers:
        if not (T0 + timedelta(minutes=created) < hour_end) or (
            deleted is not None and T0 + timedelta(minutes=deleted) < hour_end
        ):
            continue
        total += 1
        before = [m for m in changes if T0 + timedelta(minutes=m) < hour_end]
        active += bool(before and changes[max(before)])
    return total, active


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    crawlers=st.lists(_crawler, max_size=6),
    first_hour=st.integers(0, 12),
    hours=st.integers(1, 6),
)
def test_hourly_counts_match_a_direct_reading_of_the_history(
    product_url, crawlers, first_hour, hours
):
    """Any history, any window: each hour's counts are what the history says at its end."""
    execute(product_url, "DROP TABLE IF EXISTS status, crawlers")
    execute(
        product_url,
        "CREATE TABLE crawlers (id int, created_at timestamptz, deleted_at timestamptz);"
        "CREATE TABLE status (crawler int, stage text, at timestamptz)",
    )
    for crawler, (created, deleted, changes) in enumerate(crawlers):
        execute(
            product_url,
            "INSERT INTO crawlers VALUES (%s, %s, %s)",
            (
                crawler,
                T0 + timedelta(minutes=created),
                None if deleted is None else T0 + timedelta(minutes=deleted),
            ),
        )
        for minutes, stage in changes.items():
            execute(
                product_url,
                "INSERT INTO status VALUES (%s, %s, %s)",
                (crawler, stage, T0 + timedelta(minutes=minutes)),
            )
    registry = CrawlerRegistry(
        url=product_url,
        crawlers_table="crawlers",
        deleted_at_column="deleted_at",
        status_table="status",
        status_crawler_column="crawler",
        changed_at_column="at",
    )
    start = T0 + timedelta(hours=first_hour)
    got = registry.status_counts(start, start + timedelta(hours=hours))
    assert [(hour, total, active) for hour, total, active in got] == [
        (start + timedelta(hours=h), *_oracle(crawlers, start + timedelta(hours=h + 1)))
        for h in range(hours)
    ]
