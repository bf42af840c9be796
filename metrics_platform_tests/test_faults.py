"""Faults injected into real runs against real PostgreSQL servers: nothing is lost, duplicated,
half-written or made up.

- A run process killed (SIGKILL) while it writes one hour, while it writes a range of hours, and
  between the raw assets and the hourly values: the tables keep their previous state, and a
  re-run gives exactly what a clean run gives in a database of its own.
- The PostgreSQL server restarted in the middle of a run: the run fails and says why, a reader
  only ever sees the state before or the state after, and a re-run converges.
- Two runs of the same hours at once, with different source data: both finish, and each table
  holds one run's complete result.
- Sources that time out, fail, or answer with something unusable: the failure names the source
  and the cause, is retried only when that can help, leaves the other sources alone and stores
  nothing for the failed source.
- Normalizers fed any payload return rows or raise the project's own errors.
- Wrong settings fail when the definitions load, naming the offending key.

A write is held at a precise point by a row trigger on the target table that waits for an
advisory lock the test holds (the gate): the writer is then inside its transaction, with its
window deleted and half its rows inserted, for as long as the test needs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2 import sql

from metrics_platform.definitions import build_definitions
from metrics_platform.defs.jobs import HOURLY_JOB
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV, connect
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.embedded_postgres import EmbeddedPostgres, throwaway_server
from metrics_platform.lib.errors import MetricsPlatformError
from metrics_platform_tests.conftest import RANGE_TAGS, TEST_SETTINGS, execute, new_database, query
from metrics_platform_tests.strategies import json_scalars, json_values
from metrics_platform_tests.stubs import PrometheusStub

REPO = Path(__file__).resolve().parent.parent
UTC = timezone.utc
ONE_HOUR = timedelta(hours=1)
# Every run here covers the same twelve hours, backfilled in one run; one hour of them alone.
RANGE = ("2026-03-10-00:00", "2026-03-10-11:00")
WINDOW = (datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 10, 12, tzinfo=UTC))
HOUR = "2026-03-10-05:00"
HOUR_START = datetime(2026, 3, 10, 5, tzinfo=UTC)
SETTINGS = {
    **TEST_SETTINGS,
    "product_db": {
        "tables": [
            {"table": name, "created_at_column": "created_at"}
            for name in ("users", "profiles", "api_keys")
        ]
    },
}
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# Bounds for waiting on other processes: only hit when something hangs, never timing asserts.
PATIENCE = 120

# Source data A is the demo's; B and C add rows that change every hour of the window (new users,
# page views with other durations, new crawlers), each differently, and no new metric.
MORE_ROWS = """
INSERT INTO users (email, created_at)
SELECT %(tag)s || n || '@example.com', '2026-03-10 00:00+00'::timestamptz + n * %(every)s::interval
FROM generate_series(1, 60) AS n;
INSERT INTO events (type, occurred_at, duration_ms, failed)
SELECT 'page_view', '2026-03-10 00:00+00'::timestamptz + n * %(every)s::interval,
       n * %(scale)s, n %% 5 = 0
FROM generate_series(1, 60) AS n;
INSERT INTO spiders (name, created_at)
SELECT %(tag)s || n, '2026-03-10 00:30+00'::timestamptz + n * %(spiders_every)s::interval
FROM generate_series(1, 8) AS n;
"""
VARIANTS = {
    "b": {"tag": "b", "every": "11 minutes", "scale": 3.5, "spiders_every": "1 hour"},
    "c": {"tag": "c", "every": "7 minutes", "scale": 11.25, "spiders_every": "40 minutes"},
}


# --- The metric store, compared table by table ---------------------------------------------------

# Each table of the store by metric *name* (two databases number their catalogs independently).
TABLES = {
    "metrics.metric": "SELECT name, aggregation, source, unit, description FROM metrics.metric",
    **{
        f"metrics.{table}": f"SELECT m.name, v.hour, v.value FROM metrics.{table} v "
        "JOIN metrics.metric m ON m.id = v.metric_id"
        for table in ("hourly_values", "hourly_kpis")
    },
    **{
        f"raw.{table}": f"SELECT metric, hour, value FROM raw.{table}"
        for table in ("product_db_row_counts", "crawler_status", "events_hourly")
    },
}


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every table of the store, row for row, in a canonical order (missing tables are empty)."""
    found = {}
    conn = connect(url, application_name="faults snapshot")
    try:
        with conn, conn.cursor() as cur:
            for table, select in TABLES.items():
                cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
                if not cur.fetchone()[0]:
                    found[table] = []
                    continue
                cur.execute(f"{select} ORDER BY 1, 2")
                found[table] = cur.fetchall()
    finally:
        conn.close()
    for table, rows in found.items():  # no metric twice, no (metric, hour) twice
        keys = [row[0] if table == "metrics.metric" else row[:2] for row in rows]
        assert len(set(keys)) == len(keys), f"duplicate rows in {table}"
    return found


def with_hour_from(base: dict, other: dict, hour: datetime) -> dict:
    """`base`, with every table's rows of `hour` replaced by those of `other`."""
    merged = {}
    for table, rows in base.items():
        if table == "metrics.metric":
            merged[table] = sorted(set(rows) | set(other[table]))
            continue
        kept = [row for row in rows if row[1] != hour]
        merged[table] = sorted(kept + [row for row in other[table] if row[1] == hour])
    return merged


# What a dashboard reads: one Grafana-style query, every answer one consistent snapshot. The
# digest identifies the exact rows, and `value::numeric` makes the sum independent of row order.
DASHBOARD = """
SELECT count(*), sum(value::numeric),
       md5(string_agg(metric || '|' || time || '|' || value, ',' ORDER BY metric, time))
FROM metrics.hourly_values_by_name WHERE time >= %s AND time < %s
"""


def dashboard(url: str) -> tuple:
    return query(url, DASHBOARD, WINDOW)[0]


class Reader(threading.Thread):
    """A dashboard refreshing as fast as it can, reconnecting when the server goes away."""

    def __init__(self, url: str):
        super().__init__(daemon=True, name="faults dashboard reader")
        self.url = url
        self.seen: list[tuple] = []
        self.failed_reads = 0
        self._done = threading.Event()

    def run(self) -> None:
        conn = None
        while not self._done.is_set():
            try:
                if conn is None:
                    conn = connect(self.url, application_name="faults dashboard")
                    conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(DASHBOARD, WINDOW)
                    self.seen.append(cur.fetchone())
            except (psycopg2.Error, MetricsPlatformError):
                self.failed_reads += 1
                if conn is not None:
                    conn.close()
                conn = None
                self._done.wait(0.05)
            self._done.wait(0.005)
        if conn is not None:
            conn.close()

    def reads(self) -> int:
        return len(self.seen)

    def wait_for_reads(self, count: int) -> None:
        wait_until(lambda: len(self.seen) >= count, "the dashboard never read")

    def stop(self) -> list[tuple]:
        self._done.set()
        self.join(timeout=PATIENCE)
        assert not self.is_alive()
        return self.seen

    def __enter__(self) -> Reader:
        self.start()
        self.wait_for_reads(1)
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def wait_until(predicate: Callable[[], object], what: str, child: Child | None = None):
    """Poll until `predicate` returns something truthy; fail (not hang) if it never does."""
    deadline = time.monotonic() + PATIENCE
    while True:
        value = predicate()
        if value:
            return value
        if child is not None and child.process.poll() is not None:
            pytest.fail(f"{what}: the run process exited first\n{child.output()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (gave up after {PATIENCE} s)")
        time.sleep(0.02)


# --- Databases ------------------------------------------------------------------------------------


def admin(server: EmbeddedPostgres):
    conn = psycopg2.connect(server.url("postgres").replace("postgresql+psycopg2", "postgresql"))
    conn.autocommit = True
    return conn


def dbname(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def clone(server: EmbeddedPostgres, url: str) -> str:
    """A new database holding exactly what the database at `url` holds."""
    name = f"fault_{uuid.uuid4().hex[:10]}"
    conn = admin(server)
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(dbname(url))
                )
            )
    finally:
        conn.close()
    return server.url(name)


