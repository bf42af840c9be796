"""The pandas half of the Postgres IO manager: DataFrames in and out through COPY.

Writing: the frame is checked against its partition window, streamed with `COPY` into a
temporary table, then moved into the target with one `INSERT ... ON CONFLICT` on the table's
primary key. A table that does not exist yet is created from the frame's dtypes (and the
`primary_key` definition metadata, if any).

Loading: `COPY (SELECT ...) TO STDOUT` of exactly the requested slice, parsed with the column
types Postgres reports, so an empty slice still comes back with the right columns and dtypes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import dagster as dg
import pandas as pd
import psycopg2.extensions
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from psycopg2 import sql

from metrics_platform.lib.errors import WriteError
from metrics_platform.lib.identifiers import validate_identifier
from metrics_platform.lib.postgres_io.client import (
    column_types,
    slice_condition,
    table_exists,
    table_identifier,
)

PREVIEW_ROWS = 5


def postgres_type(series: pd.Series) -> str:
    """The Postgres column type a new table gets for a pandas column."""
    dtype = series.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamptz"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "timestamp"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "bigint"
    if pd.api.types.is_float_dtype(dtype):
        return "double precision"
    if pd.api.types.infer_dtype(series, skipna=True) == "date":
        return "date"
    return "text"


def _parse_column(values: pd.Series, pg_type: str) -> pd.Series:
    if pg_type.startswith("timestamp with time zone"):
        return pd.to_datetime(values, utc=True, format="ISO8601")
    if pg_type.startswith("timestamp"):
        return pd.to_datetime(values, format="ISO8601")
    if pg_type == "date":
        return pd.to_datetime(values, format="%Y-%m-%d").dt.date.astype(object)
    if pg_type in ("integer", "bigint", "smallint"):
        return values.astype("int64") if not values.isna().any() else values.astype("Int64")
    if pg_type in ("double precision", "real") or pg_type.startswith("numeric"):
        return values.astype("float64")
    if pg_type == "boolean":
        return values.map({"t": True, "f": False}).astype("boolean")
    return values.astype("string")


def primary_key(cursor, table_slice: TableSlice) -> list[str]:
    cursor.execute(
        """SELECT a.attname FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
           WHERE i.indrelid = to_regclass(%s) AND i.indisprimary
           ORDER BY array_position(i.indkey, a.attnum)""",
        (f'"{table_slice.schema}"."{table_slice.table}"',),
    )
    return [row[0] for row in cursor.fetchall()]


def check_within_slice(frame: pd.DataFrame, table_slice: TableSlice) -> None:
    """Refuse rows outside the output's partition window: a write replaces its window only."""
    for dimension in table_slice.partition_dimensions or []:
        column = dimension.partition_expr
        if column not in frame.columns or not len(frame):
            continue
        if isinstance(dimension.partitions, TimeWindow):
            start, end = dimension.partitions.start, dimension.partitions.end
            values = frame[column]
            if pd.api.types.infer_dtype(values, skipna=True) == "date":
                start, end = start.date(), end.date()  # the window's own calendar dates
            else:
                start, end = (
                    pd.Timestamp(start).tz_convert("UTC"),
                    pd.Timestamp(end).tz_convert("UTC"),
                )
            outside = frame[(values < start) | (values >= end) | values.isna()]
        else:
            outside = frame[~frame[column].isin(list(dimension.partitions))]
        if len(outside):
            raise WriteError(
                f"{len(outside)} of {len(frame)} rows for {table_slice.schema}.{table_slice.table} "
                f"fall outside the partition being written ({column}: first offending value "
                f"{outside[column].iloc[0]!r}); nothing was written"
            )


def _copy_csv(frame: pd.DataFrame) -> io.StringIO:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    return buffer


def _create_table(cursor, table_slice: TableSlice, frame: pd.DataFrame, key: Sequence[str]):
    columns = [
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(postgres_type(frame[name])))
        for name in frame.columns
    ]
    if key:
        columns.append(
            sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key)))
        )
    cursor.execute(
        sql.SQL("CREATE TABLE {} ({})").format(
            table_identifier(table_slice), sql.SQL(", ").join(columns)
        )
    )


