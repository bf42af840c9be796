"""The instance's run queue, enforced by the real daemon: runs of one source never overlap
(per-source concurrency limit in dagster.yaml), whatever launches them."""

import time
from datetime import datetime, timezone

import dagster as dg

from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform_tests.processes import (
    daemon_log,
    dagster_daemon,
    instance_env,
    instance_home,
    launch_job,
)


def launched(instance: dg.DagsterInstance) -> list:
    """The runs this test launched (schedules may add their own while it waits)."""
    return [
        r
        for r in instance.get_run_records()
        if "dagster/schedule_name" not in r.dagster_run.tags
        and "dagster/sensor_name" not in r.dagster_run.tags
    ]


def test_runs_of_one_source_are_dequeued_one_at_a_time(store_url, product_url, monkeypatch):
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=2, users=50
    )
    home = instance_home("metrics_platform_queue_")
    settings = {
        "product_db": {"tables": [{"table": "users", "created_at_column": "created_at"}]},
        "crawlers": {"crawlers_table": "spiders"},
    }
    env = instance_env(home, settings, store_url, product_url)
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def launch(job: str, hour: str) -> None:
        launch_job(env, job, {"dagster/partition": hour})

    # Queued before the daemon starts, so all of them are candidates at its first dequeue.
    for hour in ("2026-03-10-01:00", "2026-03-10-02:00", "2026-03-10-03:00"):
        launch("crawlers_hourly", hour)
    launch("product_db_hourly", "2026-03-10-01:00")

    with dagster_daemon(home, env) as daemon:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                records = launched(instance)
                if len(records) == 4 and all(r.dagster_run.is_finished for r in records):
                    break
                assert daemon.poll() is None, daemon_log(home)
                time.sleep(2)
            records = launched(instance)
    assert [r.dagster_run.status for r in records] == [dg.DagsterRunStatus.SUCCESS] * 4
    crawler_runs = sorted(
        (r.start_time, r.end_time)
        for r in records
        if r.dagster_run.tags.get("metrics_platform/source") == "crawlers"
    )
    assert len(crawler_runs) == 3
    for (_, first_end), (second_start, _) in zip(crawler_runs, crawler_runs[1:]):
        assert first_end <= second_start, "two runs of one source ran at the same time"
