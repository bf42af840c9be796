"""The benchmark suite's quick mode runs end to end and reports every section (no timings are
asserted: they depend on the machine)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_quick_benchmark_completes_and_prints_every_section():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    report = out.stdout
    for expected in (
        "machine:",
        "1. Whole asset graph",
        "/ hourly_metrics",
        "/ daily_metrics",
        "end to end",
        "2. Write path",
        "raw COPY (pre-serialized)",
        "IO manager, empty window",
        "pandas to_sql(method='multi')",
        "IO manager load",
        "width (metrics per hour)",
        "Dagster's records",
        "asset_check_executions SUCCEEDED",  # the records by kind
        "event_logs ASSET_MATERIALIZATION:",
        "3. Panel queries",
        "hourly values by day",
        "daily values",
        "20 metrics' hourly values",
        "dashboard panel, 20 metrics, sum per",  # the dashboards' own shape
        "($__timeGroupAlias)",
        "p95 ms, decoded",
        "as the reader role",
        "primary keys INCLUDE (value)",
        "row-by-row foreign key",
        "4. The user's path",
        "metrics-platform materialize --select '*'",  # run as a user types it
        "| 4 runs, all succeeded",  # and what it printed
        "benchmark finished",
    ):
        assert expected in report, f"{expected!r} missing from the report:\n{report}"
    assert report.count("target:") >= 4
