"""The product database: counts of rows that existed at the end of each hour."""

from __future__ import annotations

from datetime import datetime, timedelta

import dagster as dg
import psycopg2
from psycopg2 import sql
from pydantic import Field, field_validator, model_validator

from metrics_platform.defs.sources.product_db import SOURCE
from metrics_platform.lib.database import PRODUCT_DATABASE_URL_ENV, source_cursor
from metrics_platform.lib.errors import SourceError
from metrics_platform.lib.identifiers import QualifiedName, validate_identifier
from metrics_platform.lib.metric_rows import validate_metric_name

ONE_HOUR = timedelta(hours=1)


class CountedTable(dg.Config):
    """One table whose rows are counted every hour."""

    table: str = Field(description="Table name, optionally schema-qualified (`schema.table`).")
    created_at_column: str | None = Field(
        default=None,
        description=(
            "Column holding each row's creation time. With it, any past hour counts the rows "
            "that existed at its end, so backfills are exact; without it, only the latest "
            "closed hour can be counted."
        ),
    )
    metric: str | None = Field(
        default=None, description="Metric name; default `objects.<table>.count`."
    )
    id_column: str | None = Field(
        default=None,
        description=(
            "An ever-increasing id column (an identity or serial). With it and a creation "
            "column, the late-rows sensor notices rows that arrive for hours already counted."
        ),
    )

    @field_validator("table")
    @classmethod
    def _table_is_identifier(cls, value: str) -> str:
        QualifiedName.parse(value, key="product_db.tables[].table")
        return value

    @field_validator("created_at_column", "id_column")
    @classmethod
    def _column_is_identifier(cls, value: str | None, info) -> str | None:
        if value is not None:
            validate_identifier(value, key=f"product_db.tables[].{info.field_name}")
        return value

    @model_validator(mode="after")
    def _metric_name_is_valid(self):
        validate_metric_name(self.metric_name, key="product_db.tables[].metric")
        return self

    @property
    def qualified_name(self) -> QualifiedName:
        return QualifiedName.parse(self.table, key="product_db.tables[].table")

    @property
    def metric_name(self) -> str:
        return self.metric or f"objects.{self.qualified_name.name}.count"


# Rows existing at the end of each hour of [start, end): rows created before the window (or with
# no creation time) plus a running sum of the rows created in each hour of the window.
_HISTORICAL_COUNTS = sql.SQL(
    """
    WITH hours AS (
        SELECT generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour',
                               interval '1 hour') AS hour
    ), created AS (
        SELECT date_trunc('hour', {column}) AS hour, count(*) AS n
        FROM {table}
        WHERE {column} >= %(start)s AND {column} < %(end)s
        GROUP BY 1
    ), before AS (
        SELECT count(*) AS n FROM {table} WHERE {column} < %(start)s OR {column} IS NULL
    )
    SELECT hours.hour,
           (before.n + coalesce(sum(created.n) OVER (ORDER BY hours.hour), 0))::bigint AS rows
    FROM hours CROSS JOIN before LEFT JOIN created USING (hour)
    ORDER BY hours.hour
    """
)


class ProductDatabase(dg.ConfigurableResource):
    """Read-only access to the product's own Postgres database."""

    url: str = Field(
        description=f"Postgres URL of the product database ({PRODUCT_DATABASE_URL_ENV})."
    )
    tables: list[CountedTable] = Field(default_factory=list, description="Tables to count.")

    def late_rows(
        self, last_ids: dict[str, int], before: datetime
    ) -> dict[str, tuple[int, list[datetime]]]:
        """For each table with an id column: its highest id now, and the hours (before
        `before`) of the rows whose id is above `last_ids[table]` (none on a first look)."""
        found: dict[str, tuple[int, list[datetime]]] = {}
        tables = [t for t in self.tables if t.id_column and t.created_at_column]
        if not tables:
            return found
        with source_cursor(
            self.url, source=SOURCE, key=PRODUCT_DATABASE_URL_ENV, doing="looking for late rows"
        ) as cur:
            for table in tables:
                ident = sql.Identifier(table.id_column)
                created = sql.Identifier(table.created_at_column)
                cur.execute(
                    sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(
                        ident, table.qualified_name.sql()
                    )
                )
                top = cur.fetchone()[0]
                hours: list[datetime] = []
                if table.table in last_ids and top > last_ids[table.table]:
                    cur.execute(
                        sql.SQL(
                            "SELECT DISTINCT date_trunc('hour', {created}) FROM {table} "
                            "WHERE {id} > %s AND {id} <= %s AND {created} < %s ORDER BY 1"
                        ).format(created=created, table=table.qualified_name.sql(), id=ident),
                        (last_ids[table.table], top, before),
                    )
                    hours = [row[0] for row in cur.fetchall()]
                found[table.table] = (top, hours)
        return found

    def count_rows(
        self, start: datetime, end: datetime, now: datetime
    ) -> list[tuple[CountedTable, list[tuple[datetime, int]]]]:
        """For each table, (hour, rows at the end of that hour) over [start, end).

        Tables without a creation column are counted as they are now, and only when the window's
        last hour is the hour that closed most recently; for older hours they report nothing.
        """
        results = []
        with source_cursor(
            self.url, source=SOURCE, key=PRODUCT_DATABASE_URL_ENV, doing="counting rows"
        ) as cur:
            for table in self.tables:
                try:
                    results.append((table, self._count_table(cur, table, start, end, now)))
                except psycopg2.Error as exc:
                    message = (exc.pgerror or str(exc)).strip().splitlines()[0]
                    raise SourceError(
                        SOURCE,
                        f"counting {table.table}: {message}",
                        transient=isinstance(exc, psycopg2.OperationalError),
                    ) from None
        return results

    @staticmethod
    def _count_table(cur, table: CountedTable, start, end, now) -> list[tuple[datetime, int]]:
        # A configured table that is gone is an error for every hour, counted or not.
        cur.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (table.qualified_name.sql().as_string(cur),)
        )
        if not cur.fetchone()[0]:
            raise SourceError(SOURCE, f"table {table.table} does not exist")
        if table.created_at_column:
            cur.execute(
                _HISTORICAL_COUNTS.format(
                    table=table.qualified_name.sql(),
                    column=sql.Identifier(table.created_at_column),
                ),
                {"start": start, "end": end},
            )
            return cur.fetchall()
        if not (end <= now < end + ONE_HOUR):
            return []
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table.qualified_name.sql()))
        return [(end - ONE_HOUR, cur.fetchone()[0])]
