"""The metric store schema and catalog: migrations, constraints and concurrent get-or-create."""

import multiprocessing

import psycopg2
import pytest

from metrics_platform.lib.database import connect
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.store import MIGRATIONS, MetricSpec, ensure_metrics, migrate, read_catalog
from metrics_platform_tests.conftest import new_database, primary_key, query


def test_migrations_apply_once(store_url):
    conn = connect(store_url)
    try:
        assert migrate(conn) == []
    finally:
        conn.close()
    versions = query(store_url, "SELECT version FROM metrics.schema_migrations ORDER BY 1")
    assert [v for (v,) in versions] == [m[0] for m in MIGRATIONS]


def test_values_must_be_finite_and_on_the_hour(store_url):
    conn = connect(store_url)
    try:
        ids = ensure_metrics(conn, [MetricSpec("a", "sum", "test")])
        for hour, value in [
            ("2026-01-01 00:30+00", 1.0),
            ("2026-01-01 00:00+00", float("nan")),
            ("2026-01-01 00:00+00", float("inf")),
        ]:
            with pytest.raises(psycopg2.errors.CheckViolation), conn, conn.cursor() as cur:
                cur.execute(
                    "INSERT INTO metrics.hourly_values VALUES (%s, %s, %s)", (ids["a"], hour, value)
                )
    finally:
        conn.close()


def test_the_views_expose_names_dates_and_hours(store_url):
    conn = connect(store_url)
    try:
        ids = ensure_metrics(conn, [MetricSpec("objects.users.count", "last", "test")])
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO metrics.hourly_values VALUES (%s, '2026-01-01 23:00+00', 7)",
                (ids["objects.users.count"],),
            )
    finally:
        conn.close()
    rows = query(
        store_url, "SELECT metric, date::text, hour, value FROM metrics.hourly_values_by_name"
    )
    assert rows == [("objects.users.count", "2026-01-01", 23, 7.0)]


def test_a_metric_name_belongs_to_one_source(store_url):
    conn = connect(store_url)
    try:
        ensure_metrics(conn, [MetricSpec("shared.name", "sum", "one")])
        with pytest.raises(ConfigurationError, match="already produced by source 'one'"):
            ensure_metrics(conn, [MetricSpec("shared.name", "sum", "two")])
    finally:
        conn.close()


def test_catalog_entries_follow_their_definition(store_url):
    conn = connect(store_url)
    try:
        first = ensure_metrics(conn, [MetricSpec("m", "sum", "s", unit="rows")])
        second = ensure_metrics(conn, [MetricSpec("m", "sum", "s", unit="users")])
    finally:
        conn.close()
    assert first == second
    assert query(store_url, "SELECT unit FROM metrics.metric") == [("users",)]


def _register(url: str, names: list[str], barrier, results) -> None:
    conn = connect(url)
    try:
        barrier.wait()
        results.put(ensure_metrics(conn, [MetricSpec(n, "sum", "race") for n in names]))
    finally:
        conn.close()


