"""The crawler source against real tables: total, active and idle crawlers at each hour's end."""

import json
import random
import re
from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_platform.defs.metrics.assets import HOURLY_VALUES_KEY
from metrics_platform.defs.sources.crawlers import build_source
from metrics_platform.defs.sources.crawlers.assets import STATUS_KEY
from metrics_platform.defs.sources.crawlers.normalize import normalize_status
from metrics_platform.defs.sources.crawlers.resource import CrawlerRegistry
from metrics_platform.defs.sources.crawlers.snapshots import CrawlerSnapshots
from metrics_platform.lib.database import PRODUCT_DATABASE_URL_ENV, connect
from metrics_platform.lib.demo_data import DEMO_SCHEMA_SQL
from metrics_platform.lib.errors import ConfigurationError, SourceError
from metrics_platform.lib.settings import DEFAULT_CONFIG
from metrics_platform_tests.conftest import (
    SOURCE_HOURS,
    execute,
    materialize,
    platform_resources,
    query,
)
from metrics_platform_tests.job_runs import failure_message, run_job

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


# --- The snapshot model: each crawler reports a JSON list of its workers --------------------

SNAPSHOTS_SQL = """
CREATE TABLE spider_snapshots (
    spider_id  int NOT NULL,
    attributes jsonb,
    created_at timestamptz NOT NULL
)
"""


def snapshot_settings(**overrides) -> dict:
    return {
        "crawlers": {
            "model": "snapshots",
            "status_table": "spider_snapshots",
            "crawler_column": "spider_id",
            "workers_column": "attributes",
            "reported_at_column": "created_at",
            **overrides,
        }
    }


def snapshot_reader(url: str, **overrides) -> CrawlerSnapshots:
    section = {k: v for k, v in snapshot_settings()["crawlers"].items() if k != "model"}
    return CrawlerSnapshots(url=url, **{**section, **overrides})


def insert_snapshots(
    url: str,
    snapshots,
    table: str = "spider_snapshots",
    columns="spider_id, created_at, attributes",
) -> None:
    """(crawler, time, workers) rows; workers are Python lists of dicts (or anything JSON)."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s)",
                [(c, at, None if w is None else json.dumps(w)) for c, at, w in snapshots],
            )
    finally:
        conn.close()


def snapshot_oracle(snapshots, hour_end: datetime, max_age: timedelta, stage_key="stage"):
    """The seed's reduction, read directly: each crawler's latest snapshot strictly before the
    hour end, if it is at most `max_age` old; its workers, and those with a stage."""
    total = active = 0
    for crawler in {c for c, _, _ in snapshots}:
        before = [(at, w) for c, at, w in snapshots if c == crawler and at < hour_end]
        if not before:
            continue
        at, workers = max(before, key=lambda item: item[0])
        if at < hour_end - max_age:
            continue
        total += len(workers)
        active += sum(1 for w in workers if w.get(stage_key) not in (None, ""))
    return total, active


def stored(store_url: str) -> dict:
    rows = query(store_url, f"SELECT metric, time, value FROM {SOURCE_HOURS}")
    return {(m, pd.Timestamp(t)): v for m, t, v in rows}


def seed_like_history(seed: int, start: datetime, hours: int):
    """Snapshots as the seed's spiders write them: every few minutes, 0-4 workers each with or
    without a stage; some spiders stop reporting for a while, or for good."""
    rng = random.Random(seed)
    snapshots = []
    for spider in range(1, 9):
        at = start - timedelta(minutes=rng.randint(0, 90))
        stop = start + timedelta(hours=rng.randint(hours // 3, hours + 6))
        while at < start + timedelta(hours=hours):
            if not (stop <= at < stop + timedelta(hours=rng.choice([0, 2, 50]))):
                workers = [
                    {"pid": n, "stage": rng.choice([None, "crawl", "parse", ""])}
                    if rng.random() < 0.8
                    else {"pid": n}
                    for n in range(rng.randint(0, 4))
                ]
                snapshots.append((spider, at, workers))
            at += timedelta(minutes=rng.choice([5, 10, 15, 40]), seconds=rng.randint(0, 59))
    return snapshots


def test_the_snapshot_model_counts_workers_as_the_seed_does(store_url, product_url, monkeypatch):
    """On a realistic snapshot history, every hourly value equals the seed's definition: the
    workers of each spider's latest snapshot from the last 30 minutes."""
    execute(product_url, SNAPSHOTS_SQL)
    snapshots = seed_like_history(7, T0, 48)
    insert_snapshots(product_url, snapshots)
    result = run_job(
        snapshot_settings(),
        store_url,
        product_url,
        "2026-03-10-00:00",
        "2026-03-11-23:00",
        monkeypatch,
    )
    assert result.success
    got = stored(store_url)
    differ = 0
    for h in range(48):
        hour = pd.Timestamp(T0 + timedelta(hours=h))
        total, active = snapshot_oracle(
            snapshots, T0 + timedelta(hours=h + 1), timedelta(minutes=30)
        )
        expected = {"spider.total": total, "spider.active": active, "spider.idle": total - active}
        differ += sum(got.get((name, hour)) != value for name, value in expected.items())
    assert differ == 0
    catalog = query(
        store_url, "SELECT name, unit, propagation FROM metrics.metric WHERE name LIKE 'spider.%%'"
    )
    assert {(n, u, p) for n, u, p in catalog} == {
        (n, "workers", "own_hour") for n in ("spider.total", "spider.active", "spider.idle")
    }


