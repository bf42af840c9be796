"""`metrics-platform materialize` as an operator uses it, against real databases.

Each command runs as its own process on a store and a product database of the test server and
an instance of the repository's dagster.yaml: sources run in one run (a failing source fails
alone), hourly values in a second, days after; ranges are converted for the operator; mistakes
get one line saying what to type; a failure prints its cause; no sample data is ever served
outside the demo; SIGTERM ends the run it interrupts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml

from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.materialize import Kind, UsageError, key_range, parse_partitions
from metrics_platform_tests.conftest import SOURCE_HOURS, TEST_SETTINGS, execute, query
from metrics_platform_tests.processes import CLI, REPO, instance_env, instance_home

PROMETHEUS_ONLY = {
    "prometheus": {"queries": [{"query": "up", "metric": "up.{job}", "aggregation": "last"}]}
}
DEMO_SETTINGS = REPO / "metrics_platform" / "demo" / "platform.yaml"


@pytest.fixture
def operator(store_url, product_url):
    """Run `metrics-platform materialize ...` on the test databases; returns a function of
    (args, **env overrides) -> CompletedProcess."""
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=3, users=200
    )
    home = instance_home("metrics_platform_cli_")
    env = instance_env(home, TEST_SETTINGS, store_url, product_url)

    def run(*args: str, timeout: float = 240, **overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CLI, "materialize", *args],
            env={**env, **overrides},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    run.env = env
    run.home = home
    try:
        yield run
    finally:
        shutil.rmtree(home, ignore_errors=True)


def metric_families(store_url: str) -> set[str]:
    rows = query(store_url, f"SELECT DISTINCT split_part(metric, '.', 1) FROM {SOURCE_HOURS}")
    return {family for (family,) in rows}


def test_one_failing_source_fails_alone_and_the_hours_of_the_others_land(
    operator, store_url, product_url
):
    execute(product_url, "ALTER TABLE spider_status RENAME TO spider_status_gone")
    result = operator(
        "--select",
        "group:product_db or group:crawlers or key:raw/events_hourly or key:metrics/hourly_*",
        "--partitions",
        "2026-03-10T00:00Z..2026-03-10T06:00Z",
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    # The cause, in one line: source, partition, reason; no traceback, no retry count.
    assert (
        "failed: raw/crawler_status: source 'crawlers': crawlers.status_table: "
        "table spider_status does not exist (partition 2026-03-10-00:00...2026-03-10-05:00)"
    ) in out
    assert "Traceback" not in out and "Stack Trace" not in out and "max_retries" not in out
    assert "Not executing" not in out
    # The other sources and the hourly values of their hours landed, flagged incomplete.
    assert metric_families(store_url) == {"objects", "events"}
    assert "hourly values, 2026-03-10-00:00...2026-03-10-05:00 (6 hours" in out
    assert query(
        store_url,
        "SELECT execution_status, count(DISTINCT partition) FROM asset_check_executions "
        "WHERE check_name = 'every_expected_metric_present' GROUP BY 1",
    ) == [("FAILED", 6)]  # each of the six hours flagged incomplete
    assert "2 runs, 1 FAILED" in out


def test_a_missing_table_is_one_line_and_verbose_shows_the_trace(operator, product_url):
    execute(product_url, "DROP TABLE api_keys")
    (operator.home / "platform.yaml").write_text(
        "product_db:\n  tables:\n    - {table: api_keys, created_at_column: created_at}\n"
    )
    args = ("--select", "group:product_db", "--partitions", "2026-03-10-05:00")
    quiet = operator(*args)
    assert quiet.returncode == 1
    lines = [line for line in (quiet.stdout + quiet.stderr).splitlines() if "api_keys" in line]
    assert len(lines) == 1 and lines[0].startswith("failed: raw/product_db_row_counts: "), lines
    assert "Traceback" not in quiet.stdout + quiet.stderr
    verbose = operator(*args, "--verbose")
    assert verbose.returncode == 1
    assert "Stack Trace" in verbose.stdout + verbose.stderr


def test_a_retried_failure_prints_its_cause_not_the_retry_count(operator, prometheus_stub):
    prometheus_stub.reply = lambda params: (503, {"status": "error", "error": "overloaded"})
    (operator.home / "platform.yaml").write_text(yaml.safe_dump(PROMETHEUS_ONLY))
    result = operator(
        "--select",
        "group:prometheus",
        "--partitions",
        "2026-03-10-05:00",
        METRICS_PLATFORM_PROMETHEUS_URL=prometheus_stub.url,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Exceeded max_retries" not in out
    failure = [line for line in out.splitlines() if line.startswith("failed:")]
    assert len(failure) == 1 and "source 'prometheus'" in failure[0], out
    assert "overloaded (partition 2026-03-10-05:00)" in failure[0]


@pytest.mark.parametrize(
    "select, partitions, message",
    [
        (
            "group:crawler",
            "2026-03-10-05:00",
            "--select 'group:crawler' matches no asset; groups: crawlers, events, ga4, "
            "metrics, product_db, prometheus",
        ),
        (
            "group:crawlers",
            "2026-03-10",
            "2026-03-10 is a day; hourly assets take hours: type --partitions "
            "2026-03-10..2026-03-10",
        ),
        (
            "key:metrics/daily_values",
            "2026-03-10-05:00",
            "2026-03-10-05:00 is an hour; daily assets take business days: type "
            "--partitions 2026-03-10",
        ),
        (
            "group:events",
            "2026-03-10-00:00...2026-03-10-05:00",
            "mixes hourly assets (raw/events_hourly) and daily assets "
            "(raw/events_daily_timings): give business days (--partitions "
            "2026-03-10..2026-03-10) to run both",
        ),
        ("group:crawlers", "2026-03-10T05:00..2026-03-10T06:00", "has no time zone"),
        ("group:crawlers", "2024-01-01..2024-01-02", "before the history start"),
    ],
)
def test_a_mistake_gets_one_line_saying_what_to_type(operator, select, partitions, message):
    result = operator("--select", select, "--partitions", partitions)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("metrics-platform: ") and message in errors[0], errors[0]
    assert "run " not in result.stdout  # nothing ran


def test_a_selection_over_business_days_runs_hours_then_days(operator, store_url):
    result = operator("--select", "group:events", "--partitions", "2026-03-10..2026-03-10")
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    steps = [line for line in out.splitlines() if line.startswith(("hourly ", "daily "))]
    assert steps == [
        "hourly sources, 2026-03-10-00:00...2026-03-10-23:00 "
        "(24 hours, UTC 2026-03-10T00:00Z..2026-03-11T00:00Z)",
        "daily sources, 2026-03-10 (1 day, UTC 2026-03-10T00:00Z..2026-03-11T00:00Z)",
    ]
    # Every check execution planned for a partition of the range was resolved.
    executions = query(
        store_url,
        "SELECT execution_status, count(*), count(DISTINCT partition) "
        "FROM asset_check_executions GROUP BY 1",
    )
    assert [(status, n) for status, n, _ in executions] == [("SUCCEEDED", 24 + 1)], executions


PARIS_HOURS = Kind(
    "hourly",
    "hour",
    dg.HourlyPartitionsDefinition(
        start_date="2025-01-01-00:00", timezone="Europe/Paris", end_offset=0
    ),
)
PARIS_DAYS = Kind(
    "daily",
    "day",
    dg.DailyPartitionsDefinition(start_date="2025-01-01", timezone="Europe/Paris", end_offset=0),
)


@pytest.mark.parametrize(
    "text, kind, expected",
    [
        # UTC times, end excluded: the keys are written in the business zone.
        (
            "2026-10-23T00:00Z..2026-10-27T00:00Z",
            PARIS_HOURS,
            ("2026-10-23-02:00", "2026-10-27-00:00", 96),
        ),
        # The autumn's repeated hour is a key of its own.
        (
            "2026-10-25T00:00Z..2026-10-25T02:00Z",
            PARIS_HOURS,
            ("2026-10-25-02:00", "2026-10-25-02:00+0100", 2),
        ),
        # Business days, both included: the 25-hour day has 25 hours.
        ("2026-10-25..2026-10-25", PARIS_HOURS, ("2026-10-25-00:00", "2026-10-25-23:00", 25)),
        ("2026-10-23..2026-10-26", PARIS_DAYS, ("2026-10-23", "2026-10-26", 4)),
        # UTC times on business midnights are days too.
        ("2026-10-22T22:00Z..2026-10-24T22:00Z", PARIS_DAYS, ("2026-10-23", "2026-10-24", 2)),
        (
            "2026-10-23-02:00...2026-10-23-05:00",
            PARIS_HOURS,
            ("2026-10-23-02:00", "2026-10-23-05:00", 4),
        ),
    ],
)
def test_ranges_are_converted_to_partition_keys(text, kind, expected):
    keys = key_range(parse_partitions(text), kind)
    count = len(kind.partitions_def.get_partition_keys_in_range(keys))
    assert (keys.start, keys.end, count) == expected


def test_utc_times_that_are_not_business_midnights_are_refused_for_days():
    with pytest.raises(UsageError, match=r"daily assets take business days \(Europe/Paris\)"):
        key_range(parse_partitions("2026-10-23T00:00Z..2026-10-24T00:00Z"), PARIS_DAYS)
    assert ZoneInfo(PARIS_DAYS.partitions_def.timezone)


def test_unconfigured_ga4_and_prometheus_are_disabled_and_no_sample_data_is_written(
    operator, store_url
):
    """The demo's settings (a GA4 property, Prometheus queries) against a store that is not the
    demo's, with neither GA4 nor Prometheus configured: both are disabled, nothing is served."""
    result = operator(
        "--select",
        "key:raw/* or key:metrics/hourly_values",
        "--partitions",
        "2026-03-10..2026-03-10",
        METRICS_PLATFORM_CONFIG=str(DEMO_SETTINGS),
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "SAMPLE" not in out
    assert "disabled: ga4: neither METRICS_PLATFORM_GA4_CREDENTIALS_FILE nor" in out
    assert "disabled: prometheus: METRICS_PLATFORM_PROMETHEUS_URL is not set" in out
    families = metric_families(store_url)
    assert {"objects", "spider", "events"} <= families
    assert not families & {"ga", "http", "queue"}  # nothing of GA4's or Prometheus's
    assert query(
        store_url, "SELECT count(*) FROM metrics.metric WHERE source IN ('ga4', 'prometheus')"
    ) == [(0,)]


def test_sigterm_ends_the_run_it_interrupts(operator, store_url, prometheus_stub):
    prometheus_stub.delay = 120  # the source hangs: the run is under way when SIGTERM comes
    (operator.home / "platform.yaml").write_text(yaml.safe_dump(PROMETHEUS_ONLY))
    process = subprocess.Popen(
        [*CLI, "materialize", "--select", "group:prometheus", "--partitions", "2026-03-10-05:00"],
        env={**operator.env, "METRICS_PLATFORM_PROMETHEUS_URL": prometheus_stub.url},
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not prometheus_stub.requests:
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the run never reached the source"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGTERM, out
    assert "interrupted by SIGTERM: run " in out and "marked canceled" in out
    statuses = query(store_url, "SELECT status FROM runs")
    assert statuses == [("CANCELED",)], statuses
    # The store is consistent and usable: nothing was written for the hour.
    assert query(store_url, "SELECT count(*) FROM metrics.hourly_values") == [(0,)]


def test_sigterm_while_a_year_is_being_planned_ends_the_run(operator, store_url):
    """A year's run first records some 8,760 planned materializations per asset, which takes
    a while: a SIGTERM then must not leave the run "not started" for good."""
    process = subprocess.Popen(
        [
            *CLI,
            "materialize",
            "--select",
            "group:product_db or group:crawlers or key:raw/events_hourly",
            "--partitions",
            "2025-01-01..2025-12-31",
        ],
        env=operator.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not query(store_url, "SELECT to_regclass('runs')")[0][0] or not query(
            store_url, "SELECT status FROM runs"
        ):
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "no run was created"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    assert process.returncode == 128 + signal.SIGTERM, out
    assert query(store_url, "SELECT status FROM runs") == [("CANCELED",)]
