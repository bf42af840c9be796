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
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import yaml

from benchmarks.synthetic import row_counts
from metrics_platform.lib.database import (
    DATABASE_URL_ENV,
    PRODUCT_DATABASE_URL_ENV,
    connect,
)
from metrics_platform.lib.embedded_postgres import EmbeddedPostgres
from metrics_platform.lib.event_log_layout import ROWS_TABLE as EVENT_LOG_ROWS
from metrics_platform.lib.event_log_layout import TEMPLATES_TABLE, is_compact
from metrics_platform.lib.settings import CONFIG_ENV
from metrics_platform.lib.store import VALUE_TABLES

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT_SECONDS = 4 * 3600  # Dagster's default instance settings take hours for a year
HISTORY_START_ENV = "METRICS_PLATFORM_HISTORY_START"


# Dagster's own levers for long single-run backfills, in the environment of the run process:
# - DAGSTER_EVENT_BATCH_SIZE: a range run's per-partition events reach the event log storage in
#   batches (the repository's storage turns it on by itself);
# - DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS: one "materialization planned" event per
#   asset for the whole range instead of one per partition, which dagster-postgres stores one
#   by one. Its price: the partitions of a failed range run are not shown as failed.
BATCH_ENV = {"DAGSTER_EVENT_BATCH_SIZE": "1000"}
SUBSET_ENV = {**BATCH_ENV, "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "true"}
DAGSTER_POSTGRES_EVENT_LOG = ("dagster_postgres.event_log", "PostgresEventLogStorage")


@dataclass(frozen=True)
class Variant:
    """How the run process reaches its instance storage, and with which settings."""

    name: str
    socket: bool  # Unix socket instead of TCP on 127.0.0.1
    env: dict = field(default_factory=dict)
    description: str = ""
    # Event log storage (module, class) in place of the repository's, if any.
    event_log: tuple[str, str] | None = None


VARIANTS = {
    variant.name: variant
    for variant in (
        Variant("tcp", False, {}, "TCP, the repository's dagster.yaml"),
        Variant("socket", True, {}, "Unix socket, the repository's dagster.yaml"),
        Variant(
            "socket-dagster-postgres-subset",
            True,
            SUBSET_ENV,
            "Unix socket, dagster-postgres's event log storage, batched events and planned "
            "events per range (failed range partitions not shown as failed)",
            DAGSTER_POSTGRES_EVENT_LOG,
        ),
        Variant(
            "socket-dagster-postgres-batched",
            True,
            BATCH_ENV,
            "Unix socket, dagster-postgres's event log storage, batched events",
            DAGSTER_POSTGRES_EVENT_LOG,
        ),
        Variant(
            "socket-dagster-defaults",
            True,
            {},
            "Unix socket, dagster-postgres's event log storage, Dagster's default settings",
            DAGSTER_POSTGRES_EVENT_LOG,
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
    for key in SUBSET_ENV:
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
            return row_counts(
                cur,
                [f"metrics.{table}" for table, _ in VALUE_TABLES] + ["metrics.metric"],
            )
    finally:
        conn.close()


# Dagster's records of the runs: its event log (with the events' tags) and its check executions.
# In the repository's compact layout `event_logs` is a view of `event_log_rows`, with the ranges'
# templates beside it: what is stored is measured on those tables.
EVENT_LOG_TABLES = {True: (EVENT_LOG_ROWS, TEMPLATES_TABLE), False: ("event_logs",)}
OTHER_RECORD_TABLES = ("asset_event_tags", "asset_check_executions")


def dagster_records(url: str) -> dict[str, int]:
    """Bytes of Dagster's record tables (rows, TOAST and indexes), the bytes of their rows
    alone, and the number of asset-partitions materialized, in a store of its own."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            compact = is_compact(cur)
            tables = (*EVENT_LOG_TABLES[compact], *OTHER_RECORD_TABLES)
            events = tables[0]
            total = rows = 0
            for table in tables:
                cur.execute(
                    f"SELECT pg_total_relation_size('{table}'), "  # noqa: S608 - constants
                    f"coalesce(sum(pg_column_size(t.*)), 0) FROM {table} t"
                )
                table_total, table_rows = cur.fetchone()
                total += table_total
                rows += int(table_rows)
            cur.execute(
                "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
            )
            partitions = cur.fetchone()[0]
            # The rows by kind: each event type, the tags, the templates, the check rows by
            # status.
            templates = (
                f" UNION ALL SELECT '{TEMPLATES_TABLE}', count(*), sum(pg_column_size(t.*))"
                f" FROM {TEMPLATES_TABLE} t"
                if compact
                else ""
            )
            cur.execute(
                "SELECT 'event_logs ' || coalesce(dagster_event_type, 'log'), count(*),"
                f" sum(pg_column_size(t.*)) FROM {events} t GROUP BY 1"  # noqa: S608 - constants
                " UNION ALL SELECT 'asset_event_tags', count(*), sum(pg_column_size(t.*))"
                f" FROM asset_event_tags t{templates}"
                " UNION ALL SELECT 'asset_check_executions ' || execution_status, count(*),"
                " sum(pg_column_size(t.*)) FROM asset_check_executions t GROUP BY 1"
                " ORDER BY 3 DESC"
            )
            kinds = {kind: (int(count), int(size)) for kind, count, size in cur.fetchall()}
            return {
                "bytes": total,
                "row_bytes": rows,
                "asset_partitions": partitions,
                "kinds": kinds,
            }
    finally:
        conn.close()


def store_environment(
    server: EmbeddedPostgres,
    scratch: Path,
    variant: Variant,
    product_url: str,
    settings_file: Path,
    span: Span,
    name: str | None = None,
) -> tuple[str, dict[str, str]]:
    """A fresh metric store database (named after the variant, or `name`), its DAGSTER_HOME
    (the repository's instance settings, storage in the store's database, with the variant's
    event log storage if it has one), and the environment of a run process on them."""
    name = name or variant.name
    dbname = f"store_{name}"
    server.create_database(dbname)
    store_url = server.socket_url(dbname) if variant.socket else server.url(dbname)
    home = scratch / f"dagster_home_{name}"
    home.mkdir(parents=True, exist_ok=True)
    settings = yaml.safe_load((REPO / "dagster.yaml").read_text())
    if variant.event_log:
        module, cls = variant.event_log
        settings["event_log_storage"].update({"module": module, "class": cls})
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings, sort_keys=False))
    return dbname, _child_env(variant, store_url, product_url, settings_file, home, span)


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
    dbname, env = store_environment(server, scratch, variant, product_url, settings_file, span)

    def profile(job):
        return profile_dir / f"{variant.name}_{job}.html" if profile_dir else None

    hourly = run_job(env, "hourly_metrics", *span.hourly_range, span.hours, profile("hourly"))
    daily = run_job(env, "daily_metrics", *span.daily_range, span.days, profile("daily"))
    return {
        "variant": variant,
        "hourly": hourly,
        "daily": daily,
        "store_rows": store_rows(server.url(dbname)),
        "records": dagster_records(server.url(dbname)),
    }