def product_database(server: EmbeddedPostgres, variant: str | None) -> str:
    url = new_database(server, f"product_{variant or 'a'}")
    seed_product_database(url, now=datetime(2026, 3, 11, tzinfo=UTC), days=2, users=300)
    if variant:
        execute(url, MORE_ROWS, VARIANTS[variant])
    return url


def run_in_process(store: str, product: str, *, partition_key: str | None = None, **kwargs):
    """The hourly job over RANGE (or one hour), in this process, as the definitions build it
    (on an in-memory instance: nothing here reads its events afterwards)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv(DATABASE_URL_ENV, store)
        env.setenv(PRODUCT_DATABASE_URL_ENV, product)
        job = build_definitions(SETTINGS).resolve_job_def(HOURLY_JOB)
        with dg.DagsterInstance.ephemeral() as instance:
            return job.execute_in_process(
                instance=instance,
                partition_key=partition_key,
                tags=None if partition_key else dict(zip(RANGE_TAGS, RANGE)),
                run_config=QUIET,
                **kwargs,
            )


@dataclass(frozen=True)
class Sources:
    """Product databases with source data A, B and C, and a clean run of each into a store."""

    product: dict[str, str]
    clean: dict[str, str]
    tables: dict[str, dict]


@pytest.fixture(scope="module")
def sources(postgres_server) -> Sources:
    product, clean, tables = {}, {}, {}
    for variant in ("a", "b", "c"):
        product[variant] = product_database(postgres_server, None if variant == "a" else variant)
        clean[variant] = new_database(postgres_server, f"clean_{variant}")
        assert run_in_process(clean[variant], product[variant]).success
        tables[variant] = snapshot(clean[variant])
    for variant in ("b", "c"):
        # Every table of every run differs from A's, in every hour of the window.
        for table in tables["a"]:
            if table not in ("metrics.metric", "metrics.hourly_kpis"):
                assert tables[variant][table] != tables["a"][table], table
    assert tables["b"]["metrics.metric"] == tables["a"]["metrics.metric"]
    return Sources(product, clean, tables)


# --- The gate: holding a writer inside its transaction -------------------------------------------

GATE = (4712, 99)  # the advisory lock (two int4 keys) the test holds and the trigger waits for
GATE_SQL = """
CREATE OR REPLACE FUNCTION public.faults_gate() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(nullif(current_setting('faults.rows', true), ''), '0')::integer + 1;
BEGIN
    PERFORM set_config('faults.rows', n::text, true);  -- counted per transaction
    IF n = TG_ARGV[0]::integer THEN
        PERFORM pg_advisory_xact_lock_shared(%(a)s, %(b)s);
    END IF;
    RETURN NEW;
END $$;
"""


def install_gate(url: str, table: str, at_row: int) -> None:
    """Writers of `table` stop before inserting their `at_row`-th row while the gate is shut."""
    schema, name = table.split(".")
    execute(url, GATE_SQL, {"a": GATE[0], "b": GATE[1]})
    execute(
        url,
        sql.SQL(
            "CREATE TRIGGER faults_gate BEFORE INSERT ON {} FOR EACH ROW "
            "EXECUTE FUNCTION public.faults_gate({})"
        ).format(sql.Identifier(schema, name), sql.Literal(str(at_row))),
    )


def remove_gate(url: str, table: str) -> None:
    schema, name = table.split(".")
    execute(
        url,
        sql.SQL("DROP TRIGGER faults_gate ON {}").format(sql.Identifier(schema, name)),
    )


class Gate:
    def __init__(self, url: str):
        self.conn = connect(url, application_name="faults gate")
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s, %s)", GATE)

    def open(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s, %s)", GATE)

    def close(self) -> None:
        self.conn.close()


@contextmanager
def shut_gate(url: str) -> Iterator[Gate]:
    gate = Gate(url)
    try:
        yield gate
    finally:
        gate.close()


def waiting_at_gate(url: str) -> list[int]:
    """Backends of this database stopped at the gate."""
    rows = query(
        url,
        """SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
           WHERE d.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted
             AND l.classid = %s AND l.objid = %s AND l.objsubid = 2""",
        GATE,
    )
    return [row[0] for row in rows]


def waiting_for_a_writer(url: str) -> list[int]:
    """Backends of this database waiting for another writer of the same table (its lock: on the
    table, or on the name of a table being created)."""
    rows = query(
        url,
        """SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
           WHERE d.datname = current_database() AND NOT l.granted
             AND (l.locktype = 'relation' OR l.locktype = 'advisory' AND l.objsubid = 1)""",
    )
    return [row[0] for row in rows]


def backend_gone(url: str, pid: int) -> bool:
    return query(url, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)) == [(0,)]


def advisory_locks(url: str) -> list[tuple]:
    return query(
        url,
        """SELECT l.pid, l.objid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
           WHERE d.datname = current_database() AND l.locktype = 'advisory'""",
    )


# --- Runs in a process of their own ----------------------------------------------------------------


@pytest.fixture
def scratch(tmp_path) -> Iterator[Path]:
    """A folder for the runs' Dagster instances, in memory where the system has a tmpfs: their
    SQLite event logs commit every event, which is slow on a real disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="metrics_platform_faults_", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


RUNNER = r"""
import json, sys, time
from pathlib import Path
import dagster as dg

args = json.loads(sys.argv[1])
if args["pause_at"]:
    # Stops where the hourly values start, after every raw asset has materialized.
    from metrics_platform.defs.metric_store import MetricStore

    def paused(self, names):
        Path(args["pause_at"]).write_text("hourly values started")
        time.sleep(600)

    MetricStore.metric_ids = paused

from metrics_platform.definitions import build_definitions

job = build_definitions(args["settings"]).resolve_job_def(args["job"])
with dg.DagsterInstance.get() as instance:
    result = job.execute_in_process(
        instance=instance,
        partition_key=args["partition_key"],
        tags=args["tags"],
        run_config=args["run_config"],
        raise_on_error=False,
    )
print("RESULT " + json.dumps({"run_id": result.run_id, "success": result.success}))
"""