def _markdown_preview(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_no rows_"
    return frame.head(PREVIEW_ROWS).to_markdown(index=False)


class PostgresPandasTypeHandler(DbTypeHandler[pd.DataFrame]):
    """Stores and loads pandas DataFrames in Postgres tables, slice by slice."""

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pd.DataFrame]

    def handle_output(
        self,
        context: dg.OutputContext,
        table_slice: TableSlice,
        obj: pd.DataFrame,
        connection: psycopg2.extensions.connection,
    ) -> Mapping[str, dg.RawMetadataValue]:
        frame = obj
        for name in frame.columns:
            validate_identifier(name, key=f"column of {table_slice.schema}.{table_slice.table}")
        check_within_slice(frame, table_slice)

        metadata = context.definition_metadata or {}
        with connection.cursor() as cur:
            if not table_exists(cur, table_slice):
                _create_table(cur, table_slice, frame, metadata.get("primary_key") or [])
            existing = column_types(cur, table_slice)
            missing = [name for name in frame.columns if name not in existing]
            if missing:
                raise WriteError(
                    f"{table_slice.schema}.{table_slice.table} has no column(s) "
                    f"{', '.join(missing)}; nothing was written"
                )
            key = primary_key(cur, table_slice)
            target = table_identifier(table_slice)
            columns = sql.SQL(", ").join(map(sql.Identifier, frame.columns))

            written = 0
            if len(frame):
                cur.execute(
                    sql.SQL(
                        "CREATE TEMP TABLE metrics_platform_stage ON COMMIT DROP AS "
                        "SELECT {columns} FROM {target} WITH NO DATA"
                    ).format(columns=columns, target=target)
                )
                cur.copy_expert(
                    sql.SQL("COPY metrics_platform_stage ({}) FROM STDIN WITH (FORMAT csv)")
                    .format(columns)
                    .as_string(cur),
                    _copy_csv(frame),
                )
                insert = sql.SQL(
                    "INSERT INTO {target} ({columns}) SELECT {columns} FROM metrics_platform_stage"
                ).format(target=target, columns=columns)
                if key and set(key) <= set(frame.columns):
                    updates = [name for name in frame.columns if name not in key]
                    conflict = sql.SQL(" ON CONFLICT ({}) ").format(
                        sql.SQL(", ").join(map(sql.Identifier, key))
                    )
                    if updates:
                        action = sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
                            sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(name))
                            for name in updates
                        )
                    else:
                        action = sql.SQL("DO NOTHING")
                    insert = insert + conflict + action
                cur.execute(insert)
                written = cur.rowcount
                cur.execute("DROP TABLE metrics_platform_stage")

            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(target))
            table_rows = cur.fetchone()[0]

        result: dict[str, dg.RawMetadataValue] = {
            "dagster/row_count": dg.MetadataValue.int(int(table_rows)),
            "rows_written": dg.MetadataValue.int(int(written)),
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(name=name, type=postgres_type(frame[name]))
                    for name in frame.columns
                ]
            ),
            "preview": dg.MetadataValue.md(_markdown_preview(frame)),
        }
        if table_slice.partition_dimensions:
            result["dagster/partition_row_count"] = dg.MetadataValue.int(len(frame))
        return result

    def load_input(
        self,
        context: dg.InputContext,
        table_slice: TableSlice,
        connection: psycopg2.extensions.connection,
    ) -> pd.DataFrame:
        with connection.cursor() as cur:
            if not table_exists(cur, table_slice):
                return pd.DataFrame(columns=list(table_slice.columns or []))
            types = column_types(cur, table_slice)
            names = list(table_slice.columns or types)
            unknown = [name for name in names if name not in types]
            if unknown:
                raise WriteError(
                    f"{table_slice.schema}.{table_slice.table} has no column(s) {', '.join(unknown)}"
                )
            condition, params = slice_condition(table_slice.partition_dimensions, types)
            query = sql.SQL("SELECT {columns} FROM {table} WHERE {condition}").format(
                columns=sql.SQL(", ").join(map(sql.Identifier, names)),
                table=table_identifier(table_slice),
                condition=condition,
            )
            # COPY takes no bound parameters: let psycopg2 render them as escaped literals.
            select = cur.mogrify(query, params).decode()
            buffer = io.StringIO()
            cur.copy_expert(f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER)", buffer)
        buffer.seek(0)
        raw = pd.read_csv(buffer, dtype=str, keep_default_na=False, na_values=[""])
        return pd.DataFrame({name: _parse_column(raw[name], types[name]) for name in names})