def test_two_processes_creating_the_same_metrics_get_the_same_ids(store_url):
    names = [f"race.metric_{i}" for i in range(200)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    results = context.Queue()
    workers = [
        context.Process(target=_register, args=(store_url, order, barrier, results))
        for order in (names, list(reversed(names)))
    ]
    for worker in workers:
        worker.start()
    got = [results.get(timeout=60), results.get(timeout=60)]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert got[0] == got[1]
    assert len(set(got[0].values())) == len(names)
    assert query(store_url, "SELECT count(*) FROM metrics.metric") == [(len(names),)]


def test_migrating_from_many_processes_at_once_is_safe(postgres_server):
    from metrics_platform_tests.conftest import new_database

    url = new_database(postgres_server, "migrate")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_migrate, args=(url,)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert query(url, "SELECT count(*) FROM metrics.schema_migrations") == [(len(MIGRATIONS),)]


def _migrate(url: str) -> None:
    conn = connect(url)
    try:
        migrate(conn)
    finally:
        conn.close()


VALUE_ROWS = {
    "hourly_values": "'2026-01-01 00:00+00'",
    "daily_values": "'2026-01-01'",
    "hourly_kpis": "'2026-01-01 00:00+00'",
    "daily_kpis": "'2026-01-01'",
}


@pytest.mark.parametrize("table", sorted(VALUE_ROWS))
def test_value_tables_refuse_metric_ids_missing_from_the_catalog(store_url, table):
    conn = connect(store_url)
    try:
        ids = ensure_metrics(conn, [MetricSpec("known", "sum", "test")])
        time = VALUE_ROWS[table]
        with conn, conn.cursor() as cur:
            cur.execute(f"INSERT INTO metrics.{table} VALUES (%s, {time}, 1)", (ids["known"],))
        # One unknown id among many known rows fails the whole statement, naming the id.
        with (
            pytest.raises(psycopg2.errors.ForeignKeyViolation, match=f"{table}: metric_id 999"),
            conn,
            conn.cursor() as cur,
        ):
            cur.execute(
                f"""INSERT INTO metrics.{table}
                    SELECT id, {time}::{"date" if "daily" in table else "timestamptz"}
                               + i * interval '1 day', 2
                    FROM unnest(array[%s, %s, 999]) WITH ORDINALITY AS t(id, i)""",
                (ids["known"], ids["known"]),
            )
        with pytest.raises(psycopg2.errors.ForeignKeyViolation), conn, conn.cursor() as cur:
            cur.execute(f"UPDATE metrics.{table} SET metric_id = 999")
        assert query(store_url, f"SELECT metric_id, value FROM metrics.{table}") == [
            (ids["known"], 1.0)
        ]
    finally:
        conn.close()


def test_catalog_rows_with_values_are_kept(store_url):
    conn = connect(store_url)
    try:
        ids = ensure_metrics(
            conn, [MetricSpec("used", "sum", "test"), MetricSpec("unused", "sum", "test")]
        )
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO metrics.daily_kpis VALUES (%s, '2026-01-01', 1)", (ids["used"],)
            )
        for statement in (
            "DELETE FROM metrics.metric WHERE name = 'used'",
            "UPDATE metrics.metric SET id = DEFAULT WHERE name = 'used'",
            "TRUNCATE metrics.metric CASCADE",
        ):
            with pytest.raises(psycopg2.errors.ForeignKeyViolation), conn, conn.cursor() as cur:
                cur.execute(statement)
        with conn, conn.cursor() as cur:
            cur.execute("DELETE FROM metrics.metric WHERE name = 'unused'")
            cur.execute("UPDATE metrics.metric SET unit = 'rows' WHERE name = 'used'")
    finally:
        conn.close()
    assert query(store_url, "SELECT name, unit FROM metrics.metric") == [("used", "rows")]


def test_a_metric_being_written_cannot_be_deleted_concurrently(store_url):
    """The statement-level check locks the catalog rows it relies on, as a foreign key does."""
    writer, deleter = connect(store_url), connect(store_url)
    try:
        ids = ensure_metrics(writer, [MetricSpec("busy", "sum", "test")])
        with writer.cursor() as cur:  # left open: the write is not committed yet
            cur.execute(
                "INSERT INTO metrics.hourly_values VALUES (%s, '2026-01-01 00:00+00', 1)",
                (ids["busy"],),
            )
        with pytest.raises(psycopg2.errors.LockNotAvailable), deleter, deleter.cursor() as cur:
            cur.execute("SET LOCAL lock_timeout = '200ms'")
            cur.execute("DELETE FROM metrics.metric WHERE id = %s", (ids["busy"],))
        writer.commit()
    finally:
        writer.close()
        deleter.close()
    assert query(store_url, "SELECT count(*) FROM metrics.hourly_values") == [(1,)]


