"""The DB client half of the Postgres IO manager: connections, schemas and table slices.

Every output runs in one transaction: make sure the schema exists, lock the table's writers,
then let the type handler check, delete the output's slice (the half-open partition window) and
write. If anything fails, or the process dies, Postgres rolls the whole write back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import dagster as dg
import psycopg2
import psycopg2.extensions
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import (
    DbClient,
    TablePartitionDimension,
    TableSlice,
)
from psycopg2 import sql

from metrics_platform.lib.database import connect
from metrics_platform.lib.identifiers import validate_identifier
from metrics_platform.lib.locks import create_schema, lock_new_table, lock_table
from metrics_platform.lib.postgres_io.snapshots import StepSnapshots


def table_identifier(table_slice: TableSlice) -> sql.Composable:
    validate_identifier(table_slice.schema, key="schema")
    validate_identifier(table_slice.table, key="table")
    return sql.Identifier(table_slice.schema, table_slice.table)


def table_exists(cursor, table_slice: TableSlice) -> bool:
    # Read from pg_class, not through `to_regclass`: the catalog cache of a transaction that
    # waited for another writer to create the table may not have seen it yet.
    cursor.execute(
        """SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = %s AND c.relname = %s)""",
        (table_slice.schema, table_slice.table),
    )
    return cursor.fetchone()[0]


def column_types(cursor, table_slice: TableSlice) -> dict[str, str]:
    """Column name -> formatted Postgres type, in table order (empty for a missing table)."""
    cursor.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod)
           FROM pg_catalog.pg_attribute a
           JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""",
        (table_slice.schema, table_slice.table),
    )
    return dict(cursor.fetchall())


def slice_condition(
    dimensions: Sequence[TablePartitionDimension] | None,
    types: dict[str, str] | None = None,
) -> tuple[sql.Composable, list]:
    """A WHERE condition and its bound parameters selecting exactly the slice's partitions.

    Time windows are half-open (`>= start AND < end`), so a slice never touches the next
    partition's first row. A `date` column is bounded by the window's calendar dates in the
    window's own time zone (a business day in Europe/Paris is that day, whatever UTC says).
    `partition_expr` is code-defined metadata (a column or an expression), never
    configuration; partition values are always bound parameters.
    """
    if not dimensions:
        return sql.SQL("TRUE"), []
    parts: list[sql.Composable] = []
    params: list = []
    for dimension in dimensions:
        expr = sql.SQL(dimension.partition_expr)
        if isinstance(dimension.partitions, TimeWindow):
            start, end = dimension.partitions.start, dimension.partitions.end
            if (types or {}).get(dimension.partition_expr) == "date":
                start, end = start.date(), end.date()
            parts.append(sql.SQL("({expr} >= %s AND {expr} < %s)").format(expr=expr))
            params += [start, end]
        else:
            parts.append(sql.SQL("{expr} = ANY(%s)").format(expr=expr))
            params.append(list(dimension.partitions))
    return sql.SQL(" AND ").join(parts), params


def delete_slice(cursor, table_slice: TableSlice, types: dict[str, str]) -> int:
    """Delete the slice's rows (nothing for a table that does not exist); returns how many."""
    if not types:
        return 0
    condition, params = slice_condition(table_slice.partition_dimensions, types)
    cursor.execute(
        sql.SQL("DELETE FROM {table} WHERE {condition}").format(
            table=table_identifier(table_slice), condition=condition
        ),
        params,
    )
    return cursor.rowcount


def _render_literal(value) -> str:
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'"
    if isinstance(value, list):
        return "(" + ", ".join(_render_literal(v) for v in value) + ")"
    return "'" + str(value).replace("'", "''") + "'"


class PostgresDbClient(DbClient):
    """Connections and slices for one Postgres database, named by a URL."""

    def __init__(self, url: str):
        self.url = url
        self.snapshots = StepSnapshots(url)

    @contextmanager
    def connect(
        self, context: dg.OutputContext | dg.InputContext, table_slice: TableSlice
    ) -> Iterator[psycopg2.extensions.connection]:
        if isinstance(context, dg.InputContext):
            # Every input of a step is read in one snapshot (see `snapshots.py`).
            with self.snapshots.reading(context) as conn:
                yield conn
            return
        conn = connect(self.url, application_name="metrics_platform io_manager")
        try:
            # One transaction: committed on success, rolled back on any error. A rollback on a
            # connection the server already closed must not hide the error that closed it.
            try:
                yield conn
                conn.commit()
            except BaseException:
                try:
                    conn.rollback()
                except psycopg2.Error:
                    pass
                raise
        finally:
            conn.close()
            # The step's inputs are read: an output written piece by piece read them meanwhile.
            self.snapshots.release(context)

    def ensure_schema_exists(
        self,
        context: dg.OutputContext,
        table_slice: TableSlice,
        connection: psycopg2.extensions.connection,
    ) -> None:
        """Make sure the schema exists and lock the table's writers out until this write commits.

        Writers of the same table take turns: two runs of one partition (a schedule tick racing
        a backfill) then give one complete result, never a mix of both. The lock is
        `SHARE ROW EXCLUSIVE` on the table, which needs write privileges: a read-only session
        cannot take it, and reading does not delay it. A table that does not exist yet is
        created by the first writer under a lock on its name; a writer that waited for it finds
        the table and locks it. See `metrics_platform.lib.locks` for how long a wait lasts.
        """
        schema, table = table_slice.schema, table_slice.table
        validate_identifier(schema, key="schema")
        validate_identifier(table, key="table")
        with connection.cursor() as cur:
            cur.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,))
            if not cur.fetchone()[0]:
                create_schema(cur, schema)
            if not table_exists(cur, table_slice):
                lock_new_table(cur, schema, table)
            if table_exists(cur, table_slice):
                lock_table(cur, schema, table, "SHARE ROW EXCLUSIVE")

    def delete_table_slice(
        self,
        context: dg.OutputContext,
        table_slice: TableSlice,
        connection: psycopg2.extensions.connection,
    ) -> None:
        """Nothing here: the type handler deletes the slice itself (`delete_slice`), in this
        transaction, once it has checked that the new rows replace every stored one."""

    @staticmethod
    def get_select_statement(table_slice: TableSlice) -> str:
        """The slice's SELECT as readable text, for the UI's metadata (loading binds values)."""
        columns = ", ".join(table_slice.columns) if table_slice.columns else "*"
        query = f"SELECT {columns} FROM {table_slice.schema}.{table_slice.table}"
        conditions = []
        for dimension in table_slice.partition_dimensions or []:
            if isinstance(dimension.partitions, TimeWindow):
                start = _render_literal(dimension.partitions.start)
                end = _render_literal(dimension.partitions.end)
                conditions.append(
                    f"{dimension.partition_expr} >= {start} AND {dimension.partition_expr} < {end}"
                )
            else:
                values = _render_literal(list(dimension.partitions))
                conditions.append(f"{dimension.partition_expr} IN {values}")
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        return query
