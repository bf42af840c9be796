"""With the real Dagster daemon: the automation does not redo what `metrics-platform
materialize` just computed (sources, then hourly values, in two runs), and still recomputes an
hour that a source re-lands from anywhere else."""

import subprocess
import time
from datetime import datetime, timezone

from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform_tests.conftest import query
from metrics_platform_tests.processes import (
    CLI,
    REPO,
    daemon_log,
    dagster_daemon,
    instance_env,
    instance_home,
    wait_for_ticks,
)

SETTINGS = {
    "product_db": {"tables": [{"table": "users", "created_at_column": "created_at"}]},
    "crawlers": {"crawlers_table": "spiders"},
}
HOURLY = ("metrics/hourly_values", "metrics/hourly_kpis")


def automation_runs(store_url: str) -> list[tuple[str, str]]:
    """(run id, partition or range) of every run the automation requested."""
    rows = query(
        store_url,
        """SELECT r.run_id, coalesce(p.value, s.value || '...' || e.value)
           FROM runs r
           JOIN run_tags a ON a.run_id = r.run_id AND a.key = 'dagster/from_automation_condition'
           LEFT JOIN run_tags p ON p.run_id = r.run_id AND p.key = 'dagster/partition'
           LEFT JOIN run_tags s ON s.run_id = r.run_id
                AND s.key = 'dagster/asset_partition_range_start'
           LEFT JOIN run_tags e ON e.run_id = r.run_id
                AND e.key = 'dagster/asset_partition_range_end'""",
    )
    return sorted(rows)


def materialize(env, select: str, partitions: str) -> None:
    result = subprocess.run(
        [*CLI, "materialize", "--select", select, "--partitions", partitions],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_daemon_leaves_cli_work_alone_and_follows_other_landings(store_url, product_url):
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=3, users=200
    )
    home = instance_home("metrics_platform_automation_")
    env = instance_env(home, SETTINGS, store_url, product_url)
    deadline = time.monotonic() + 280
    with dagster_daemon(home, env) as daemon:
        wait_for_ticks(home, daemon, 1, deadline)
        # Sources, then the hourly values and KPIs from them: two runs of the command line.
        materialize(
            env,
            "group:product_db or group:crawlers or key:metrics/hourly_*",
            "2026-03-10T00:00Z..2026-03-10T06:00Z",
        )
        wait_for_ticks(home, daemon, 3, deadline)  # the first may have started before the end
        assert automation_runs(store_url) == [], daemon_log(home)

        # One source re-lands one hour, in a run of its own: that hour is recomputed.
        materialize(env, "group:product_db", "2026-03-10-05:00")
        while not automation_runs(store_url):
            assert daemon.poll() is None, daemon_log(home)
            assert time.monotonic() < deadline, "no automation run:\n" + daemon_log(home)
            time.sleep(2)
        wait_for_ticks(home, daemon, 2, deadline)
        partitions = {partition for _, partition in automation_runs(store_url)}
        assert partitions == {"2026-03-10-05:00"}, automation_runs(store_url)