@pytest.mark.parametrize("table", sorted(VALUE_ROWS))
def test_primary_keys_carry_the_value_for_index_only_panel_scans(store_url, table):
    key = query(
        store_url,
        """SELECT i.indnkeyatts, array_agg(a.attname ORDER BY k.position)
           FROM pg_index i
           CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE i.indrelid = to_regclass(%s) AND i.indisprimary
           GROUP BY i.indnkeyatts""",
        (f"metrics.{table}",),
    )
    time = "hour" if table.startswith("hourly") else "day"
    assert key == [(2, ["metric_id", time, "value"])]


def test_a_store_with_values_upgrades_to_statement_level_checks_in_place(
    postgres_server, monkeypatch
):
    """A store migrated before migration 4, with values in it, is upgraded by `migrate`."""
    from metrics_platform.lib import store

    url = new_database(postgres_server, "upgrade")
    conn = connect(url)
    try:
        monkeypatch.setattr(store, "MIGRATIONS", MIGRATIONS[:3])
        assert migrate(conn) == [1, 2, 3]
        with conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO metrics.metric (name, aggregation, source) "
                "VALUES ('kept', 'sum', 'test') RETURNING id"
            )
            cur.execute(
                """INSERT INTO metrics.hourly_values
                   SELECT %s, h, 1 FROM generate_series('2026-01-01 00:00+00'::timestamptz,
                                                        '2026-01-01 23:00+00', '1 hour') h""",
                (cur.fetchone()[0],),
            )
        monkeypatch.setattr(store, "MIGRATIONS", MIGRATIONS)
        assert migrate(conn) == [version for version, _, _ in MIGRATIONS[3:]]  # 4 and later
        # Metrics from before migration 5 change only their own hours unless declared.
        assert ensure_metrics(conn, [MetricSpec("kept", "sum", "test")])
        assert [e.propagation for e in read_catalog(conn, source="test").values()] == ["own_hour"]
        with pytest.raises(psycopg2.errors.ForeignKeyViolation), conn, conn.cursor() as cur:
            cur.execute("INSERT INTO metrics.hourly_values VALUES (999, '2026-01-02', 1)")
    finally:
        conn.close()
    assert query(url, "SELECT count(*), sum(value) FROM metrics.hourly_values") == [(24, 24.0)]


def test_raw_tables_keyed_by_metric_first_are_keyed_by_period_first_after_migrating(
    postgres_server,
):
    """A raw table's window (every write, delete and read of a run) is served by its key's
    index only when the key starts with the period: older raw tables are rebuilt so, with
    their rows; a table keyed otherwise is left as it is."""
    url = new_database(postgres_server, "raw_keys")
    conn = connect(url)
    try:
        migrate(conn, up_to=7)
        with conn, conn.cursor() as cur:
            cur.execute(
                """
                CREATE SCHEMA raw;
                CREATE TABLE raw.hours (hour timestamptz, metric text, value float8,
                                        PRIMARY KEY (metric, hour));
                CREATE TABLE raw."Days" (day date, metric text, value float8,
                                         PRIMARY KEY (metric, day));
                CREATE TABLE raw.series (hour timestamptz, metric text, series text,
                                         value float8, PRIMARY KEY (metric, hour, series));
                INSERT INTO raw.hours VALUES ('2026-01-01 00:00+00', 'a', 1), ('2026-01-01 01:00+00', 'a', 2);
                INSERT INTO raw."Days" VALUES ('2026-01-01', 'a', 3);
                """
            )
        assert migrate(conn) == [8]
    finally:
        conn.close()
    assert primary_key(url, "raw.hours") == ["hour", "metric"]
    assert primary_key(url, 'raw."Days"') == ["day", "metric"]
    assert primary_key(url, "raw.series") == ["metric", "hour", "series"]
    assert query(url, "SELECT count(*) FROM raw.hours")[0][0] == 2
    assert query(url, 'SELECT value FROM raw."Days"') == [(3.0,)]
    plan = query(
        url,
        "SET enable_seqscan = off; EXPLAIN SELECT * FROM raw.hours "
        "WHERE hour >= '2026-01-01' AND hour < '2026-01-02'",
    )
    assert any("Index Cond: ((hour >=" in line for (line,) in plan), plan
