"""The read-only role against real Postgres sessions: whatever lock it manages to hold (advisory
locks on any key, LOCK TABLE in every mode, row locks, a long transaction with an open cursor),
with its read-only default switched off or not, no writer waits on it beyond the bounded lock
wait: writes go through, or fail within the bound with an error naming the table and the
session. The reader can create nothing anywhere in the database, temporary objects included,
and `metrics-platform migrate` as a database owner without CREATEROLE migrates the store and
says, in one line each, what an administrator must do for the reader."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import dagster as dg
import pandas as pd
import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql

from metrics_platform.lib import store
from metrics_platform.lib.database import connect
from metrics_platform.lib.errors import MetricsPlatformError
from metrics_platform.lib.grafana_role import READER_SETTINGS, set_up_reader_role
from metrics_platform.lib.locks import LOCK_WAIT_ENV, LockNotGrantedError, lock_new_table
from metrics_platform.lib.postgres_io import PostgresPandasIOManager
from metrics_platform.lib.store import MIGRATIONS, MetricSpec, ensure_metrics, migrate
from metrics_platform_tests.conftest import execute, new_database, query
from metrics_platform_tests.processes import CLI, REPO

WAIT = 1  # seconds per round of a writer's lock wait, in these tests
DEADLINE = 60  # seconds within which every write below must have ended
VALUE_TABLES = ("hourly_values", "daily_values", "hourly_kpis", "daily_kpis")
MODES = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)
NEW_TABLE = "raw", "tickets_hourly"


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}").geturl()


def new_role(url: str, grants: str) -> str:
    """A new LOGIN role with USAGE on schema metrics and `grants` ({0} stands for it)."""
    role = f"writer_{uuid.uuid4().hex[:8]}"
    name = sql.Identifier(role)
    execute(url, sql.SQL("CREATE ROLE {} LOGIN").format(name))
    execute(url, sql.SQL("GRANT USAGE ON SCHEMA metrics TO {0}; " + grants).format(name))
    return role


def table_key(schema: str, table: str) -> str:
    return f"hashtextextended('metrics_platform:{schema}.{table}', 0)"


# What a reader may try to hold, by kind. Each runs in a savepoint of one open transaction:
# what is granted stays held while the writers below run.
ADVISORY = [
    "SELECT pg_advisory_lock(4712001)",  # the migration key
    "SELECT pg_advisory_xact_lock(4712002)",  # the role set-up key
    *(f"SELECT pg_advisory_xact_lock({table_key('metrics', t)})" for t in VALUE_TABLES),
    f"SELECT pg_advisory_lock({table_key('metrics', 'metric')})",
    f"SELECT pg_advisory_xact_lock({table_key(*NEW_TABLE)})",
]
TABLE_LOCKS = [
    f"LOCK TABLE metrics.{table} IN {mode} MODE"
    for table in (*VALUE_TABLES, "metric", "schema_migrations")
    for mode in MODES
]
ROW_LOCKS = [
    f"SELECT * FROM metrics.{table} LIMIT 1 FOR {strength}"
    for table in ("metric", "hourly_values")
    for strength in ("KEY SHARE", "SHARE", "NO KEY UPDATE", "UPDATE")
]
CURSOR = [
    "DECLARE held CURSOR FOR SELECT * FROM metrics.hourly_values_by_name",
    "FETCH 1 FROM held",
]
HOLDINGS = {
    "advisory": ADVISORY,
    "table locks": TABLE_LOCKS,
    "row locks": ROW_LOCKS,
    "cursor": CURSOR,
}


@pytest.fixture
def reader_store(postgres_server, monkeypatch) -> tuple[str, str]:
    """A store with a migration pending (one more than the latest, which locks every table as
    any migration does), a few values, and its reader role."""
    monkeypatch.setenv(LOCK_WAIT_ENV, str(WAIT))
    url = new_database(postgres_server, "reader")
    role = f"reader_{uuid.uuid4().hex[:8]}"
    conn = connect(url)
    try:
        migrate(conn)
        ids = ensure_metrics(conn, [MetricSpec("objects.users.count", "last", "product_db")])
        assert set_up_reader_role(conn, role).problems == []
    finally:
        conn.close()
    pending = (MIGRATIONS[-1][0] + 1, "pending", "COMMENT ON TABLE metrics.metric IS 'pending'")
    monkeypatch.setattr(store, "MIGRATIONS", [*MIGRATIONS, pending])
    execute(
        url,
        "INSERT INTO metrics.hourly_values VALUES (%s, '2026-03-10 00:00+00', 1)",
        (ids["objects.users.count"],),
    )
    return url, role


@contextmanager
def reader_holding(url: str, statements: list[str], *, read_write: bool) -> Iterator[dict]:
    """A reader session in an open transaction (read-only switched off if `read_write`) that ran
    `statements`, each in a savepoint, so the granted ones stay held; yields {statement: None
    or the error class that refused it}."""
    conn = connect(url, application_name="reader probe")
    outcome: dict[str, type[Exception] | None] = {}
    try:
        cur = conn.cursor()
        if read_write:  # what any session of the role may do
            cur.execute("SET transaction_read_only = off")
        for statement in statements:
            cur.execute("SAVEPOINT probe")
            try:
                cur.execute(statement)
                outcome[statement] = None
                cur.execute("RELEASE SAVEPOINT probe")
            except psycopg2.Error as exc:
                outcome[statement] = type(exc)
                cur.execute("ROLLBACK TO SAVEPOINT probe")
        yield outcome
    finally:
        conn.close()


def within_deadline(action) -> BaseException | None:
    """Run `action` in a thread; the exception it raised (None if it succeeded), asserting that
    it ended before the generous deadline."""
    result: list[BaseException | None] = []

    def target():
        try:
            action()
            result.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), "a writer was still waiting on the reader at the deadline"
    return result[0]


def io_write(url: str, schema: str, table: str, frame: pd.DataFrame) -> None:
    manager = PostgresPandasIOManager(url=url, migrate_store=False).create_io_manager(None)
    context = dg.build_output_context(asset_key=dg.AssetKey([schema, table]))
    manager.handle_output(context, frame)


def values_frame(url: str) -> pd.DataFrame:
    (metric_id,) = query(url, "SELECT id FROM metrics.metric")[0]
    hours = pd.date_range("2026-03-10", periods=3, freq="h", tz="UTC")
    return pd.DataFrame({"metric_id": metric_id, "hour": hours, "value": [1.0, 2.0, 3.0]})


def catalog_write(url: str) -> None:
    conn = connect(url)
    try:
        ensure_metrics(conn, [MetricSpec("objects.users.count", "last", "product_db", "users")])
    finally:
        conn.close()


def migration(url: str) -> None:
    conn = connect(url)
    try:
        assert migrate(conn) == [store.MIGRATIONS[-1][0]]
    finally:
        conn.close()


def assert_names_the_reader(error: BaseException | None, what: str, role: str) -> None:
    assert isinstance(error, LockNotGrantedError), error
    message = str(error)
    assert message.startswith(f"{what}: the lock was not granted within {WAIT:g} s; held by pid ")
    assert f"role {role}" in message and "application 'reader probe'" in message


@pytest.mark.parametrize("read_write", [False, True], ids=["read-only", "read-only-off"])
@pytest.mark.parametrize("holding", list(HOLDINGS))
def test_no_lock_the_reader_can_hold_delays_a_writer_beyond_the_bound(
    reader_store, holding, read_write
):
    url, role = reader_store
    reader = as_role(url, role)
    with reader_holding(reader, HOLDINGS[holding], read_write=read_write) as outcome:
        granted = [statement for statement, error in outcome.items() if error is None]
        if holding == "table locks":  # only what reading takes anyway
            assert granted == [s for s in TABLE_LOCKS if "IN ACCESS SHARE MODE" in s]
        elif holding == "row locks":
            assert granted == []
        else:
            assert granted == HOLDINGS[holding]
        frame = values_frame(url)
        # The catalog and an existing table are written as if the reader were not there.
        assert within_deadline(lambda: catalog_write(url)) is None
        assert within_deadline(lambda: io_write(url, "metrics", "hourly_values", frame)) is None
        # A table created now: its creators take turns on its name, which any session can lock.
        error = within_deadline(lambda: io_write(url, *NEW_TABLE, frame))
        if holding == "advisory":
            assert_names_the_reader(error, "creating raw.tickets_hourly", role)
        else:
            assert error is None
        # A migration needs every table to itself: a reader with one of them open fails it.
        error = within_deadline(lambda: migration(url))
        if holding == "table locks":  # the version table first
            assert_names_the_reader(error, "migrating metrics.schema_migrations", role)
        elif holding == "cursor":  # the first table under the view the cursor reads
            assert_names_the_reader(error, "migrating: locking metrics.hourly_kpis", role)
        else:
            assert error is None
    assert query(url, "SELECT count(*) FROM metrics.hourly_values") == [(3,)]
    if holding in ("table locks", "cursor"):  # once the reader is gone, the migration goes on
        assert within_deadline(lambda: migration(url)) is None


def test_writers_of_a_new_table_take_turns(reader_store):
    url, _ = reader_store
    frame = values_frame(url)
    execute(url, "CREATE SCHEMA raw")
    conn = connect(url, application_name="first writer")
    try:
        with conn.cursor() as cur:  # the first creator, mid-write (several lock waits long)
            lock_new_table(cur, *NEW_TABLE)
            cur.execute(
                "CREATE TABLE raw.tickets_hourly (metric_id bigint, hour timestamptz, value float8)"
            )
            second: list[BaseException | None] = []
            thread = threading.Thread(
                target=lambda: second.append(
                    within_deadline(lambda: io_write(url, *NEW_TABLE, frame))
                )
            )
            thread.start()
            time.sleep(3 * WAIT)
            assert thread.is_alive(), "the second writer did not wait for the first"
            cur.execute("INSERT INTO raw.tickets_hourly VALUES (1, '2026-03-10 00:00+00', 9)")
        conn.commit()
        thread.join(DEADLINE)
        assert second == [None]
    finally:
        conn.close()
    # One complete result: the second write replaced the table's contents (unpartitioned).
    assert query(url, "SELECT count(*), sum(value) FROM raw.tickets_hourly") == [(3, 6.0)]


CREATIONS = [
    "CREATE TEMP TABLE t (x integer)",
    "CREATE TEMP VIEW v AS SELECT 1",
    "CREATE TEMP SEQUENCE s",
    "CREATE FUNCTION pg_temp.f() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
    "CREATE TABLE public.t (x integer)",
    "CREATE FUNCTION public.f() RETURNS integer LANGUAGE sql AS 'SELECT 1'",
    "CREATE TABLE metrics.t (x integer)",
    "CREATE VIEW metrics.v AS SELECT 1",
    "CREATE SCHEMA elsewhere",
    "CREATE PUBLICATION everything",
    "SELECT lo_create(0)",
    "SELECT lo_creat(-1)",
    "SELECT lo_from_bytea(0, 'x')",
]


def test_the_reader_can_create_nothing_anywhere_even_read_write(reader_store):
    url, role = reader_store
    reader = as_role(url, role)
    execute(url, "CREATE SCHEMA IF NOT EXISTS raw")
    for read_write in (False, True):
        with reader_holding(reader, CREATIONS, read_write=read_write) as outcome:
            # Read-only, each is refused as a write or for want of the privilege; read-write,
            # for want of the privilege.
            refusals = {psycopg2.errors.InsufficientPrivilege}
            if not read_write:
                refusals.add(psycopg2.errors.ReadOnlySqlTransaction)
            assert {s: e for s, e in outcome.items() if e not in refusals} == {}
    database = urlsplit(url).path.lstrip("/")
    assert query(
        url,
        "SELECT has_database_privilege(%s, %s, 'CREATE'), "
        "has_database_privilege(%s, %s, 'TEMPORARY')",
        (role, database, role, database),
    ) == [(False, False)]
    assert (
        query(
            url,
            "SELECT nspname FROM pg_namespace WHERE has_schema_privilege(%s, oid, 'CREATE')",
            (role,),
        )
        == []
    )
    # Its sessions start read-only, with bounded statements and idle transactions.
    conn = connect(reader)
    try:
        with conn, conn.cursor() as cur:
            for setting, value in READER_SETTINGS.items():
                cur.execute(sql.SQL("SHOW {}").format(sql.Identifier(setting)))
                assert cur.fetchone()[0] == value
    finally:
        conn.close()


def test_the_writers_keep_temporary_tables(reader_store):
    url, _ = reader_store
    writer = new_role(url, "GRANT INSERT ON metrics.hourly_values TO {0}")
    database = sql.Identifier(urlsplit(url).path.lstrip("/"))
    execute(url, sql.SQL("GRANT TEMPORARY ON DATABASE {} TO PUBLIC").format(database))
    conn = connect(url)
    try:
        assert set_up_reader_role(conn, f"reader_{uuid.uuid4().hex[:8]}").problems == []
    finally:
        conn.close()
    assert query(url, "SELECT has_database_privilege('public', current_database(), 'TEMP')") == [
        (False,)
    ]
    execute(as_role(url, writer), "CREATE TEMP TABLE staging (x integer)")


def test_migrate_without_createrole_migrates_and_says_what_to_do(postgres_server, tmp_path):
    owner, reader = (f"{kind}_{uuid.uuid4().hex[:8]}" for kind in ("owner", "reader"))
    admin = new_database(postgres_server, "admin")
    execute(admin, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
    store = new_database(postgres_server, "owned")
    database = urlsplit(store).path.lstrip("/")
    execute(
        admin,
        sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            sql.Identifier(database), sql.Identifier(owner)
        ),
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "METRICS_PLATFORM_DATABASE_URL": as_role(store, owner),
        "METRICS_PLATFORM_GRAFANA_DB_USER": reader,
        "METRICS_PLATFORM_HOME": str(tmp_path),
        "DAGSTER_HOME": tempfile.mkdtemp(dir=tmp_path),
    }

    def migrate_cli() -> tuple[str, list[str]]:
        out = subprocess.run(
            [*CLI, "migrate"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Traceback" not in out.stderr
        return out.stdout, out.stderr.splitlines()

    for _ in range(2):  # the first run migrates, the second finds the store up to date
        stdout, problems = migrate_cli()
        assert "Grafana reader role not ready" in stdout
        assert problems[0] == (
            f"metrics-platform migrate: Grafana reader role {reader!r} does not exist and role "
            f"{owner!r} may not create roles (no CREATEROLE): create it as an administrator "
            f"(CREATE ROLE {reader} LOGIN PASSWORD '...'), then run `metrics-platform migrate` "
            "again to grant it read access"
        )
        assert query(store, "SELECT max(version) FROM metrics.schema_migrations") == [
            (MIGRATIONS[-1][0],)
        ]
    # An administrator does what the lines say; then the reader is ready.
    execute(admin, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(reader)))
    for _ in range(3):
        stdout, problems = migrate_cli()
        if not problems:
            break
        for line in problems:
            statements = re.search(r"run (.*?)(?:, then run `|$)", line).group(1)
            execute(store, statements)
    assert "Grafana reader role ready" in stdout
    assert problems == []
    assert query(
        store, "SELECT has_table_privilege(%s, 'metrics.hourly_values', 'SELECT')", (reader,)
    ) == [(True,)]


def test_a_writer_that_may_not_migrate_is_told_who_may(reader_store):
    url, _ = reader_store
    writer = new_role(url, "GRANT SELECT ON metrics.schema_migrations TO {0}")
    conn = connect(as_role(url, writer))
    try:
        with pytest.raises(
            MetricsPlatformError, match="run `metrics-platform migrate` as the owner"
        ):
            migrate(conn)
    finally:
        conn.close()
