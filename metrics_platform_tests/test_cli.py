"""The README's first command on a fresh folder: embedded Postgres, a year of demo history
backfilled (one run for the hours, one for the days), and the Dagster UI, all from
`metrics-platform demo`."""

import os
import re
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from metrics_platform_tests.processes import CLI, REPO, project_home, start_demo


@pytest.fixture
def fresh_home():
    """An empty project state folder, with no database or Dagster home configured."""
    with project_home("metrics_platform_home_") as env:
        yield env


def run_cli(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def materialized_partitions(env: dict[str, str], key: list[str]) -> tuple[int, int]:
    """(materialized, total) partitions of an asset, as the instance of the demo reports them
    (what the UI's "filled" bar shows), read by a process with the demo's environment."""
    script = (
        "import dagster as dg\n"
        "from metrics_platform.definitions import defs\n"
        f"key = dg.AssetKey({key!r})\n"
        "partitions = defs.resolve_asset_graph().get(key).partitions_def\n"
        "with dg.DagsterInstance.get() as instance:\n"
        "    done = instance.get_materialized_partitions(key)\n"
        "    print(len(done & set(partitions.get_partition_keys())), "
        "partitions.get_num_partitions())\n"
    )
    exported = dict(re.findall(r"^export (\w+)='(.*)'$", run_cli(env, "env").stdout, re.M))
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, **exported},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    done, total = out.stdout.split()
    return int(done), int(total)


def test_demo_backfills_a_year_of_history_and_the_partitions_are_filled(demo_home):
    # The session's demo home: its first `demo --no-ui` ran on an empty folder.
    home = demo_home.env
    first = demo_home.first_run
    assert first.returncode == 0, first.stdout + first.stderr
    out = first.stdout
    assert "demo product database: seeded in" in out
    assert "SAMPLE data" in out and "SAMPLE series" in out and "FAILED" not in out
    history_start = re.search(r"^history: from (\d{4}-\d{2}-\d{2})", out, re.M).group(1)
    today = datetime.now(timezone.utc).date()
    assert (today - date.fromisoformat(history_start)).days == 365
    # One run per partitions definition, timed.
    hours = re.search(
        r"^materialized hours: ([\d,]+) partitions (\S+)\.\.\.(\S+) in one run", out, re.M
    )
    assert hours and int(hours.group(1).replace(",", "")) >= 365 * 24, out
    assert hours.group(2) == f"{history_start}-00:00"
    assert re.search(
        r"^materialized days: 365 partitions .* in one run .* \d+ s: succeeded", out, re.M
    )
    assert re.search(r"^demo ready in \d+ s$", out, re.M)

    # The store holds the year: every family of metrics, every hour since the history start.
    summary = {
        name: (int(count), start)
        for name, count, start in re.findall(r"^  (\S+)\s+(\d+) hours, (\S+) to", out, re.M)
    }
    for family in ("objects.", "spider.", "events.", "ga.", "http.", "kpi."):
        assert [name for name in summary if name.startswith(family)], f"no {family} metric"
    for name in ("objects.users.count", "spider.total", "ga.sessions", "http.requests.api"):
        assert summary[name][0] >= 365 * 24 and summary[name][1] == history_start, summary[name]
    daily_rows = int(re.search(r"daily values: (\d+) rows", out).group(1))
    assert daily_rows > 365 * 20

    # The instance (what the UI shows) has every partition of every asset filled.
    for key in (
        ["metrics", "hourly_values"],
        ["raw", "crawler_status"],
        ["metrics", "daily_values"],
    ):
        done, total = materialized_partitions(home, key)
        # (An hour, or a day, may have closed since the demo ran.)
        assert total >= 365 and 0 <= total - done <= 1, (key, done, total)

    # Again: the database is kept, only what is missing is materialized.
    second = run_cli(home, "demo", "--no-ui")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already seeded" in second.stdout
    assert f"history: from {history_start}" in second.stdout
    assert "materialized days: up to date" in second.stdout
    assert f"daily values: {daily_rows} rows" in second.stdout

    # The command line on the demo's store: a source and the hourly values over UTC hours.
    # Every hour of the latest hour's day up to it (end excluded: the hour after it), which
    # is one hour just after midnight.
    latest = re.search(r"latest (\d{4}-\d{2}-\d{2}) (\d{2}):00 UTC", out).groups()
    end = datetime.fromisoformat(f"{latest[0]}T{latest[1]}:00+00:00") + timedelta(hours=1)
    run = run_cli(
        home,
        "materialize",
        "--select",
        "group:crawlers or key:metrics/hourly_values",
        "--partitions",
        f"{latest[0]}T00:00Z..{end:%Y-%m-%dT%H:%M}Z",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    counts = {
        name: (int(a), int(b))
        for name, a, b in re.findall(r"^(\S+)\s+(\d+)\s+(\d+)$", run.stdout, re.MULTILINE)
    }
    hours_in_range = int(latest[1]) + 1
    assert counts["raw/crawler_status"] == (hours_in_range, 3 * hours_in_range)
    assert counts["metrics/hourly_values"][1] > 3 * hours_in_range
    # Outside the demo, the unconfigured sample sources are disabled, not served.
    assert "SAMPLE" not in run.stdout and "disabled: ga4" in run.stdout


def test_demo_serves_the_dagster_ui_and_stops_everything_on_sigterm(demo_home, tmp_path):
    home = demo_home.env
    demo = start_demo(home, tmp_path / "demo.log")
    try:
        demo.wait_for_webserver(deadline=time.monotonic() + 240)
        nodes = demo.graphql("{ assetNodes { assetKey { path } } }")["assetNodes"]
        keys = {"/".join(n["assetKey"]["path"]) for n in nodes}
        assert {
            "raw/product_db_row_counts",
            "metrics/hourly_values",
            "metrics/daily_values",
        } <= keys
        demo.process.send_signal(signal.SIGTERM)
        demo.process.wait(timeout=120)
    finally:
        if demo.process.poll() is None:
            os.killpg(demo.process.pid, signal.SIGKILL)
    assert "embedded Postgres stopped" in demo.log.read_text()
    pg_data = Path(home["METRICS_PLATFORM_HOME"]) / "postgres"
    assert not (pg_data / "postmaster.pid").exists()


def test_sigterm_during_the_demo_backfill_ends_its_run_and_stops_the_database(fresh_home):
    from metrics_platform_tests.conftest import query

    store = (
        f"postgresql+psycopg2://metrics_platform@127.0.0.1:"
        f"{fresh_home['METRICS_PLATFORM_EMBEDDED_PORT']}/metrics_platform"
    )
    process = subprocess.Popen(
        [*CLI, "demo", "--no-ui"],
        env=fresh_home,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        runs: list = []
        while not runs:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the backfill's run never started"
            try:
                if query(store, "SELECT to_regclass('runs')")[0][0]:
                    runs = query(store, "SELECT run_id FROM runs")
            except Exception:  # noqa: BLE001 - the database or its tables are not there yet
                pass
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGTERM, out
    assert "interrupted by SIGTERM: run " in out and "marked canceled" in out
    pg_data = Path(fresh_home["METRICS_PLATFORM_HOME"]) / "postgres"
    assert not (pg_data / "postmaster.pid").exists()
    started = run_cli(fresh_home, "db", "start")
    assert started.returncode == 0, started.stderr
    assert query(store, "SELECT status FROM runs") == [("CANCELED",)]