class Child:
    """The hourly job in a process of its own, with its own Dagster instance (SQLite)."""

    def __init__(
        self,
        folder: Path,
        store: str,
        product: str,
        *,
        partition_key: str | None = None,
        pause_at: Path | None = None,
    ):
        self.home = folder / f"dagster_home_{uuid.uuid4().hex[:6]}"
        self.home.mkdir(parents=True)
        (self.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.log = self.home / "output.txt"
        args = {
            "settings": SETTINGS,
            "job": HOURLY_JOB,
            "partition_key": partition_key,
            "tags": None if partition_key else dict(zip(RANGE_TAGS, RANGE)),
            "run_config": QUIET,
            "pause_at": str(pause_at) if pause_at else None,
        }
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
        env = {
            **os.environ,
            "PYTHONPATH": path,
            "DAGSTER_HOME": str(self.home),
            DATABASE_URL_ENV: store,
            PRODUCT_DATABASE_URL_ENV: product,
        }
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", RUNNER, json.dumps(args)],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=PATIENCE)
        assert self.process.returncode == -signal.SIGKILL

    def finish(self) -> dict:
        """Wait for the run to end (bounded) and return its outcome."""
        try:
            self.process.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the run did not finish within {PATIENCE} s\n{self.output()}")
        lines = [line for line in self.output().splitlines() if line.startswith("RESULT ")]
        assert self.process.returncode == 0 and lines, self.output()
        return json.loads(lines[-1].removeprefix("RESULT "))

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            yield instance

    def stop_if_running(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def children() -> Iterator[list[Child]]:
    """Runs started in the block; any still running at its end (a failed test) are stopped."""
    started: list[Child] = []
    try:
        yield started
    finally:
        for child in started:
            child.stop_if_running()


def kill_at_the_gate(child: Child, url: str, gate: Gate) -> None:
    """SIGKILL the run while its write waits at the gate, then let its orphaned backend go on:
    it finishes the statement, finds its client gone, and rolls the transaction back."""
    (backend,) = wait_until(lambda: waiting_at_gate(url), "the write never reached the gate", child)
    child.kill()
    gate.open()
    wait_until(lambda: backend_gone(url, backend), "the killed run's backend stayed")


# --- A run killed mid-write ------------------------------------------------------------------------


def test_a_run_killed_while_writing_one_hour_changes_nothing_and_a_rerun_converges(
    sources, postgres_server, scratch
):
    store = clone(postgres_server, sources.clean["a"])  # the store as A's run left it
    before = snapshot(store)
    after = with_hour_from(before, sources.tables["b"], HOUR_START)  # what the re-run must give
    table = "raw.product_db_row_counts"
    install_gate(store, table, at_row=2)  # of the hour's 3 rows
    with children() as started, shut_gate(store) as gate:
        started.append(Child(scratch, store, sources.product["b"], partition_key=HOUR))
        kill_at_the_gate(started[0], store, gate)

    killed = snapshot(store)
    assert killed[table] == before[table]
    for name, rows in killed.items():  # each table wholly before or wholly after, never half
        assert rows in (before[name], after[name]), name
    assert killed["metrics.hourly_values"] == before["metrics.hourly_values"]
    assert advisory_locks(store) == []  # nothing left held

    remove_gate(store, table)
    assert run_in_process(store, sources.product["b"], partition_key=HOUR).success
    assert snapshot(store) == after


def test_a_run_killed_while_writing_a_range_changes_nothing_and_a_rerun_converges(
    sources, postgres_server, scratch
):
    store = clone(postgres_server, sources.clean["a"])
    a, b = sources.tables["a"], sources.tables["b"]
    table = "metrics.hourly_values"
    install_gate(store, table, at_row=len(b[table]) // 2)
    with Reader(store) as reader:
        with children() as started, shut_gate(store) as gate:
            started.append(Child(scratch, store, sources.product["b"]))
            kill_at_the_gate(started[0], store, gate)
        reader.wait_for_reads(reader.reads() + 1)  # a read after the rollback
    seen = set(reader.seen)

    killed = snapshot(store)
    # The raw assets committed before the kill; the range being written kept all its old rows.
    for name in ("raw.product_db_row_counts", "raw.crawler_status", "raw.events_hourly"):
        assert killed[name] == b[name], name
    assert killed[table] == a[table]
    assert killed["metrics.metric"] == a["metrics.metric"]
    assert seen == {dashboard(sources.clean["a"])}  # never a partial window
    assert advisory_locks(store) == []

    remove_gate(store, table)
    assert run_in_process(store, sources.product["b"]).success
    assert snapshot(store) == b


def test_a_run_killed_between_the_raw_assets_and_the_hourly_values_converges_on_rerun(
    sources, postgres_server, scratch
):
    store = clone(postgres_server, sources.clean["a"])
    a, b = sources.tables["a"], sources.tables["b"]
    marker = scratch / "paused"
    with children() as started:
        child = Child(scratch, store, sources.product["b"], pause_at=marker)
        started.append(child)
        wait_until(marker.exists, "the hourly values never started", child)
        child.kill()

    with child.instance() as instance:
        (record,) = instance.get_run_records()
        materialized = {
            (event.asset_key.to_user_string(), event.partition)
            for event in (
                entry.dagster_event.event_specific_data.materialization
                for entry in instance.all_logs(
                    record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
                )
            )
        }
    keys = [f"2026-03-10-{hour:02d}:00" for hour in range(12)]  # the hours of RANGE
    raw = ("raw/product_db_row_counts", "raw/crawler_status", "raw/events_hourly")
    assert materialized == {(asset, key) for asset in raw for key in keys}  # and nothing else

    killed = snapshot(store)
    for name in ("raw.product_db_row_counts", "raw.crawler_status", "raw.events_hourly"):
        assert killed[name] == b[name], name
    assert killed["metrics.hourly_values"] == a["metrics.hourly_values"]

    assert run_in_process(store, sources.product["b"]).success
    assert snapshot(store) == b


# --- The server restarted mid-run ------------------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test's own, free to be restarted."""
    with throwaway_server("metrics_platform_pg_restart_") as (server, _):
        yield server


def step_failures(child: Child) -> dict[str, dg.DagsterEvent]:
    with child.instance() as instance:
        (record,) = instance.get_run_records()
        assert record.dagster_run.status == dg.DagsterRunStatus.FAILURE
        return {
            entry.dagster_event.step_key: entry.dagster_event
            for entry in instance.all_logs(
                record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
            )
        }


def error_chain(event: dg.DagsterEvent) -> str:
    """The failure's message and those of every error it was raised from or during."""
    texts, pending = [], [event.event_specific_data.error]
    while pending:
        error = pending.pop()
        if error is not None:
            texts.append(error.message)
            pending += [error.cause, error.context]
    return "\n".join(texts)


SERVER_WENT_AWAY = ("terminating connection due to administrator command", "server closed the")


def test_a_server_restart_mid_run_fails_clearly_shows_no_partial_state_and_converges(
    sources, own_server, scratch
):
    a, b = sources.tables["a"], sources.tables["b"]
    product_a, product_b = (product_database(own_server, v) for v in (None, "b"))
    store = new_database(own_server, "store")
    assert run_in_process(store, product_a).success
    assert snapshot(store) == a  # the same source data gives the same store on any server
    table = "metrics.hourly_values"
    install_gate(store, table, at_row=len(b[table]) // 2)

    with Reader(store) as reader:
        with children() as started, shut_gate(store):
            child = Child(scratch, store, product_b)
            started.append(child)
            wait_until(lambda: waiting_at_gate(store), "the write never reached the gate", child)
            own_server.restart()  # a fast shutdown ends every session, the writer's included
            outcome = child.finish()

        assert not outcome["success"]
        failures = step_failures(child)
        assert set(failures) == {"metrics__hourly_values"}  # the raw assets had landed
        message = error_chain(failures["metrics__hourly_values"])
        assert 'handling output "result" of step "metrics__hourly_values"' in message
        assert any(cause in message for cause in SERVER_WENT_AWAY), message
        reader.wait_for_reads(reader.reads() + 1)  # a read of the restarted server
        restarted = snapshot(store)
        assert restarted[table] == a[table]
        for name in ("raw.product_db_row_counts", "raw.crawler_status", "raw.events_hourly"):
            assert restarted[name] == b[name], name

        remove_gate(store, table)
        assert run_in_process(store, product_b).success
        reader.wait_for_reads(reader.reads() + 1)
    assert snapshot(store) == b
    seen, before, after = reader.seen, dashboard(sources.clean["a"]), dashboard(sources.clean["b"])
    assert reader.failed_reads > 0  # the dashboard was reading while the server went away
    assert set(seen) == {before, after}  # and saw the old window or the new one, nothing else
    switched = seen.index(after)
    assert seen[:switched] == [before] * switched  # old until the re-run committed,
    assert seen[switched:] == [after] * (len(seen) - switched)  # then new, for good


def test_a_write_cut_off_by_the_server_fails_with_the_servers_reason(store_url):
    from metrics_platform.lib.postgres_io import PostgresDbClient

    with pytest.raises(psycopg2.Error) as caught:
        with PostgresDbClient(store_url).connect(None, None) as conn:
            execute(store_url, "SELECT pg_terminate_backend(%s)", (conn.get_backend_pid(),))
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
    assert any(cause in str(caught.value) for cause in SERVER_WENT_AWAY), str(caught.value)


# --- Two runs of the same hours at once ------------------------------------------------------------


def test_two_runs_of_the_same_hours_at_once_take_turns_and_the_last_one_stays_whole(
    sources, postgres_server, scratch
):
    """A backfill is half way through writing the hourly values when a second run of the same
    hours (other source data) reaches the same table: the second waits, then replaces the
    first's complete result with its own complete result."""
    store = clone(postgres_server, sources.clean["a"])
    table = "metrics.hourly_values"
    install_gate(store, table, at_row=len(sources.tables["b"][table]) // 2)
    with Reader(store) as reader:
        with children() as started, shut_gate(store) as gate:
            backfill = Child(scratch, store, sources.product["b"])
            started.append(backfill)
            wait_until(
                lambda: waiting_at_gate(store), "the backfill never reached the gate", backfill
            )
            tick = Child(scratch, store, sources.product["c"])
            started.append(tick)
            wait_until(lambda: waiting_for_a_writer(store), "the second run never waited", tick)
            gate.open()
            outcomes = [backfill.finish(), tick.finish()]
        reader.wait_for_reads(reader.reads() + 1)
    assert [outcome["success"] for outcome in outcomes] == [True, True]
    seen = reader.seen

    assert snapshot(store) == sources.tables["c"]
    states = [dashboard(sources.clean[v]) for v in "abc"]
    assert set(seen) <= set(states)  # only ever a whole window of one run
    order = [states.index(state) for state in seen]
    assert order == sorted(order) and order[0] == 0 and order[-1] == 2
    assert advisory_locks(store) == []


SOURCE_PREFIXES = {"product_db": "objects.", "crawlers": "spider.", "events": "events."}


def test_two_runs_of_the_same_hours_racing_freely_both_finish_without_duplicates_or_mixes(
    sources, postgres_server, scratch
):
    store = clone(postgres_server, sources.clean["a"])
    b, c = sources.tables["b"], sources.tables["c"]
    with children() as started:
        started += [Child(scratch, store, sources.product[v]) for v in "bc"]
        outcomes = [child.finish() for child in started]
    assert [outcome["success"] for outcome in outcomes] == [True, True]
    final = snapshot(store)  # which also checks that no row is there twice
    for name, rows in final.items():
        if name != "metrics.hourly_values":
            assert rows in (b[name], c[name]), name
    # The hourly values combine the sources as the last writer read them: each source's rows
    # are one run's, whole.
    for prefix in SOURCE_PREFIXES.values():
        mine = [row for row in final["metrics.hourly_values"] if row[0].startswith(prefix)]
        assert mine in (
            [row for row in b["metrics.hourly_values"] if row[0].startswith(prefix)],
            [row for row in c["metrics.hourly_values"] if row[0].startswith(prefix)],
        ), prefix
    assert len(final["metrics.hourly_values"]) == len(b["metrics.hourly_values"])
    assert advisory_locks(store) == []


# --- Sources that misbehave -------------------------------------------------------------------------

FAULT_RANGE = ("2026-03-10-04:00", "2026-03-10-05:00")
FAULT_HOURS = [datetime(2026, 3, 10, 4, tzinfo=UTC), datetime(2026, 3, 10, 5, tzinfo=UTC)]
PARIS_HOUR = "2026031006"  # 05:00 UTC in the GA4 sample property's time zone
REQUESTS_QUERY = "sum by (job) (increase(http_requests_total[1h]))"


def source_run(store: str, product: str, ga4_server, prometheus_stub, **ga4_settings):
    """GA4, Prometheus and the product database for FAULT_RANGE, then the hourly values, in one
    run: with short timeouts, few in-source retries, and the assets' own retry policies."""
    from metrics_platform.defs.metric_store import MetricStore
    from metrics_platform.defs.metrics.assets import build_hourly_values
    from metrics_platform.defs.sources.ga4.assets import GA4_REPORT_KEY, ga4_report
    from metrics_platform.defs.sources.ga4.resource import GoogleAnalytics
    from metrics_platform.defs.sources.product_db.assets import (
        ROW_COUNTS_KEY,
        product_db_row_counts,
    )
    from metrics_platform.defs.sources.product_db.resource import CountedTable, ProductDatabase
    from metrics_platform.defs.sources.prometheus.assets import (
        SERIES_KEY,
        build_prometheus_series,
    )
    from metrics_platform.defs.sources.prometheus.resource import Prometheus, PrometheusQuery
    from metrics_platform.lib.postgres_io import PostgresPandasIOManager

    ga4 = GoogleAnalytics(
        **{
            "property_id": "123456789",
            "metrics": {"sessions": "ga.sessions"},
            "endpoint": ga4_server.url,
            "timeout_seconds": 0.3,
            "max_retries": 1,
            "backoff_seconds": 0.0,
            **ga4_settings,
        }
    )
    prometheus = Prometheus(
        base_url=prometheus_stub.url,
        queries=[
            PrometheusQuery(query=REQUESTS_QUERY, metric="http.requests.{job}", aggregation="sum")
        ],
        timeout=0.3,
        max_retries=1,
        retry_backoff=0.0,
    )
    resources = {
        "io_manager": PostgresPandasIOManager(url=store),
        "metric_store": MetricStore(url=store),
        "ga4": ga4,
        "prometheus": prometheus,
        "product_db": ProductDatabase(
            url=product, tables=[CountedTable(table="users", created_at_column="created_at")]
        ),
    }
    assets = [
        ga4_report,
        build_prometheus_series(),
        product_db_row_counts,
        build_hourly_values([GA4_REPORT_KEY, SERIES_KEY, ROW_COUNTS_KEY]),
    ]
    with dg.DagsterInstance.ephemeral() as instance:
        return dg.materialize(
            assets,
            instance=instance,
            resources=resources,
            tags=dict(zip(RANGE_TAGS, FAULT_RANGE)),
            run_config=QUIET,
            raise_on_error=False,
        )


@pytest.fixture
def no_retry_delay(monkeypatch):
    """The assets' retry policies run as declared, without waiting between attempts."""
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda policy, attempt: 0)


def ga4_row_edit(change: Callable[[dict, dict], None]) -> Callable[[dict], dict]:
    """A change to the sample report's row of 05:00 UTC (and to the report around it)."""

    def edit(report: dict) -> dict:
        (row,) = [r for r in report["rows"] if r["dimensionValues"][0]["value"] == PARIS_HOUR]
        change(report, row)
        return report

    return edit


def _float_value(text: str):
    def change(report, row):
        report["metricHeaders"][0]["type"] = "TYPE_FLOAT"
        row["metricValues"][0]["value"] = text

    return change


def _prometheus_value(text: str):
    return lambda params: (200, PrometheusStub.matrix(params, lambda at: text))


def _without(key: str):
    return lambda report: {k: v for k, v in report.items() if k != key}


@dataclass(frozen=True)
class Fault:
    ga4: dict  # attributes of the GA4 sample server (`fallback`, `script`) and resource settings
    prometheus: dict  # attributes of the Prometheus stub (`reply`, `delay`)
    transient: bool
    ga4_cause: str
    prometheus_cause: str


def _faults() -> dict[str, Fault]:
    from metrics_platform.demo.ga4_sample_server import Reply, api_error

    return {
        "time out": Fault(
            {"fallback": Reply(delay=30)},
            {"delay": 30},
            True,
            "the GA4 Data API could not be reached: TimeoutError (2 tries)",
            "no answer from http://127.0.0.1:{port} within 0.3s (attempts: 2)",
        ),
        "5xx": Fault(
            {"fallback": api_error(503, "The service is unavailable.")},
            {"reply": lambda params: (503, b"upstream connect error")},
            True,
            "the GA4 Data API answered 503: The service is unavailable. (2 tries)",
            "HTTP 503 from the server (attempts: 2)",
        ),
        "200 with garbage": Fault(
            {"fallback": Reply(body=b"<html>Welcome to nginx!</html>")},
            {"reply": lambda params: (200, b"<html>Welcome to nginx!</html>")},
            False,
            "the GA4 Data API answered with something that is not a JSON object",
            "the answer is not JSON: '<html>Welcome to nginx!</html>'",
        ),
        "missing fields": Fault(
            {"fallback": Reply(edit=_without("metadata"))},
            {"reply": lambda params: (200, {"status": "success", "data": {"result": []}})},
            False,
            "page 1: `metadata` is missing or not an object",
            "expected a matrix result, got None",
        ),
        "extra fields": Fault(
            {
                "fallback": Reply(
                    edit=lambda report: {
                        **report,
                        "metricHeaders": [
                            *report["metricHeaders"],
                            {"name": "screenPageViews", "type": "TYPE_INTEGER"},
                        ],
                    }
                )
            },
            {
                "reply": lambda params: (
                    200,
                    {
                        "status": "success",
                        "data": {
                            "resultType": "matrix",
                            "result": [{"metric": {"instance": "a"}, "values": []}],
                        },
                    },
                )
            },
            False,
            "page 1 metricHeaders: metric 'screenPageViews' was not asked for",
            "a series has no label 'job', which metric 'http.requests.{job}' needs",
        ),
        "NaN and Inf": Fault(
            {"fallback": Reply(edit=ga4_row_edit(_float_value("NaN")))},
            {"reply": _prometheus_value("+Inf")},
            False,
            "non-finite value",
            "value +Inf is infinite; refusing to store it",
        ),
        "absurd values": Fault(
            {"fallback": Reply(edit=ga4_row_edit(_float_value("1e400")))},
            {"reply": _prometheus_value("1e999")},
            False,
            "non-finite value",
            "value 1e999 is infinite; refusing to store it",
        ),
        "a page that ends early, a refused query": Fault(
            {
                "script": [Reply(), Reply(edit=lambda report: {**report, "rows": []})],
                "page_size": 10,
            },
            {
                "reply": lambda params: (
                    400,
                    {"status": "error", "errorType": "bad_data", "error": "parse error"},
                )
            },
            False,
            "GA page ended early: 10 of 72 rows read",
            "Prometheus answered bad_data: parse error",
        ),
    }


FAULTS = _faults()


def rows_of(store: str, table: str) -> list[tuple]:
    if query(store, "SELECT to_regclass(%s) IS NULL", (table,)) == [(True,)]:
        return []
    return query(store, f"SELECT metric, hour, value FROM {table} ORDER BY 1, 2")


def apply_fault(fault: Fault, ga4_server, prometheus_stub) -> dict:
    settings_ = dict(fault.ga4)
    if "fallback" in settings_:
        ga4_server.fallback = settings_.pop("fallback")
    ga4_server.script.extend(settings_.pop("script", []))
    for name, value in fault.prometheus.items():
        setattr(prometheus_stub, name, value)
    return settings_


@pytest.mark.parametrize("name", list(FAULTS))
def test_a_source_that_misbehaves_fails_alone_clearly_and_stores_nothing(
    name, sources, store_url, ga4_server, prometheus_stub, no_retry_delay
):
    fault = FAULTS[name]
    result = source_run(
        store_url,
        sources.product["a"],
        ga4_server,
        prometheus_stub,
        **apply_fault(fault, ga4_server, prometheus_stub),
    )
    assert not result.success
    failures = {event.step_key: event for event in result.get_step_failure_events()}
    assert set(failures) == {"raw__ga4_report", "raw__prometheus_series"}
    port = str(urlsplit(prometheus_stub.url).port)
    for source, step, cause in (
        ("ga4", "raw__ga4_report", fault.ga4_cause),
        ("prometheus", "raw__prometheus_series", fault.prometheus_cause.replace("{port}", port)),
    ):
        failure = failures[step].event_specific_data.user_failure_data
        assert failure is not None, error_chain(failures[step])  # the source's own Failure
        assert failure.description.startswith(f"source {source!r}: "), failure.description
        assert cause in failure.description, failure.description
        metadata = {key: value.value for key, value in failure.metadata.items()}
        assert metadata["source"] == source and cause in metadata["cause"]
        assert metadata["retryable"] is fault.transient
        # A transient cause is retried by the asset's policy (twice), anything else never.
        retries = [
            event
            for event in result.all_events
            if event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY and event.step_key == step
        ]
        assert len(retries) == (2 if fault.transient else 0), step
    attempts = 3 if fault.transient else 1
    tries = 2 if fault.transient else 1  # each attempt asks the source up to twice
    assert len(prometheus_stub.requests) == attempts * tries
    # (The sample server notes a request on arrival in `authorizations`.)
    pages = 2 if name.startswith("a page") else 1
    assert len(ga4_server.authorizations) == attempts * tries * pages

    # The product database is unaffected: it landed both hours in the same run...
    landed = {
        (event.asset_key.to_user_string(), event.partition)
        for event in result.get_asset_materialization_events()
    }
    assert landed == {("raw/product_db_row_counts", key) for key in FAULT_RANGE}
    assert len(rows_of(store_url, "raw.product_db_row_counts")) == 2
    # ... and nothing was invented for the sources that failed: no row, no zero.
    assert rows_of(store_url, "raw.ga4_report") == []
    assert rows_of(store_url, "raw.prometheus_series") == []
    assert query(store_url, "SELECT count(*) FROM metrics.hourly_values") == [(0,)]


def test_extra_fields_nan_and_negative_values_are_neither_invented_nor_hidden(
    sources, store_url, ga4_server, prometheus_stub, no_retry_delay
):
    """Fields nobody asked about are ignored; a NaN sample is dropped and counted (no zero in its
    place); a negative counter is stored as reported and fails the ERROR checks."""
    from metrics_platform.demo.ga4_sample_server import Reply

    def negative(report, row):
        row["metricValues"][0]["value"] = "-7"

    ga4_server.fallback = Reply(
        edit=lambda report: {**ga4_row_edit(negative)(report), "propertyQuota": {"x": 1}}
    )
    nan_at = int(FAULT_HOURS[1].timestamp()) + 3600  # the sample of 05:00 UTC

    def with_nan_and_extras(params):
        body = PrometheusStub.matrix(params, lambda at: "5")
        api = body["data"]["result"][0]
        api["values"] = [[at, "NaN" if at == nan_at else v] for at, v in api["values"]]
        api["metric"]["extra_label"] = "ignored"
        body["warnings"] = ["this answer has fields the platform does not read"]
        return 200, body

    prometheus_stub.reply = with_nan_and_extras
    result = source_run(store_url, sources.product["a"], ga4_server, prometheus_stub)
    assert result.success

    prometheus_rows = rows_of(store_url, "raw.prometheus_series")
    assert prometheus_rows == [
        ("http.requests.api", FAULT_HOURS[0], 5.0),
        ("http.requests.web", FAULT_HOURS[0], 5.0),
        ("http.requests.web", FAULT_HOURS[1], 5.0),
    ]
    metadata = result.asset_materializations_for_node("raw__prometheus_series")[0].metadata
    assert metadata["rows_rejected"].value == 1
    ga = dict(((m, h), v) for m, h, v in rows_of(store_url, "raw.ga4_report"))
    assert ga[("ga.sessions", FAULT_HOURS[1])] == -7.0
    hourly = query(
        store_url,
        "SELECT metric, time, value FROM metrics.hourly_values_by_name "
        "WHERE metric LIKE 'http.%%' OR metric LIKE 'ga.%%' ORDER BY 1, 2",
    )
    assert ("http.requests.api", FAULT_HOURS[1]) not in {(m, t) for m, t, _ in hourly}
    assert ("ga.sessions", FAULT_HOURS[1], -7.0) in hourly
    checks = {
        (check.asset_key.to_user_string(), check.check_name): (check.passed, check.severity)
        for check in result.get_asset_check_evaluations()
    }
    error = dg.AssetCheckSeverity.ERROR
    assert checks[("raw/ga4_report", "values_non_negative")] == (False, error)
    assert checks[("metrics/hourly_values", "counters_non_negative")] == (False, error)
    assert checks[("raw/prometheus_series", "sums_non_negative")] == (True, error)


def test_a_source_failure_names_the_partition(
    sources, store_url, ga4_server, prometheus_stub, no_retry_delay
):
    apply_fault(FAULTS["200 with garbage"], ga4_server, prometheus_stub)
    result = source_run(store_url, sources.product["a"], ga4_server, prometheus_stub)
    for event in result.get_step_failure_events():
        failure = event.event_specific_data.user_failure_data
        texts = [failure.description, *(str(v.value) for v in failure.metadata.values())]
        assert any(FAULT_RANGE[0] in text and FAULT_RANGE[1] in text for text in texts), texts


def test_an_absurdly_large_ga4_integer_fails_as_the_sources_fault_without_retries(
    sources, store_url, ga4_server, prometheus_stub, no_retry_delay
):
    from metrics_platform.demo.ga4_sample_server import Reply

    def huge(report, row):
        row["metricValues"][0]["value"] = "9" * 400

    ga4_server.fallback = Reply(edit=ga4_row_edit(huge))
    result = source_run(store_url, sources.product["a"], ga4_server, prometheus_stub)
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "raw__ga4_report"
    assert len(ga4_server.requests) == 1  # not retried: the same answer would come back
    data = failure.event_specific_data.user_failure_data
    assert data is not None and data.description.startswith("source 'ga4': ")
    assert rows_of(store_url, "raw.ga4_report") == []


# --- Normalizers fed anything --------------------------------------------------------------------
#
# Each normalizer gets payloads shaped like its source's (rows of the source's query, pages of
# the API) with well-formed values, which it must turn into exactly the rows they describe, and
# payloads with any values or of any shape, which it must turn into rows or refuse with the
# project's own error, never with an exception from deep inside pandas. The searches are
# derandomized (the same examples every time) and small, so the suite stays fast; the value
# ranges known to break a normalizer have their own tests below, marked as known bugs.

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
FUZZ_WINDOW = (datetime(2026, 3, 10, tzinfo=UTC), datetime(2026, 3, 11, tzinfo=UTC))
# pandas notes that it parses a string hour "individually, falling back to dateutil".
STRING_HOURS = pytest.mark.filterwarnings("ignore:Could not infer format:UserWarning")

# Numbers as an API writes them, and text that is almost one (no integer beyond the float range:
# see test_values_beyond_the_float_range_are_the_sources_fault).
number_texts = st.one_of(
    st.integers(-(10**300), 10**300).map(str),
    st.floats().map(repr),
    st.text(alphabet="0123456789.-+eEinfaINFA_ ", max_size=12),
)
instants = st.one_of(
    st.none(),
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(),
    st.dates(),
    st.integers(-(2**62), 2**62),
    st.floats(),
    st.text(max_size=10),
)
counts = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**63),
    st.floats(),
    st.booleans(),
    st.text(max_size=5),
    st.decimals(allow_nan=True),
)
window_hours = st.integers(0, 23).map(lambda index: FUZZ_WINDOW[0] + index * ONE_HOUR)
metric_names = st.from_regex(r"[a-z][a-z0-9_]{0,6}(\.[a-z0-9_]{1,6}){0,2}", fullmatch=True)
finite = st.floats(min_value=0, max_value=1e15)


def valid(strategy):
    return strategy.map(lambda payload: (True, payload))


def anything(strategy):
    return strategy.map(lambda payload: (False, payload))


def normalizes(is_valid: bool, normalize: Callable[[], object]):
    """The rows of a well-formed payload; for any other, the rows or None when refused."""
    try:
        result = normalize()
    except MetricsPlatformError:
        if is_valid:
            raise
        return None
    frame = result[0] if isinstance(result, tuple) else result
    assert list(frame.columns)[1:] == ["metric", "value"]
    assert frame["value"].notna().all()
    return result


@st.composite
def valid_ga4_pages(draw) -> dict:
    from zoneinfo import ZoneInfo

    kind = draw(st.sampled_from(["TYPE_INTEGER", "TYPE_FLOAT", "TYPE_SECONDS"]))
    hours = draw(st.lists(st.integers(-3, 26), unique=True, max_size=6))  # a few outside
    paris = ZoneInfo("Europe/Paris")
    rows = [
        {
            "dimensionValues": [
                {"value": (FUZZ_WINDOW[0] + h * ONE_HOUR).astimezone(paris).strftime("%Y%m%d%H")}
            ],
            "metricValues": [
                {
                    "value": str(draw(st.integers(0, 10**9)))
                    if kind == "TYPE_INTEGER"
                    else repr(draw(finite))
                }
            ],
        }
        for h in hours
    ]
    return {
        "dimensionHeaders": [{"name": "dateHour"}],
        "metricHeaders": [{"name": "sessions", "type": kind}],
        "rows": rows,
        "rowCount": len(rows),
        "metadata": {"timeZone": "Europe/Paris", "currencyCode": "EUR"},
    }


@st.composite
def ga4_pages(draw) -> dict:
    metrics = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["sessions", "newUsers"]),
                st.sampled_from(
                    ["TYPE_INTEGER", "TYPE_FLOAT", "TYPE_MILLISECONDS", "TYPE_HOURS", "TYPE_BOGUS"]
                ),
            ),
            min_size=1,
            max_size=2,
            unique_by=lambda metric: metric[0],
        )
    )
    dimensions = draw(st.sampled_from([["dateHour"], ["deviceCategory", "dateHour"]]))
    date_hours = st.one_of(
        st.datetimes(min_value=datetime(2026, 3, 8), max_value=datetime(2026, 3, 13)).map(
            lambda at: at.strftime("%Y%m%d%H")
        ),
        # (Not the first days of year 1: see test_values_beyond_the_float_range_...)
        st.text(alphabet="0123456789", min_size=10, max_size=10).filter(
            lambda text: not text.startswith("0001")
        ),
        st.text(max_size=12),
    )
    rows = [
        {
            "dimensionValues": [
                {"value": draw(date_hours if name == "dateHour" else st.text(max_size=6))}
                for name in dimensions
            ],
            "metricValues": [{"value": draw(number_texts)} for _ in metrics],
        }
        for _ in range(draw(st.integers(0, 4)))
    ]
    page = {
        "dimensionHeaders": [{"name": name} for name in dimensions],
        "metricHeaders": [{"name": name, "type": kind} for name, kind in metrics],
        "rows": rows,
        "rowCount": len(rows),
        "metadata": {
            "timeZone": draw(st.sampled_from(["Europe/Paris", "UTC", "Asia/Kolkata", "Nope/Zone"])),
            "currencyCode": "EUR",
        },
    }
    if draw(st.booleans()):  # and one part of it replaced by anything
        part = draw(st.sampled_from(["metadata", "rows", "metricHeaders", "dimensionHeaders"]))
        page[part] = draw(json_values)
    return page


