"""Late data propagates exactly: a row that arrives late for a past hour changes that hour and
every later one of a cumulative metric, and their days. Through the documented manual path
(re-run the hour) and through the late-rows sensor with the real daemon, the stored values end
equal to a fresh recomputation from the product database, and nothing else moves."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from metrics_platform.definitions import build_definitions
from metrics_platform.defs.automation.late_data import (
    STALE_FROM,
    STALE_TO,
    contiguous_ranges,
    recompute_windows,
)
from metrics_platform.defs.metrics.assets import DAILY_VALUES_KEY, HOURLY_VALUES_KEY
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform_tests.conftest import RANGE_TAGS, execute, new_store, query
from metrics_platform_tests.processes import (
    daemon_log,
    dagster_daemon,
    instance_env,
    instance_home,
    wait_for_ticks,
)

UTC = timezone.utc
ONE_HOUR = timedelta(hours=1)
SETTINGS = {
    "product_db": {
        "tables": [
            {"table": t, "created_at_column": "created_at", "id_column": "id"}
            for t in ("users", "profiles")
        ]
    }
}


def hour(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_cumulative_source_recomputes_from_the_first_late_hour_to_its_latest():
    late = [hour("2026-03-10 05:00"), hour("2026-03-10 08:00")]
    latest = hour("2026-03-11 23:00")
    assert recompute_windows(late, "later_hours", latest) == [(late[0], latest)]
    assert recompute_windows(late, "later_hours", hour("2026-03-10 04:00")) == []
    assert recompute_windows(late, "later_hours", None) == []
    # A per-hour source recomputes each run of consecutive late hours, nothing between them.
    three = [*late, hour("2026-03-10 09:00")]
    assert recompute_windows(three, "own_hour", latest) == [
        (late[0], late[0]),
        (late[1], hour("2026-03-10 09:00")),
    ]
    assert contiguous_ranges([]) == []


def store_values(url: str) -> dict:
    hourly = query(url, "SELECT metric, time, value FROM metrics.hourly_values_by_name")
    daily = query(url, "SELECT metric, date, value FROM metrics.daily_values_by_name")
    return {("hour", m, t): v for m, t, v in hourly} | {("day", m, d): v for m, d, v in daily}


def fresh_recomputation(postgres_server, product_url, monkeypatch, hours, days) -> dict:
    """Every value of the hours and days, computed from scratch into a new store."""
    url = new_store(postgres_server, "fresh")
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    defs = build_definitions(SETTINGS)
    with dg.instance_for_test() as instance:
        assert (
            defs.resolve_job_def("hourly_metrics")
            .execute_in_process(instance=instance, tags=dict(zip(RANGE_TAGS, hours)))
            .success
        )
        assert (
            defs.resolve_job_def("daily_metrics")
            .execute_in_process(instance=instance, tags=dict(zip(RANGE_TAGS, days)))
            .success
        )
    return store_values(url)


def sensor_named(defs, name):
    return next(s for s in defs.sensors if s.name == name)


def requested(defs, instance, cursor):
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    keys = (HOURLY_VALUES_KEY, DAILY_VALUES_KEY)
    return result.cursor, {key: result.get_requested_partitions(key) for key in keys}


def test_rerunning_a_late_hour_recomputes_every_later_hour_and_day_in_range_runs(
    store_url, product_url, postgres_server, monkeypatch
):
    """The documented manual path: re-run the hour the late rows belong to. The run says which
    later hours it left stale; `later_hours_follow` asks for one range run of the source over
    them; the automation then asks for exactly the hours and days that changed."""
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    monkeypatch.setenv(PRODUCT_DATABASE_URL_ENV, product_url)
    seed_product_database(product_url, now=hour("2026-03-12 00:00"), days=3, users=400)
    defs = build_definitions(SETTINGS)
    hours, days = ("2026-03-10-00:00", "2026-03-11-23:00"), ("2026-03-10", "2026-03-11")
    follow = sensor_named(defs, "later_hours_follow")
    with dg.instance_for_test() as instance:
        for job, window in (("hourly_metrics", hours), ("daily_metrics", days)):
            run = defs.resolve_job_def(job).execute_in_process(
                instance=instance, tags=dict(zip(RANGE_TAGS, window))
            )
            assert run.success
        cursor, _ = requested(defs, instance, None)
        sensor_cursor = follow(dg.build_sensor_context(instance=instance)).cursor
        before = store_values(store_url)

        # 50 users created during 14:00 arrive late, then that hour is re-run by hand.
        execute(
            product_url,
            "INSERT INTO users (email, created_at) SELECT 'late' || n || '@x', "
            "'2026-03-10 14:30+00' FROM generate_series(1, 50) n",
        )
        rerun = defs.resolve_job_def("product_db_hourly").execute_in_process(
            instance=instance, partition_key="2026-03-10-14:00"
        )
        [materialization] = rerun.asset_materializations_for_node("raw__product_db_row_counts")
        stale = {k: materialization.metadata[k].value for k in (STALE_FROM, STALE_TO)}
        assert stale == {STALE_FROM: "2026-03-10-15:00", STALE_TO: "2026-03-11-23:00"}

        tick = follow(dg.build_sensor_context(instance=instance, cursor=sensor_cursor))
        [request] = tick.run_requests
        assert [request.tags[t] for t in RANGE_TAGS] == ["2026-03-10-15:00", "2026-03-11-23:00"]
        assert request.asset_selection == [dg.AssetKey(["raw", "product_db_row_counts"])]
        # The same materializations are never asked for twice.
        assert not follow(
            dg.build_sensor_context(instance=instance, cursor=tick.cursor)
        ).run_requests
        assert (
            defs.resolve_job_def("product_db_hourly")
            .execute_in_process(instance=instance, tags=request.tags)
            .success
        )

        cursor, asked = requested(defs, instance, cursor)
        changed_hours = {
            k
            for k in defs.resolve_assets_def(HOURLY_VALUES_KEY).partitions_def.get_partition_keys()
            if "2026-03-10-14:00" <= k <= "2026-03-11-23:00"
        }
        assert asked[HOURLY_VALUES_KEY] == changed_hours  # 34 hours, nothing else
        assert (
            defs.resolve_job_def("hourly_metrics")
            .execute_in_process(
                instance=instance,
                asset_selection=[HOURLY_VALUES_KEY],
                tags=dict(zip(RANGE_TAGS, ("2026-03-10-14:00", "2026-03-11-23:00"))),
            )
            .success
        )
        cursor, asked = requested(defs, instance, cursor)
        assert asked[DAILY_VALUES_KEY] == set(days)
        assert (
            defs.resolve_job_def("daily_metrics")
            .execute_in_process(
                instance=instance,
                asset_selection=[DAILY_VALUES_KEY],
                tags=dict(zip(RANGE_TAGS, days)),
            )
            .success
        )
        _, asked = requested(defs, instance, cursor)
        assert asked == {HOURLY_VALUES_KEY: set(), DAILY_VALUES_KEY: set()}

    after = store_values(store_url)
    assert after == fresh_recomputation(postgres_server, product_url, monkeypatch, hours, days)
    moved = {k for k in after if after[k] != before.get(k)}
    late_hours = {k for k in after if k[0] == "hour" and k[2] >= hour("2026-03-10 14:00")}
    expected = {k for k in late_hours if k[1] == "objects.users.count"}
    expected |= {("day", "objects.users.count", d) for d in (days_of(days))}
    assert moved == expected  # 34 hours and 2 days of users, and nothing else
    assert all(after[k] == before[k] + 50 for k in expected)


def days_of(days):
    first, last = (datetime.fromisoformat(d).date() for d in days)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@pytest.mark.timeout(900)
def test_a_late_row_reaches_every_later_hour_and_day_through_the_daemon(
    store_url, product_url, postgres_server, monkeypatch
):
    """With the real daemon: the late-rows sensor asks for one range run from the late row's
    hour to the latest landed hour, and the automation carries it to the hourly and daily
    values, which end equal to a fresh recomputation."""
    now = datetime.now(UTC)
    last_closed = now.replace(minute=0, second=0, microsecond=0) - ONE_HOUR
    first = (last_closed - timedelta(hours=47)).replace(hour=0)
    seed_product_database(product_url, now=now, days=3, users=300)
    keys = tuple(h.strftime("%Y-%m-%d-%H:%M") for h in (first, last_closed))
    complete_days = (first.date().isoformat(), (last_closed.date() - timedelta(days=1)).isoformat())

    home = instance_home("metrics_platform_late_data_")
    env = instance_env(home, SETTINGS, store_url, product_url)
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    monkeypatch.setenv(PRODUCT_DATABASE_URL_ENV, product_url)
    defs = build_definitions(SETTINGS)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for job, window in (("hourly_metrics", keys), ("daily_metrics", complete_days)):
            run = defs.resolve_job_def(job).execute_in_process(
                instance=instance, tags=dict(zip(RANGE_TAGS, window))
            )
            assert run.success
    before = store_values(store_url)
    late_hour = first + timedelta(hours=20)

    with dagster_daemon(home, env) as daemon:
        deadline = time.monotonic() + 600

        def wait_for(condition, what):
            while not condition():
                assert daemon.poll() is None, daemon_log(home)
                assert time.monotonic() < deadline, f"{what}; daemon log:\n{daemon_log(home)}"
                time.sleep(3)

        # The sensor's first tick records the ids; then 50 users arrive late for `late_hour`.
        wait_for(lambda: sensor_ticks(store_url, "product_db_late_rows") > 0, "no sensor tick")
        wait_for_ticks(home, daemon, 1, deadline)
        execute(
            product_url,
            "INSERT INTO users (email, created_at) SELECT 'late' || n || '@x', %s "
            "FROM generate_series(1, 50) n",
            (late_hour + timedelta(minutes=30),),
        )
        late_days = [d.isoformat() for d in days_of(complete_days) if d >= late_hour.date()]

        def landed():
            values = store_values(store_url)
            hours_moved = [
                k
                for k, v in values.items()
                if k[0] == "hour" and k[1] == "objects.users.count" and v == before.get(k, -1) + 50
            ]
            days_moved = [
                k
                for k, v in values.items()
                if k[0] == "day" and k[1] == "objects.users.count" and v == before.get(k, -1) + 50
            ]
            return len(hours_moved) == (last_closed - late_hour) // ONE_HOUR + 1 and len(
                days_moved
            ) == len(late_days)

        wait_for(landed, "the late rows did not reach every later hour and day")
        wait_for(lambda: not runs_in_progress(store_url), "runs still in progress")
        source_runs = query(
            store_url,
            "SELECT count(*) FROM runs WHERE pipeline_name = 'product_db_hourly' "
            "AND run_body LIKE '%%late-rows:%%'",
        )[0][0]
        assert source_runs == 1  # one range run, not one per hour

    after = store_values(store_url)
    fresh = fresh_recomputation(postgres_server, product_url, monkeypatch, keys, complete_days)
    assert {k: after[k] for k in fresh} == fresh
    moved = {k for k in before if after.get(k) != before[k]}
    assert all(k[1] == "objects.users.count" for k in moved)


def sensor_ticks(store_url: str, name: str) -> int:
    return query(
        store_url,
        "SELECT count(*) FROM job_ticks WHERE status <> 'STARTED' AND tick_body LIKE %s",
        (f'%"{name}"%',),
    )[0][0]


def runs_in_progress(store_url: str) -> int:
    return query(
        store_url,
        "SELECT count(*) FROM runs WHERE status IN ('QUEUED', 'NOT_STARTED', 'STARTING', 'STARTED')",
    )[0][0]


def test_the_documented_command_recomputes_the_later_hours_and_days(
    store_url, product_url, postgres_server, monkeypatch
):
    """docs/backfilling.md's way: `metrics-platform materialize` over the late row's hour. The
    source's run says which later hours it left stale; the command recomputes them, their
    hourly values and their days next, and the store equals a fresh recomputation."""
    import shutil
    import subprocess

    from metrics_platform_tests.processes import CLI, REPO

    seed_product_database(product_url, now=hour("2026-03-12 00:00"), days=3, users=400)
    home = instance_home("metrics_platform_late_cli_")
    env = instance_env(home, SETTINGS, store_url, product_url)

    def materialize(*args: str) -> str:
        result = subprocess.run(
            [*CLI, "materialize", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        return output

    everything = "group:product_db or key:metrics/*"
    try:
        materialize("--select", everything, "--partitions", "2026-03-10..2026-03-11")
        before = store_values(store_url)
        execute(
            product_url,
            "INSERT INTO users (email, created_at) SELECT 'late' || n || '@x', "
            "'2026-03-10 14:30+00' FROM generate_series(1, 50) n",
        )
        output = materialize(
            "--select",
            "group:product_db or key:metrics/hourly_values",
            "--partitions",
            "2026-03-10T14:00Z",
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert "later hours of raw/product_db_row_counts" in output, output
    assert "days of the later hours" in output, output

    after = store_values(store_url)
    monkeypatch.setenv(PRODUCT_DATABASE_URL_ENV, product_url)
    fresh = fresh_recomputation(
        postgres_server,
        product_url,
        monkeypatch,
        ("2026-03-10-00:00", "2026-03-11-23:00"),
        ("2026-03-10", "2026-03-11"),
    )
    assert after == fresh
    moved = {k for k in after if after[k] != before.get(k)}
    assert moved and all(k[1] == "objects.users.count" for k in moved)
