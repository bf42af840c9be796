"""The metric store schema and catalog: migrations, constraints and concurrent get-or-create."""

import multiprocessing

import psycopg2
import pytest

from metrics_platform.lib.database import connect
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.store import MIGRATIONS, MetricSpec, ensure_metrics, migrate
from metrics_platform_tests.conftest import query


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