def test_a_snapshot_exactly_at_an_hour_end_counts_for_the_next_hour(product_url):
    """As in the history model, the latest snapshot strictly before the hour end holds; one
    exactly `max_age_minutes` old still counts."""
    execute(product_url, SNAPSHOTS_SQL)
    worker = {"stage": "crawl"}
    insert_snapshots(
        product_url,
        [
            (1, T0 + timedelta(minutes=45), [worker]),
            (1, T0 + timedelta(hours=1), [worker, {}, {}]),  # 01:00 sharp: hour 01:00's
            (2, T0, [worker]),  # exactly 60 minutes before 01:00: counts there
            (3, T0 - timedelta(minutes=1), [worker]),  # 61 minutes before 01:00: too old
        ],
    )
    reader = snapshot_reader(product_url, max_age_minutes=60)
    got = reader.status_counts(T0, T0 + timedelta(hours=3))
    assert got == [
        (T0, 2, 2),
        (T0 + timedelta(hours=1), 3, 1),
        # Spider 1 stopped reporting at 01:00: at 03:00 its snapshot is too old.
        (T0 + timedelta(hours=2), 0, 0),
    ]


# A history: crawler -> {minute: workers}, minutes after T0 (distinct instants per crawler),
# many of them on an hour end; workers with a stage, an empty one, none, or no stage key.
_worker = st.sampled_from(
    [{"stage": "crawl"}, {"stage": "parse"}, {"stage": ""}, {"stage": None}, {}]
)
_minute = st.integers(0, 720) | st.integers(0, 12).map(lambda h: 60 * h)
_history = st.dictionaries(
    st.integers(1, 5),
    st.dictionaries(_minute, st.lists(_worker, max_size=4), max_size=10),
    max_size=5,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    history=_history,
    max_age=st.sampled_from([1, 30, 60, 61, 150]),
    first_hour=st.integers(0, 12),
    hours=st.integers(1, 6),
)
def test_snapshot_counts_match_a_direct_reading_of_any_history(
    product_url, history, max_age, first_hour, hours
):
    """Any snapshot history, any age, any window: each hour's counts are the seed's reduction
    at its end (spiders that stop reporting drop out, empty worker lists count 0)."""
    execute(product_url, "DROP TABLE IF EXISTS snaps")
    execute(product_url, "CREATE TABLE snaps (crawler int, workers json, at timestamptz)")
    snapshots = [
        (crawler, T0 + timedelta(minutes=m), workers)
        for crawler, reports in history.items()
        for m, workers in reports.items()
    ]
    insert_snapshots(product_url, snapshots, table="snaps", columns="crawler, at, workers")
    reader = snapshot_reader(
        product_url,
        status_table="snaps",
        crawler_column="crawler",
        workers_column="workers",
        reported_at_column="at",
        max_age_minutes=max_age,
    )
    start = T0 + timedelta(hours=first_hour)
    got = reader.status_counts(start, start + timedelta(hours=hours))
    assert got == [
        (
            start + timedelta(hours=h),
            *snapshot_oracle(snapshots, start + timedelta(hours=h + 1), timedelta(minutes=max_age)),
        )
        for h in range(hours)
    ]