@FUZZ
@given(
    st.one_of(
        valid(valid_ga4_pages()),
        anything(st.lists(ga4_pages(), max_size=2)),
        anything(json_values),
    )
)
def test_the_ga4_normalizer_returns_rows_or_refuses_any_report(case):
    from metrics_platform.defs.sources.ga4.normalize import normalize_report

    is_valid, payload = case
    pages = [payload] if is_valid else payload
    names = {"sessions": "ga.sessions", "newUsers": "ga.new_users"}
    frame = normalizes(is_valid, lambda: normalize_report(pages, names, *FUZZ_WINDOW))
    if is_valid:
        inside = [
            float(row["metricValues"][0]["value"])
            for row in payload["rows"]
            if "2026031001" <= row["dimensionValues"][0]["value"] <= "2026031100"
        ]
        assert sorted(frame["value"]) == sorted(inside)


@st.composite
def valid_prometheus_answers(draw) -> dict:
    first = int(FUZZ_WINDOW[0].timestamp()) + 3600  # the end of the window's first hour
    jobs = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True), unique=True))
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {"job": job, "instance": "a:9090"},
                    "values": [
                        [first + 3600 * index, draw(st.one_of(finite.map(repr), st.just("NaN")))]
                        for index in draw(st.lists(st.integers(0, 23), unique=True, max_size=5))
                    ],
                }
                for job in jobs[:3]
            ],
        },
    }


