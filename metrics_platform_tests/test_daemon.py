"""End to end with the real Dagster daemon: on a temporary Postgres instance, the hourly
schedule launches the source's run for the hour that just closed, the automation sensor follows
with the hourly values, and the numbers land in the metric store without anyone clicking."""

import time
from datetime import datetime, timedelta, timezone

from metrics_platform.defs.automation.schedules import closed_hour
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform_tests.conftest import query
from metrics_platform_tests.processes import daemon_log, dagster_daemon, instance_env, instance_home


def test_the_daemon_runs_the_hourly_schedule_and_values_land(store_url, product_url):
    now = datetime.now(timezone.utc)
    # A lag that makes the schedule's next tick one to two minutes from now.
    tick = (now + timedelta(minutes=2 if now.second > 40 else 1)).replace(second=0, microsecond=0)
    lag = tick.minute
    hour = closed_hour(tick, lag)
    seed_product_database(product_url, now=now, days=2, users=300)

    home = instance_home("metrics_platform_daemon_")
    settings = {
        "product_db": {"tables": [{"table": "users", "created_at_column": "created_at"}]},
        "schedule": {"lag_minutes": {"default": lag}},
    }
    env = instance_env(home, settings, store_url, product_url)
    with dagster_daemon(home, env) as daemon:
        hour_start = datetime.strptime(hour, "%Y-%m-%d-%H:%M").replace(tzinfo=timezone.utc)
        deadline = time.monotonic() + 420
        rows = []
        while time.monotonic() < deadline and not rows:
            assert daemon.poll() is None, daemon_log(home)
            if query(store_url, "SELECT to_regclass('metrics.hourly_values')")[0][0]:
                rows = query(
                    store_url,
                    "SELECT value FROM metrics.hourly_values_by_name "
                    "WHERE metric = 'objects.users.count' AND time = %s",
                    (hour_start,),
                )
            time.sleep(3)
        assert rows, "no hourly value landed; daemon log:\n" + daemon_log(home)
        expected = query(
            product_url,
            "SELECT count(*) FROM users WHERE created_at < %s",
            (hour_start + timedelta(hours=1),),
        )[0][0]
        assert rows[0][0] == expected
        # Two runs did it: the scheduled source run, then the automation's hourly values run.
        while time.monotonic() < deadline:
            succeeded = query(store_url, "SELECT count(*) FROM runs WHERE status = 'SUCCESS'")[0][0]
            if succeeded >= 2:
                break
            time.sleep(2)
        assert succeeded >= 2