def test_an_age_over_an_hour_makes_the_counts_cumulative():
    """A late snapshot changes every hour end within its age: beyond an hour, later hours too."""
    short = build_source(snapshot_settings()["crawlers"], {PRODUCT_DATABASE_URL_ENV: "x"})
    long = build_source(
        snapshot_settings(max_age_minutes=90)["crawlers"], {PRODUCT_DATABASE_URL_ENV: "x"}
    )
    history = build_source({"crawlers_table": "spiders"}, {PRODUCT_DATABASE_URL_ENV: "x"})
    assert (short.cumulative, long.cumulative, history.cumulative) == (False, True, True)


@pytest.mark.parametrize(
    "section, message",
    [
        ({"model": "stream"}, "crawlers.model: 'stream' is not one of history, snapshots"),
        ({"model": "snapshots", "stage_column": "x"}, "crawlers.stage_column: unknown setting"),
        ({"stage_key": "x"}, "crawlers.stage_key: unknown setting"),
        ({"model": "snapshots", "max_age_minutes": 0}, "crawlers.max_age_minutes"),
        ({"model": "snapshots", "workers_column": "a;b"}, "crawlers.workers_column"),
        ({"model": "snapshots", "stage_key": ""}, "crawlers.stage_key"),
        ({"url": "postgresql://x"}, "crawlers.url: unknown setting"),
    ],
)
def test_crawler_settings_are_checked_for_their_model(section, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        build_source(section, {PRODUCT_DATABASE_URL_ENV: "x"})


def test_a_json_stage_column_fails_naming_the_setting(store_url, product_url, monkeypatch):
    """Pointing the history model at a JSON list of workers says which setting to change."""
    execute(product_url, SNAPSHOTS_SQL)
    execute(product_url, "CREATE TABLE spiders (id int, created_at timestamptz)")
    insert_snapshots(product_url, [(1, T0, [{"stage": "crawl"}])])
    settings_ = {
        "crawlers": {
            "status_table": "spider_snapshots",
            "stage_column": "attributes",
            "changed_at_column": "created_at",
        }
    }
    result = run_job(
        settings_, store_url, product_url, "2026-03-10-00:00", "2026-03-10-00:00", monkeypatch
    )
    assert not result.success
    message = failure_message(result)
    assert "crawlers.stage_column" in message and "jsonb" in message
    assert "model: snapshots" in message


def test_a_workers_column_that_is_not_json_fails_naming_the_setting(
    store_url, product_url, monkeypatch
):
    execute(
        product_url,
        "CREATE TABLE spider_snapshots (spider_id int, attributes text, created_at timestamptz)",
    )
    result = run_job(
        snapshot_settings(),
        store_url,
        product_url,
        "2026-03-10-00:00",
        "2026-03-10-00:00",
        monkeypatch,
    )
    assert not result.success
    message = failure_message(result)
    assert "crawlers.workers_column" in message and "text" in message and "json" in message


@pytest.mark.parametrize(
    "workers, cause",
    [
        ({"pid": 1}, "a JSON object, not a list of workers"),
        (None, "SQL NULL, not a list of workers"),
        ([{"stage": "crawl"}, "w2"], "1 worker(s) that are not JSON objects"),
    ],
)
def test_a_snapshot_that_is_not_a_list_of_workers_is_refused(product_url, workers, cause):
    execute(product_url, SNAPSHOTS_SQL)
    insert_snapshots(product_url, [(4, T0 + timedelta(minutes=50), workers)])
    reader = CrawlerSnapshots(url=product_url, status_table="spider_snapshots")
    with pytest.raises(SourceError) as raised:
        reader.status_counts(T0, T0 + timedelta(hours=1))
    assert "crawler 4" in str(raised.value) and "2026-03-10T00:50" in str(raised.value)
    assert cause in str(raised.value)


def test_the_demo_settings_example_of_the_snapshot_model_is_valid():
    """The commented `model: snapshots` example in the demo's settings file loads."""
    lines = DEFAULT_CONFIG.read_text().splitlines()
    first = lines.index("#   crawlers:")
    example = []
    for line in lines[first:]:  # the commented block that starts there
        if not line.startswith("#   "):
            break
        example.append(line[2:])
    section = yaml.safe_load("\n".join(example))["crawlers"]
    assert section["model"] == "snapshots"
    source = build_source(section, {PRODUCT_DATABASE_URL_ENV: "x"})
    assert source.enabled and not source.cumulative