prometheus_samples = st.one_of(
    st.tuples(
        st.one_of(
            st.integers(*(int(t.timestamp()) for t in FUZZ_WINDOW)).map(lambda t: t - t % 3600),
            st.floats(),
            st.integers(),
            st.text(max_size=3),
        ),
        st.one_of(number_texts, json_scalars),
    ),
    json_values,
)
prometheus_answers = st.builds(
    lambda result: {"status": "success", "data": {"resultType": "matrix", "result": result}},
    st.lists(
        st.fixed_dictionaries(
            {
                "metric": st.dictionaries(
                    st.sampled_from(["job", "instance", "__name__"]),
                    st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True),
                    max_size=3,
                ),
                "values": st.lists(prometheus_samples, max_size=4),
            }
        ),
        max_size=3,
    ),
)


@FUZZ
@given(
    st.one_of(
        valid(valid_prometheus_answers()), anything(prometheus_answers), anything(json_values)
    )
)
def test_the_prometheus_normalizer_returns_rows_or_refuses_any_answer(case):
    from metrics_platform.defs.sources.prometheus.normalize import normalize_matrix

    is_valid, payload = case
    result = normalizes(is_valid, lambda: normalize_matrix(payload, "m.{job}", *FUZZ_WINDOW))
    if is_valid:
        frame, rejected = result
        samples = [v for s in payload["data"]["result"] for _, v in s["values"]]
        assert rejected == samples.count("NaN")
        assert sorted(frame["value"]) == sorted(float(v) for v in samples if v != "NaN")


