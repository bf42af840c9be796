"""Test fixtures: one real PostgreSQL server for the whole session, a fresh database per test."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg
import pytest

from metrics_platform.lib.database import connect
from metrics_platform.lib.embedded_postgres import EmbeddedPostgres, throwaway_server
from metrics_platform.lib.store import migrate


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[EmbeddedPostgres]:
    """A throwaway cluster from the machine's PostgreSQL binaries, on a free loopback port."""
    with throwaway_server("metrics_platform_pg_") as (server, _):
        yield server


def new_database(server: EmbeddedPostgres, prefix: str) -> str:
    return server.create_database(f"{prefix}_{uuid.uuid4().hex[:10]}")


def new_store(server: EmbeddedPostgres, prefix: str = "store") -> str:
    """A new, migrated metric store database."""
    url = new_database(server, prefix)
    conn = connect(url)
    try:
        migrate(conn)
    finally:
        conn.close()
    return url


@pytest.fixture
def store_url(postgres_server) -> str:
    """A new, migrated metric store database."""
    return new_store(postgres_server)


@pytest.fixture
def product_url(postgres_server) -> str:
    """A new, empty product database."""
    return new_database(postgres_server, "product")


# The sources' values in the views, without the platform's own metrics of completeness.
SOURCE_HOURS = "metrics.hourly_values_by_name WHERE metric NOT LIKE 'platform.%%'"
SOURCE_DAYS = "metrics.daily_values_by_name WHERE metric NOT LIKE 'platform.%%'"


def query(url: str, sql: str, params=None) -> list[tuple]:
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def primary_key(url: str, table: str) -> list[str]:
    """The columns of a table's primary key, in the key's order."""
    rows = query(
        url,
        """
        SELECT a.attname FROM pg_index i
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
        WHERE i.indrelid = %s::regclass AND i.indisprimary
        ORDER BY array_position(i.indkey, a.attnum)
        """,
        (table,),
    )
    return [name for (name,) in rows]


def execute(url: str, sql: str, params=None) -> None:
    query(url, sql, params)


# Every source enabled, reading the demo's table layout.
TEST_SETTINGS = {
    "product_db": {"tables": [{"table": "users", "created_at_column": "created_at"}]},
    "crawlers": {"crawlers_table": "spiders"},
    "events": {"table": "events", "error_column": "failed"},
}

RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def platform_resources(store_url: str, product_url: str, tables: list[dict] | None = None) -> dict:
    """The platform's resources pointed at the test databases."""
    from metrics_platform.defs.metric_store import MetricStore
    from metrics_platform.defs.sources.crawlers.resource import CrawlerRegistry
    from metrics_platform.defs.sources.events.resource import EventLog
    from metrics_platform.defs.sources.product_db.resource import CountedTable, ProductDatabase
    from metrics_platform.lib.postgres_io import PostgresPandasIOManager

    if tables is None:
        tables = [
            {"table": t, "created_at_column": "created_at"}
            for t in ("users", "profiles", "api_keys")
        ]
    return {
        "io_manager": PostgresPandasIOManager(url=store_url),
        "metric_store": MetricStore(url=store_url),
        "product_db": ProductDatabase(url=product_url, tables=[CountedTable(**t) for t in tables]),
        "crawler_registry": CrawlerRegistry(url=product_url),
        "event_log": EventLog(url=product_url, error_column="failed"),
    }


def platform_assets() -> list:
    """Raw sources (all enabled), hourly values and daily values."""
    from metrics_platform.definitions import build_definitions
    from metrics_platform.lib.database import PRODUCT_DATABASE_URL_ENV

    defs = build_definitions(
        env={PRODUCT_DATABASE_URL_ENV: "set by the test's resources"}, settings=TEST_SETTINGS
    )
    return [asset for asset in defs.assets if isinstance(asset, dg.AssetsDefinition)]


def materialize(
    resources: dict, *, selection, partition_key=None, partition_range=None, raise_on_error=True
):
    tags = dict(zip(RANGE_TAGS, partition_range)) if partition_range else None
    with dg.instance_for_test() as instance:
        return dg.materialize(
            platform_assets(),
            selection=selection,
            instance=instance,
            resources=resources,
            partition_key=partition_key,
            tags=tags,
            raise_on_error=raise_on_error,
        )


@pytest.fixture
def ga4_server():
    """The GA4 sample server on a loopback port (the real client library talks to it)."""
    from metrics_platform.demo.ga4_sample_server import SampleGA4Server

    with SampleGA4Server() as server:
        yield server


@pytest.fixture
def prometheus_stub():
    """A Prometheus stand-in whose answers a test can script (`reply`, `delay`)."""
    from metrics_platform_tests.stubs import PrometheusStub

    with PrometheusStub() as stub:
        yield stub


# --- the demo, once per session -----------------------------------------------------------

# The tests of the README's first command share one demo home: the year is backfilled once,
# by the first `metrics-platform demo --no-ui`, and every later demo on it only adds what is
# missing, as a user's second start does. Under `pytest -n`, their modules run in one worker.
DEMO_MODULES = (
    "metrics_platform_tests/test_cli.py",
    "metrics_platform_tests/test_docs.py",
    "metrics_platform_tests/test_ui.py",
)


@dataclass(frozen=True)
class DemoHome:
    """A project home (`METRICS_PLATFORM_HOME`) on which the demo ran once: the environment
    of the CLI on it and what that first run printed."""

    env: dict[str, str]
    first_run: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def demo_home() -> Iterator[DemoHome]:
    from metrics_platform_tests.processes import CLI, REPO, project_home

    with project_home("metrics_platform_demo_") as env:
        first = subprocess.run(
            [*CLI, "demo", "--no-ui"],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=900,
        )
        yield DemoHome(env, first)


def pytest_xdist_make_scheduler(config, log):
    """Under `pytest -n`, each module runs in one worker (its module fixtures are set up
    once), and the demo's modules share one worker and its home."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return "demo" if module in DEMO_MODULES else module

    return ModuleScheduling(config, log)


# The longest modules first (measured with `--durations`), so that under `pytest -n` no worker
# is left alone with one of them at the end. The order of the tests within a module is kept.
SLOWEST_MODULES = (
    *DEMO_MODULES,
    "metrics_platform_tests/test_metric_alerts.py",
    "metrics_platform_tests/test_late_data.py",
    "metrics_platform_tests/test_run_monitoring.py",
    "metrics_platform_tests/test_automation_daemon.py",
    "metrics_platform_tests/test_daemon.py",
    "metrics_platform_tests/test_run_queue.py",
)


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        module = item.nodeid.split("::", 1)[0]
        return SLOWEST_MODULES.index(module) if module in SLOWEST_MODULES else len(SLOWEST_MODULES)

    items.sort(key=rank)
