"""The metric store resource: the catalog of metrics and its ids."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime

import dagster as dg
import pandas as pd
import psycopg2.extensions
from psycopg2 import sql
from pydantic import Field

from metrics_platform.lib import store
from metrics_platform.lib.database import connect
from metrics_platform.lib.identifiers import validate_identifier
from metrics_platform.lib.metric_rows import empty_metric_frame

# Each value table's period column, as the store defines them.
PERIOD_COLUMNS = dict(store.VALUE_TABLES)


def value_frame(table: str, rows: Sequence[tuple] = ()) -> pd.DataFrame:
    """(metric_id, period, value) rows of a value table as its frame: hours as UTC
    timestamps, days as dates; no rows, an empty frame of the same columns."""
    period = PERIOD_COLUMNS[table]
    ids, periods, values = zip(*rows) if rows else ((), (), ())
    when = pd.Series(periods, dtype=object)
    return pd.DataFrame(
        {
            "metric_id": pd.Series(ids, dtype="int64"),
            period: pd.to_datetime(when, utc=True) if period == "hour" else when,
            "value": pd.Series(values, dtype="float64"),
        }
    )


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

    def metric_count(self) -> int:
        """How many metrics the catalog holds (what an hour of every metric's values is)."""
        with self.connection() as conn, conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {store.SCHEMA}.metric")
            return cur.fetchone()[0]

    def catalog(self, ids: Iterable[int] | None = None) -> Mapping[int, store.CatalogEntry]:
        with self.connection() as conn:
            return store.read_catalog(conn, ids)

    def source_metrics(self, source: str) -> Mapping[str, store.CatalogEntry]:
        """The catalog entries a source has registered, by name."""
        with self.connection() as conn:
            return {e.name: e for e in store.read_catalog(conn, source=source).values()}

    def stored_raw_rows(
        self, key: dg.AssetKey, metrics: Iterable[str], start: datetime, end: datetime
    ) -> pd.DataFrame:
        """The (hour, metric, value) rows a raw asset's table `raw.<name>` holds for `metrics`
        in [start, end); none when the table does not exist yet."""
        schema, table = key.path[0], key.path[-1]
        validate_identifier(schema, key="asset key")
        validate_identifier(table, key="asset key")
        names = sorted(set(metrics))
        with self.connection() as conn, conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{table}"',))
            rows = []
            if names and cur.fetchone()[0]:
                cur.execute(
                    sql.SQL(
                        "SELECT hour, metric, value FROM {} WHERE metric = ANY(%s) "
                        "AND hour >= %s AND hour < %s ORDER BY hour, metric"
                    ).format(sql.Identifier(schema, table)),
                    (names, start, end),
                )
                rows = cur.fetchall()
        if not rows:
            return empty_metric_frame()
        hours, names, values = zip(*rows)
        return pd.DataFrame(
            {
                "hour": pd.to_datetime(pd.Series(hours), utc=True),
                "metric": pd.Series(names, dtype=object),
                "value": pd.Series(values, dtype="float64"),
            }
        )

    def values_of_unread_sources(
        self, table: str, start: datetime | date, end: datetime | date, read: Iterable[str]
    ) -> pd.DataFrame:
        """The stored rows of `metrics.<table>` (`hourly_values` or `daily_values`) in
        [start, end) whose metric belongs to none of the `read` sources: a disabled source's
        values, or one no longer configured. Recomputing a window from the sources that are
        read keeps them as they are: a source that is not read has not answered less.

        The catalog is asked first: when every metric's source is read (the usual case), the
        window's values are not scanned at all; otherwise only those metrics' rows are read,
        through the table's primary key."""
        period = PERIOD_COLUMNS[table]
        with self.connection() as conn, conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT id FROM {} WHERE NOT source = ANY(%s)").format(
                    sql.Identifier(store.SCHEMA, "metric")
                ),
                (sorted(set(read)),),
            )
            ids = [row[0] for row in cur.fetchall()]
            rows = []
            if ids:
                cur.execute(
                    sql.SQL(
                        "SELECT metric_id, {period}, value FROM {table} WHERE metric_id = ANY(%s) "
                        "AND {period} >= %s AND {period} < %s ORDER BY 1, 2"
                    ).format(
                        period=sql.Identifier(period), table=sql.Identifier(store.SCHEMA, table)
                    ),
                    (ids, start, end),
                )
                rows = cur.fetchall()
        return value_frame(table, rows)

    def latest_raw_hour(
        self, key: dg.AssetKey, metrics: Iterable[str] | None = None, after: datetime | None = None
    ) -> datetime | None:
        """The latest hour a raw asset's table holds (for `metrics`, at or after `after`)."""
        schema, table = key.path[0], key.path[-1]
        validate_identifier(schema, key="asset key")
        validate_identifier(table, key="asset key")
        with self.connection() as conn, conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{table}"',))
            if not cur.fetchone()[0]:
                return None
            cur.execute(
                sql.SQL(
                    "SELECT max(hour) FROM {} WHERE (%s::text[] IS NULL OR metric = ANY(%s)) "
                    "AND (%s::timestamptz IS NULL OR hour >= %s)"
                ).format(sql.Identifier(schema, table)),
                (*([sorted(metrics)] * 2 if metrics is not None else [None, None]), after, after),
            )
            return cur.fetchone()[0]

    def latest_hour(self):
        """The latest hour with any value, or None."""
        with self.connection() as conn, conn, conn.cursor() as cur:
            cur.execute(f"SELECT max(hour) FROM {store.SCHEMA}.hourly_values")
            return cur.fetchone()[0]