event_types = st.one_of(st.none(), st.text(max_size=6), st.integers())
timings = st.one_of(st.none(), st.lists(st.one_of(st.none(), st.floats()), max_size=4))
event_rows = st.tuples(instants, event_types, counts, counts, timings)
# Event types that stay apart once made metric names (two that collide are refused on purpose).
distinct_types = st.lists(
    st.sampled_from(["page_view", "signup", "api call", "x'); DROP TABLE users; --", "ÉTÉ"]),
    unique=True,
    min_size=1,
)


@st.composite
def valid_event_rows(draw, periods, percentiles: int) -> list[tuple]:
    rows = []
    for period in draw(st.lists(periods, unique=True, max_size=3)):
        for event_type in draw(distinct_types):
            events = draw(st.integers(0, 10**6))
            rows.append(
                (
                    period,
                    event_type,
                    events,
                    draw(st.one_of(st.none(), st.integers(0, events))),
                    draw(
                        st.one_of(
                            st.none(), st.lists(finite, min_size=percentiles, max_size=percentiles)
                        )
                    ),
                )
            )
    return rows


PERCENTILES = [50, 90, 99]


@STRING_HOURS
@FUZZ
@given(
    st.one_of(valid(valid_event_rows(window_hours, 3)), anything(st.lists(event_rows, max_size=4)))
)
def test_the_hourly_events_normalizer_returns_rows_or_refuses_any_rows(case):
    from metrics_platform.defs.sources.events.normalize import normalize_hourly

    is_valid, rows = case
    frame = normalizes(is_valid, lambda: normalize_hourly(rows, PERCENTILES))
    if is_valid:
        expected = sum(1 + (e is not None) + (3 if t else 0) for _, _, _, e, t in rows)
        assert len(frame) == expected


