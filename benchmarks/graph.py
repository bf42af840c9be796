"""Section 1: the whole asset graph backfilled over the span, one run per partitions definition,
on Postgres instance storage.

Each variant gets a fresh metric store database (which also holds Dagster's runs and event
logs, as the repository's dagster.yaml has it), reads the same synthetic product database, and
runs `hourly_metrics` over every hour of the span, then `daily_metrics` over every day, each in
its own child process (`benchmarks.backfill`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from benchmarks.overrides import instance_yaml
from metrics_platform.lib.database import (
    DATABASE_URL_ENV,
    PRODUCT_DATABASE_URL_ENV,
    connect,
)
from metrics_platform.lib.embedded_postgres import EmbeddedPostgres
from metrics_platform.lib.settings import CONFIG_ENV

REPO = Path(__file__).resolve().parent.parent
OVERRIDES_ENV = "METRICS_PLATFORM_BENCHMARK_OVERRIDES"
RUN_TIMEOUT_SECONDS = 4 * 3600  # Dagster's default instance settings take hours for a year
HISTORY_START_ENV = "METRICS_PLATFORM_HISTORY_START"


# Instance settings for long single-run backfills (environment of the run process):
# - DAGSTER_EVENT_BATCH_SIZE: a range run's per-partition materializations are written a
#   thousand per INSERT instead of one INSERT (and two new connections) each;
# - DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS: one "materialization planned" event per
#   asset for the whole range instead of one per partition, each stored on its own.
RECOMMENDED_ENV = {
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true",
}


@dataclass(frozen=True)
class Variant:
    """How the run process reaches its instance storage, and with which settings."""

    name: str
    socket: bool  # Unix socket instead of TCP on 127.0.0.1
    env: dict = field(default_factory=dict)
    description: str = ""
    proposed: bool = False  # with the changes proposed outside the write path (overrides.py)


VARIANTS = {
    variant.name: variant
    for variant in (
        Variant("tcp", False, RECOMMENDED_ENV, "TCP, recommended instance settings"),
        Variant("socket", True, RECOMMENDED_ENV, "Unix socket, recommended instance settings"),
        Variant("tcp-defaults", False, {}, "TCP, Dagster's default instance settings"),
        Variant("socket-defaults", True, {}, "Unix socket, Dagster's default instance settings"),
        Variant(
            "socket-proposed",
            True,
            RECOMMENDED_ENV,
            "Unix socket, recommended instance settings, proposed crawler query and event log "
            "storage",
            proposed=True,
        ),
        Variant(
            "tcp-proposed",
            False,
            RECOMMENDED_ENV,
            "TCP, recommended instance settings, proposed crawler query and event log storage",
            proposed=True,
        ),
        Variant(
            "socket-batch-only",
            True,
            {"DAGSTER_EVENT_BATCH_SIZE": "1000"},
            "Unix socket, DAGSTER_EVENT_BATCH_SIZE=1000 only",
        ),
    )
}


@dataclass
class Span:
    start: datetime  # first hour (UTC midnight)
    days: int

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=self.days)

    @property
    def hours(self) -> int:
        return self.days * 24

    @property
    def hourly_range(self) -> tuple[str, str]:
        last = self.end - timedelta(hours=1)
        return self.start.strftime("%Y-%m-%d-%H:%M"), last.strftime("%Y-%m-%d-%H:%M")

    @property
    def daily_range(self) -> tuple[str, str]:
        last = self.end - timedelta(days=1)
        return self.start.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d")


def _child_env(
    variant: Variant, store_url: str, product_url: str, settings_file: Path, home: Path, span: Span
) -> dict[str, str]:
    env = {
        **os.environ,
        DATABASE_URL_ENV: store_url,
        PRODUCT_DATABASE_URL_ENV: product_url,
        CONFIG_ENV: str(settings_file),
        HISTORY_START_ENV: span.start.strftime("%Y-%m-%d"),
        "DAGSTER_HOME": str(home),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    for key in (*RECOMMENDED_ENV, OVERRIDES_ENV):
        env.pop(key, None)
    env.update(variant.env)
    return env


def run_job(env: dict, job: str, first: str, last: str, partitions: int, profile: Path | None):
    command = [sys.executable, "-m", "benchmarks.backfill", job, first, last, str(partitions)]
    if profile is not None:
        command += ["--profile", str(profile)]
    started = time.perf_counter()
    out = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS
    )
    wall = time.perf_counter() - started
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(
            f"{job} run produced no report (exit {out.returncode}):\n{out.stderr[-4000:]}"
        )
    report = json.loads(lines[-1])
    report["process_wall_seconds"] = wall
    if not report["success"]:
        raise RuntimeError(f"{job} run failed: {report['failures'][:3]}\n{out.stderr[-4000:]}")
    return report


def store_rows(url: str) -> dict[str, int]:
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            counts = {}
            for table in (
                "metrics.hourly_values",
                "metrics.daily_values",
                "metrics.hourly_kpis",
                "metrics.daily_kpis",
                "metrics.metric",
            ):
                cur.execute(f"SELECT count(*) FROM {table}")
                counts[table] = cur.fetchone()[0]
            return counts
    finally:
        conn.close()


def backfill_graph(
    server: EmbeddedPostgres,
    scratch: Path,
    variant: Variant,
    product_url: str,
    settings_file: Path,
    span: Span,
    *,
    profile_dir: Path | None = None,
) -> dict:
    dbname = f"store_{variant.name}"
    server.create_database(dbname)
    store_url = server.socket_url(dbname) if variant.socket else server.url(dbname)
    home = scratch / f"dagster_home_{variant.name}"
    home.mkdir(parents=True, exist_ok=True)
    if variant.proposed:
        (home / "dagster.yaml").write_text(
            instance_yaml(
                (REPO / "dagster.yaml").read_text(),
                "benchmarks.overrides",
                "BatchedPostgresEventLogStorage",
            )
        )
    else:
        # The repository's instance settings, unchanged: storage in METRICS_PLATFORM_DATABASE_URL.
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    env = _child_env(variant, store_url, product_url, settings_file, home, span)
    if variant.proposed:
        env[OVERRIDES_ENV] = "1"

    def profile(job):
        return profile_dir / f"{variant.name}_{job}.html" if profile_dir else None

    hourly = run_job(env, "hourly_metrics", *span.hourly_range, span.hours, profile("hourly"))
    daily = run_job(env, "daily_metrics", *span.daily_range, span.days, profile("daily"))
    return {
        "variant": variant,
        "hourly": hourly,
        "daily": daily,
        "store_rows": store_rows(server.url(dbname)),
    }
