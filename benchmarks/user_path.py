"""Section 4: the span backfilled the way a user does it, `metrics-platform materialize` over the
demo's settings, beside the benchmark's own two runs of the same graph on the same data.

The demo's product database (`lib/demo_data.py`: users, profiles, API keys, crawlers, events,
orders, screenshots, the users' activity) is seeded over the span, and the demo's settings file
is read as it is, without the demo's sample GA4 and Prometheus servers (they exist only in
`metrics-platform demo`, so both sources are disabled, as for any user who has not configured
them). Each path gets a metric store of its own:

- `metrics-platform materialize --select '*' --partitions FIRST..LAST` in a child process, as a
  user types it: its plan of runs (the sources, then what is computed from them each hour, then
  the days), its console output (counted, and shown), its time and peak memory;
- the benchmark's `hourly_metrics` and `daily_metrics` runs over the same span
  (`benchmarks.backfill`, as section 1 runs them).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.graph import REPO, VARIANTS, Span, run_job, store_environment
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.embedded_postgres import EmbeddedPostgres

DEMO_SETTINGS = REPO / "metrics_platform" / "demo" / "platform.yaml"
# The sources the demo serves SAMPLE answers for: not configured here, whatever this process has.
UNCONFIGURED_ENV = (
    "METRICS_PLATFORM_GA4_CREDENTIALS_FILE",
    "METRICS_PLATFORM_GA4_ENDPOINT",
    "METRICS_PLATFORM_PROMETHEUS_URL",
    "METRICS_PLATFORM_PROMETHEUS_TOKEN",
)
RUN_TIMEOUT_SECONDS = 3600


@dataclass
class Command:
    """A finished child process: its output, exit status, time and peak memory."""

    output: list[str]
    returncode: int
    seconds: float
    max_rss_bytes: int


def run_command(command: list[str], env: dict[str, str]) -> Command:
    """Run `command` to its end (killed after an hour); its peak memory is its own, from the
    kernel's account of that one child (`wait4`)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    timer = threading.Timer(RUN_TIMEOUT_SECONDS, process.kill)
    timer.start()
    try:
        with process.stdout:
            output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
    finally:
        timer.cancel()
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Command(
        output.splitlines(),
        process.returncode,
        time.perf_counter() - started,
        usage.ru_maxrss * 1024,
    )


def _env(server: EmbeddedPostgres, scratch: Path, name: str, product_url: str, span: Span):
    """A store of its own, over the demo's settings and product database, without the demo's
    sample servers."""
    _, env = store_environment(
        server, scratch, VARIANTS["socket"], product_url, DEMO_SETTINGS, span, name=name
    )
    for key in UNCONFIGURED_ENV:
        env.pop(key, None)
    return env


def measure(server: EmbeddedPostgres, scratch: Path, span: Span) -> dict:
    product_url = server.create_database("demo_product")
    seeding = time.perf_counter()
    seed_product_database(product_url, now=span.end, start=span.start)
    seeded = time.perf_counter() - seeding

    first, last = span.daily_range
    arguments = ["materialize", "--select", "*", "--partitions", f"{first}..{last}"]
    command = [sys.executable, "-m", "metrics_platform.cli", *arguments]
    user = run_command(command, _env(server, scratch, "user_path", product_url, span))
    if user.returncode != 0:
        raise RuntimeError(
            f"metrics-platform materialize failed ({user.returncode}):\n"
            + "\n".join(user.output[-60:])
        )

    env = _env(server, scratch, "user_path_benchmark", product_url, span)
    hourly = run_job(env, "hourly_metrics", *span.hourly_range, span.hours, None)
    daily = run_job(env, "daily_metrics", *span.daily_range, span.days, None)
    return {
        "seed_seconds": seeded,
        "command": " ".join(["metrics-platform", *(shlex.quote(a) for a in arguments)]),
        "user": user,
        # What the command printed, read back: a line per run ("run <id>: ...") and a line per
        # asset it wrote (its key, which has a "/", first).
        "runs": sum(1 for line in user.output if line.startswith("run ")),
        "asset_rows": sum(1 for line in user.output if "/" in line.split(" ", 1)[0]),
        "benchmark_seconds": hourly["process_wall_seconds"] + daily["process_wall_seconds"],
        "benchmark_peak": max(hourly["max_rss_bytes"], daily["max_rss_bytes"]),
    }