# The day of a daily row as Postgres's `::date` hands it over, or missing, or a number (a day that
# is a time of day or a string: see test_a_day_that_is_not_a_date_is_the_sources_fault).
days = st.one_of(st.none(), st.dates(), st.integers(-(2**62), 2**62), st.floats())


@FUZZ
@given(
    st.one_of(
        valid(valid_event_rows(st.dates(date(2026, 3, 1), date(2026, 3, 31)), 3)),
        anything(st.lists(st.tuples(days, event_types, counts, counts, timings), max_size=4)),
    )
)
def test_the_daily_events_normalizer_returns_rows_or_refuses_any_rows(case):
    from metrics_platform.defs.sources.events.normalize import normalize_daily

    is_valid, rows = case
    frame = normalizes(is_valid, lambda: normalize_daily(rows, PERCENTILES))
    if is_valid:
        assert len(frame) == sum(3 for *_, t in rows if t)


@st.composite
def valid_crawler_rows(draw) -> list[tuple]:
    rows = []
    for hour in draw(st.lists(window_hours, unique=True)):
        total = draw(st.integers(0, 10**6))
        rows.append((hour, total, draw(st.integers(0, total))))
    return rows


@STRING_HOURS
@FUZZ
@given(
    st.one_of(
        valid(valid_crawler_rows()),
        anything(st.lists(st.tuples(instants, counts, counts), max_size=4)),
    )
)
def test_the_crawlers_normalizer_returns_rows_or_refuses_any_rows(case):
    from metrics_platform.defs.sources.crawlers.normalize import normalize_status

    is_valid, rows = case
    frame = normalizes(is_valid, lambda: normalize_status(rows))
    if is_valid:
        assert len(frame) == 3 * len(rows)


valid_counts = st.dictionaries(
    metric_names,
    st.lists(st.tuples(window_hours, st.integers(0, 2**62)), unique_by=lambda c: c[0]),
    max_size=3,
)


@STRING_HOURS
@FUZZ
@given(
    st.one_of(
        valid(valid_counts),
        anything(
            st.dictionaries(
                st.text(max_size=8), st.lists(st.tuples(instants, counts), max_size=3), max_size=3
            )
        ),
    )
)
def test_the_product_db_normalizer_returns_rows_or_refuses_any_counts(case):
    from metrics_platform.defs.sources.product_db.normalize import normalize_row_counts

    is_valid, counts_by_metric = case
    frame = normalizes(is_valid, lambda: normalize_row_counts(counts_by_metric))
    if is_valid:
        assert len(frame) == sum(len(series) for series in counts_by_metric.values())


@STRING_HOURS
@FUZZ
@given(
    st.one_of(
        valid(
            st.lists(
                st.tuples(window_hours, metric_names, finite), unique_by=lambda r: r[:2], max_size=6
            )
        ),
        anything(st.lists(st.tuples(instants, st.text(max_size=6), counts), max_size=5)),
    )
)
def test_metric_frame_returns_rows_or_refuses_any_columns(case):
    from metrics_platform.lib.metric_rows import metric_frame

    is_valid, rows = case
    hours, names, values = ([row[i] for row in rows] for i in range(3))
    frame = normalizes(is_valid, lambda: metric_frame("fuzz", hours, names, values))
    if is_valid:
        assert sorted(zip(frame["metric"], frame["value"])) == sorted(zip(names, values))


def _normalizer_calls() -> dict[str, Callable[[], object]]:
    from metrics_platform.defs.sources.crawlers.normalize import normalize_status
    from metrics_platform.defs.sources.events.normalize import normalize_hourly
    from metrics_platform.defs.sources.ga4.normalize import normalize_report
    from metrics_platform.defs.sources.product_db.normalize import normalize_row_counts
    from metrics_platform.lib.metric_rows import metric_frame

    def ga4(value: str, date_hour: str = "2026031006", zone: str = "Europe/Paris"):
        page = {
            "dimensionHeaders": [{"name": "dateHour"}],
            "metricHeaders": [{"name": "sessions", "type": "TYPE_INTEGER"}],
            "rows": [
                {"dimensionValues": [{"value": date_hour}], "metricValues": [{"value": value}]}
            ],
            "rowCount": 1,
            "metadata": {"timeZone": zone},
        }
        return lambda: normalize_report([page], {"sessions": "ga.sessions"}, *FUZZ_WINDOW)

    huge = 10**400
    hour = FUZZ_WINDOW[0]
    return {
        "ga4 integer beyond the float range": ga4(str(huge)),
        "ga4 dateHour of year 1 east of UTC": ga4("5", "0001010100"),
        "metric_frame value beyond the float range": lambda: metric_frame(
            "fuzz", [hour], ["a"], [huge]
        ),
        "product_db count beyond the float range": lambda: normalize_row_counts(
            {"objects.users.count": [(hour, huge)]}
        ),
        "crawlers count beyond the float range": lambda: normalize_status([(hour, huge, 0)]),
        "events count beyond the float range": lambda: normalize_hourly(
            [(hour, "page_view", huge, 0, None)], [50]
        ),
    }


