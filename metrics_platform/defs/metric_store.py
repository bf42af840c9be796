"""The metric store resource: the catalog of metrics and its ids."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
import psycopg2.extensions
from pydantic import Field

from metrics_platform.lib import store
from metrics_platform.lib.database import connect


class MetricStore(dg.ConfigurableResource):
    """The Postgres database that holds the metric catalog, hourly values and daily values."""

    url: str = Field(
        description="Postgres URL, postgresql+psycopg2://user:password@host:port/dbname."
    )

    @contextmanager
    def connection(self) -> Iterator[psycopg2.extensions.connection]:
        conn = connect(self.url, application_name="metrics_platform metric_store")
        try:
            yield conn
        finally:
            conn.close()

    def migrate(self) -> list[int]:
        with self.connection() as conn:
            return store.migrate(conn)

    def register_metrics(self, specs: Iterable[store.MetricSpec]) -> dict[str, int]:
        """Get-or-create catalog entries; returns ids by name."""
        with self.connection() as conn:
            store.migrate(conn)
            return store.ensure_metrics(conn, specs)

    def metric_ids(self, names: Iterable[str]) -> dict[str, int]:
        names = sorted(set(names))
        if not names:
            return {}
        with self.connection() as conn, conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT name, id FROM {store.SCHEMA}.metric WHERE name = ANY(%s)", (names,)
            )
            return dict(cur.fetchall())

    def catalog(self, ids: Iterable[int] | None = None) -> Mapping[int, store.CatalogEntry]:
        with self.connection() as conn:
            return store.read_catalog(conn, ids)

    def source_metrics(self, source: str) -> Mapping[str, store.CatalogEntry]:
        """The catalog entries a source has registered, by name."""
        with self.connection() as conn:
            return {e.name: e for e in store.read_catalog(conn, source=source).values()}

    def latest_hour(self):
        """The latest hour with any value, or None."""
        with self.connection() as conn, conn, conn.cursor() as cur:
            cur.execute(f"SELECT max(hour) FROM {store.SCHEMA}.hourly_values")
            return cur.fetchone()[0]
