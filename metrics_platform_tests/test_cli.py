"""The README's first command on a fresh folder: embedded Postgres, demo data, two days of
hourly and daily values, and the Dagster UI, all from `metrics-platform demo`."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from metrics_platform_tests.processes import CLI, REPO, project_home, start_demo


@pytest.fixture
def fresh_home():
    """An empty project state folder, with no database or Dagster home configured."""
    with project_home("metrics_platform_home_") as env:
        yield env


def test_demo_loads_two_days_of_real_numbers_and_is_idempotent(fresh_home):
    first = subprocess.run(
        [*CLI, "demo", "--no-ui"],
        env=fresh_home,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "demo product database: seeded" in first.stdout
    assert "materialized hours: run" in first.stdout and "FAILED" not in first.stdout
    assert "SAMPLE data" in first.stdout and "SAMPLE series" in first.stdout
    summary = dict(re.findall(r"^  (\S+)\s+(\d+) hours", first.stdout, re.MULTILINE))
    assert {"objects.users.count", "objects.profiles.count", "objects.api_keys.count"} <= set(
        summary
    )
    for family in ("objects.", "spider.", "events.", "ga.", "http.", "kpi."):
        names = [name for name in summary if name.startswith(family)]
        assert names, f"no {family} metric in the demo"
    assert all(int(summary[f"objects.{t}.count"]) >= 48 for t in ("users", "profiles", "api_keys"))
    daily_rows = re.search(r"daily values: (\d+) rows", first.stdout).group(1)
    assert int(daily_rows) > 0

    second = subprocess.run(
        [*CLI, "demo", "--no-ui"],
        env=fresh_home,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert "already seeded" in second.stdout
    assert f"daily values: {daily_rows} rows" in second.stdout

    # One source and the hourly values for a range of hours, with rows in/out per asset.
    hours = re.search(r"latest (\d{4}-\d{2}-\d{2}) (\d{2}):00 UTC", first.stdout).groups()
    last = f"{hours[0]}-{hours[1]}:00"
    run = subprocess.run(
        [
            *CLI,
            "materialize",
            "--select",
            "group:crawlers or key:metrics/hourly_values",
            "--partitions",
            f"{hours[0]}-00:00...{last}",
        ],
        env=fresh_home,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    counts = dict(
        (name, (int(a), int(b)))
        for name, a, b in re.findall(r"^(\S+)\s+(\d+)\s+(\d+)$", run.stdout, re.MULTILINE)
    )
    hours_in_range = int(hours[1]) + 1
    assert counts["raw/crawler_status"] == (hours_in_range, 3 * hours_in_range)
    assert counts["metrics/hourly_values"][1] > 3 * hours_in_range


def test_demo_serves_the_dagster_ui_and_stops_everything_on_sigterm(fresh_home, tmp_path):
    demo = start_demo(fresh_home, tmp_path / "demo.log")
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
    pg_data = Path(fresh_home["METRICS_PLATFORM_HOME"]) / "postgres"
    assert not (pg_data / "postmaster.pid").exists()