@pytest.mark.parametrize("case", list(_normalizer_calls()))
def test_values_beyond_the_float_range_are_the_sources_fault(case):
    with pytest.raises(MetricsPlatformError):
        _normalizer_calls()[case]()


@pytest.mark.parametrize(
    "day", [datetime(2026, 3, 10, tzinfo=UTC), "not a day", float("inf")], ids=repr
)
def test_a_day_that_is_not_a_date_is_the_sources_fault(day):
    from metrics_platform.defs.sources.events.normalize import normalize_daily

    with pytest.raises(MetricsPlatformError):
        normalize_daily([(day, "page_view", 3, 0, [12.5])], [50])


# --- Settings that are wrong ------------------------------------------------------------------------

ENABLED = {PRODUCT_DATABASE_URL_ENV: "postgresql://set-by-the-run", DATABASE_URL_ENV: "set"}
GA4_SECTION = {"property_id": "123456789", "metrics": {"sessions": "ga.sessions"}}


@pytest.mark.parametrize(
    "settings_, env, key",
    [
        (
            {
                **SETTINGS,
                "kpis": [{"name": "kpi.x", "formula": "ga.sessions / objects.users.count"}],
            },
            ENABLED,
            "kpis[0].formula: no configured source produces the metric 'ga.sessions'",
        ),
        (
            {**SETTINGS, "kpis": [{"name": "kpi x", "formula": "objects.users.count"}]},
            ENABLED,
            "kpis[0].name: 'kpi x' is not a valid metric name",
        ),
        (
            {"product_db": {"tables": [{"table": "users", "created_at_column": "created at"}]}},
            ENABLED,
            "product_db.tables[].created_at_column: 'created at' is not a valid SQL identifier",
        ),
        (
            {"events": {"table": "events", "type_column": "1type"}},
            ENABLED,
            "events.type_column: '1type' is not a valid SQL identifier",
        ),
        (
            {"crawlers": {"status_table": "a.b.c"}},
            ENABLED,
            "crawlers.status_table: 'a.b.c' has more than one dot",
        ),
        (
            {"ga4": GA4_SECTION},
            {**ENABLED, "METRICS_PLATFORM_GA4_CREDENTIALS_FILE": "/nonexistent/ga4-key.json"},
            "METRICS_PLATFORM_GA4_CREDENTIALS_FILE: no file at /nonexistent/ga4-key.json",
        ),
        (
            {
                "prometheus": {
                    "queries": [{"query": "up", "metric": "up.{job!r}", "aggregation": "last"}]
                }
            },
            ENABLED,
            "prometheus.queries[0].metric: ",
        ),
        (
            {**SETTINGS, "schedule": {"lag_minutes": {"events": -1}}},
            ENABLED,
            "schedule.lag_minutes.events",
        ),
        (
            {"quality": {"freshness_delay_minutes": "soon"}},
            ENABLED,
            "quality.freshness_delay_minutes",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_wrong_settings_fail_when_the_definitions_load_naming_the_key(settings_, env, key):
    with pytest.raises(MetricsPlatformError) as caught:
        build_definitions(settings_, env)
    assert key in str(caught.value)


def import_definitions(tmp_path: Path, **env: str) -> subprocess.Popen:
    """Load the code location as Dagster would, in a fresh interpreter with these settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METRICS_PLATFORM_")}
    return subprocess.Popen(
        [sys.executable, "-c", "import metrics_platform.definitions"],
        cwd=REPO,
        env={**clean, "DAGSTER_HOME": str(tmp_path), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize(
    "variable, value, message",
    [
        (
            "METRICS_PLATFORM_BUSINESS_TIMEZONE",
            "Europe/Pariss",
            "METRICS_PLATFORM_BUSINESS_TIMEZONE: 'Europe/Pariss' is not an IANA time zone",
        ),
        (
            "METRICS_PLATFORM_BUSINESS_TIMEZONE",
            "Asia/Kolkata",
            "METRICS_PLATFORM_BUSINESS_TIMEZONE: 'Asia/Kolkata' is 5:30:00 from UTC",
        ),
        (
            "METRICS_PLATFORM_HISTORY_START",
            "2025-13",
            "METRICS_PLATFORM_HISTORY_START: '2025-13' is not a YYYY-MM-DD date",
        ),
        (
            "METRICS_PLATFORM_CONFIG",
            "/nonexistent/platform.yaml",
            "METRICS_PLATFORM_CONFIG: settings file /nonexistent/platform.yaml does not exist",
        ),
    ],
)
def test_a_wrong_environment_variable_is_refused_naming_it(monkeypatch, variable, value, message):
    """What the code location reads from its environment when it loads (each read as the
    module-level definitions read it)."""
    from metrics_platform.defs import partitions
    from metrics_platform.lib.settings import load_settings

    monkeypatch.setenv(variable, value)
    read = {
        "METRICS_PLATFORM_BUSINESS_TIMEZONE": partitions._business_timezone,
        "METRICS_PLATFORM_HISTORY_START": partitions._history_start,
        "METRICS_PLATFORM_CONFIG": load_settings,
    }[variable]
    with pytest.raises(MetricsPlatformError) as caught:
        read()
    assert message in str(caught.value)


def test_the_code_location_refuses_to_load_with_a_wrong_zone_or_settings_file(tmp_path):
    """End to end, as Dagster loads it: a fresh interpreter importing the definitions."""
    bad_kpi = tmp_path / "bad_kpi.yaml"
    bad_kpi.write_text(
        "product_db:\n  tables:\n    - table: users\n"
        "kpis:\n  - name: kpi.share\n    formula: objects.users.count / nope.count\n"
    )
    cases = {
        "METRICS_PLATFORM_BUSINESS_TIMEZONE: 'Mars/Olympus_Mons' is not an IANA time zone": {
            "METRICS_PLATFORM_BUSINESS_TIMEZONE": "Mars/Olympus_Mons"
        },
        "kpis[0].formula: no configured source produces the metric 'nope.count'": {
            "METRICS_PLATFORM_CONFIG": str(bad_kpi)
        },
    }
    loads = {message: import_definitions(tmp_path, **env) for message, env in cases.items()}
    for message, load in loads.items():
        _, stderr = load.communicate(timeout=PATIENCE)
        assert load.returncode != 0, message
        assert f"metrics_platform.lib.errors.ConfigurationError: {message}" in stderr, stderr


def test_a_settings_file_that_is_not_yaml_is_refused_naming_it(tmp_path):
    from metrics_platform.lib.settings import load_settings

    path = tmp_path / "platform.yaml"
    path.write_text("product_db: [unclosed\n")
    with pytest.raises(
        MetricsPlatformError, match=f"^METRICS_PLATFORM_CONFIG: {path} is not valid"
    ):
        load_settings(path)


@pytest.mark.parametrize(
    "section, key",
    [
        (
            {"product_db": {"tables": [{"table": "users", "created_at_colum": "created_at"}]}},
            "created_at_colum",
        ),
        ({"product_db": {"tabels": [{"table": "users"}]}}, "tabels"),
        ({"crawlers": {"crawlers_tabel": "spiders"}}, "crawlers_tabel"),
        ({"events": {"tabel": "app_events"}}, "tabel"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_an_unknown_settings_key_fails_when_the_definitions_load(section, key):
    with pytest.raises(MetricsPlatformError, match=key):
        build_definitions(section, ENABLED)


@pytest.mark.parametrize(
    "section, key",
    [
        ({"product_db": {"tables": "users"}}, "product_db.tables"),
        ({"events": {"table": ["events"]}}, "events.table"),
        ({"crawlers": {"id_column": 7}}, "crawlers.id_column"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_a_setting_of_the_wrong_type_fails_naming_the_key(section, key):
    with pytest.raises(MetricsPlatformError, match=key.replace(".", r"\.")):
        build_definitions(section, ENABLED)
