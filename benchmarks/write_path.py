"""Section 2: the same rows written (and read back) several ways, into `metrics.hourly_values`.

- raw COPY: the rows already serialized in memory, one `COPY ... FROM STDIN` straight into the
  table. Only the server's work and the transfer: the limit for any write path.
- IO manager: the platform's write path as Dagster calls it (`PostgresDbClient` +
  `PostgresPandasTypeHandler`: lock, delete the window, COPY into a temp table, one
  `INSERT ... ON CONFLICT`), from the DataFrame, serialization included. Measured into an
  empty window (a first backfill) and over a full one (a re-run replaces every row).
- pandas `to_sql`, plain (SQLAlchemy's batched executemany) and `method="multi"`
  (multi-row INSERTs of 1,000 rows), on at most `to_sql_rows` of the rows: their rate does not
  depend on the size of the write, and the full frame would take minutes.

For reference, raw COPY and the IO manager are measured again with the metric ids checked row
by row by a foreign key to the catalog (the schema before migration 4, which checks them once
per statement), and with no check at all (the ceiling).

Loading is measured the same way: raw `COPY (SELECT ...) TO STDOUT` into memory, the IO
manager's load path (the same COPY, parsed into typed columns), and `pandas.read_sql`.

Every write starts from an empty table; each number is the best of `repeat` tries.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import sqlalchemy
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice

from benchmarks.synthetic import catalog_metrics, hourly_values_frame
from metrics_platform.lib.database import connect, sqlalchemy_url
from metrics_platform.lib.postgres_io import PostgresDbClient, PostgresPandasTypeHandler

COLUMNS = "metric_id, hour, value"


def _table_slice(start: datetime, end: datetime) -> TableSlice:
    return TableSlice(
        table="hourly_values",
        schema="metrics",
        database="bench",
        columns=None,
        partition_dimensions=[
            TablePartitionDimension(partition_expr="hour", partitions=TimeWindow(start, end))
        ],
    )


_contexts: dict[str, object] = {}


def _output_context() -> dg.OutputContext:
    # Built once: a test context sets up a throwaway Dagster instance, which is not the write's.
    if "output" not in _contexts:
        context = dg.build_output_context(definition_metadata={"partition_expr": "hour"})
        context.log.setLevel(logging.WARNING)  # the client's per-write debug line
        _contexts["output"] = context
    return _contexts["output"]


def _input_context() -> dg.InputContext:
    if "input" not in _contexts:
        _contexts["input"] = dg.build_input_context()
    return _contexts["input"]


def io_manager_write(url: str, frame: pd.DataFrame, start: datetime, end: datetime) -> dict:
    """What `DbIOManager.handle_output` does with the platform's client and type handler."""
    client, handler = PostgresDbClient(url), PostgresPandasTypeHandler()
    table_slice = _table_slice(start, end)
    context = _output_context()
    with client.connect(context, table_slice) as conn:
        client.ensure_schema_exists(context, table_slice, conn)
        client.delete_table_slice(context, table_slice, conn)
        return handler.handle_output(context, table_slice, frame, conn)


def io_manager_load(url: str, start: datetime, end: datetime) -> pd.DataFrame:
    client, handler = PostgresDbClient(url), PostgresPandasTypeHandler()
    table_slice = _table_slice(start, end)
    context = _input_context()
    with client.connect(context, table_slice) as conn:
        return handler.load_input(context, table_slice, conn)


def _raw_copy(url: str, text: str) -> None:
    """Raw COPY of CSV text already in memory into `metrics.hourly_values`."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.copy_expert(
                f"COPY metrics.hourly_values ({COLUMNS}) FROM STDIN WITH (FORMAT csv)",
                io.StringIO(text),
            )
    finally:
        conn.close()


def _truncate(url: str) -> None:
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("TRUNCATE metrics.hourly_values")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE metrics.hourly_values")
    finally:
        conn.close()


def _best(repeat: int, prepare: Callable[[], None], action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        prepare()
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(
    create_database: Callable[[str], str],
    *,
    metrics: int,
    start: datetime,
    hours: int,
    to_sql_rows: int,
    repeat: int = 2,
) -> dict:
    url = create_database("write_path")
    conn = connect(url)
    try:
        catalog_metrics(conn, metrics, "bench.metric_")
    finally:
        conn.close()

    end = start + timedelta(hours=hours)
    frame = hourly_values_frame(metrics, start, hours)
    rows = len(frame)
    text = frame.to_csv(index=False, header=False)
    results: dict[str, dict] = {}

    def raw_copy():
        _raw_copy(url, text)

    def empty():
        _truncate(url)

    results["raw COPY (pre-serialized)"] = {
        "rows": rows,
        "seconds": _best(repeat, empty, raw_copy),
    }
    results["IO manager, empty window"] = {
        "rows": rows,
        "seconds": _best(repeat, empty, lambda: io_manager_write(url, frame, start, end)),
    }

    def full():
        _truncate(url)
        io_manager_write(url, frame, start, end)

    results["IO manager, re-run of a full window"] = {
        "rows": rows,
        "seconds": _best(repeat, full, lambda: io_manager_write(url, frame, start, end)),
    }

    sample = frame.iloc[: min(rows, to_sql_rows)]
    engine = sqlalchemy.create_engine(sqlalchemy_url(url))
    try:
        for label, kwargs in (
            ("pandas to_sql", {}),
            ("pandas to_sql(method='multi')", {"method": "multi", "chunksize": 1000}),
        ):

            def to_sql(kwargs=kwargs):
                with engine.begin() as connection:
                    sample.to_sql(
                        "hourly_values",
                        connection,
                        schema="metrics",
                        if_exists="append",
                        index=False,
                        **kwargs,
                    )

            results[label] = {"rows": len(sample), "seconds": _best(1, empty, to_sql)}

        # Loading: the table holds the full window again.
        _truncate(url)
        io_manager_write(url, frame, start, end)
        loads: dict[str, dict] = {}

        def raw_copy_out():
            conn = connect(url)
            try:
                with conn, conn.cursor() as cur:
                    buffer = io.StringIO()
                    cur.copy_expert(
                        cur.mogrify(
                            f"COPY (SELECT {COLUMNS} FROM metrics.hourly_values "
                            "WHERE hour >= %s AND hour < %s) TO STDOUT WITH (FORMAT csv)",
                            (start, end),
                        ).decode(),
                        buffer,
                    )
            finally:
                conn.close()

        loads["raw COPY TO (text in memory)"] = {
            "rows": rows,
            "seconds": _best(repeat, lambda: None, raw_copy_out),
        }
        loaded = io_manager_load(url, start, end)
        expected = frame.sort_values(["metric_id", "hour"], ignore_index=True)
        pd.testing.assert_frame_equal(
            loaded.sort_values(["metric_id", "hour"], ignore_index=True), expected
        )
        loads["IO manager load"] = {
            "rows": rows,
            "seconds": _best(repeat, lambda: None, lambda: io_manager_load(url, start, end)),
        }

        def read_sql():
            with engine.connect() as connection:
                pd.read_sql(
                    sqlalchemy.text(
                        f"SELECT {COLUMNS} FROM metrics.hourly_values "
                        "WHERE hour >= :start AND hour < :end"
                    ),
                    connection,
                    params={"start": start, "end": end},
                )

        loads["pandas read_sql"] = {"rows": rows, "seconds": _best(1, lambda: None, read_sql)}
    finally:
        engine.dispose()

    # For reference: the same two writes with a row-by-row foreign key, then with no check.
    for label, statements in (
        (
            "row-by-row foreign key",
            "ALTER TABLE metrics.hourly_values DISABLE TRIGGER hourly_values_metric_ids; "
            "ALTER TABLE metrics.hourly_values ADD CONSTRAINT hourly_values_metric_id_fkey "
            "FOREIGN KEY (metric_id) REFERENCES metrics.metric (id)",
        ),
        (
            "no metric id check",
            "ALTER TABLE metrics.hourly_values DROP CONSTRAINT hourly_values_metric_id_fkey",
        ),
    ):
        conn = connect(url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(statements)
        finally:
            conn.close()
        results[f"raw COPY, {label}"] = {"rows": rows, "seconds": _best(repeat, empty, raw_copy)}
        results[f"IO manager, empty window, {label}"] = {
            "rows": rows,
            "seconds": _best(repeat, empty, lambda: io_manager_write(url, frame, start, end)),
        }
    return {
        "writes": results,
        "loads": loads,
        "widths": measure_widths(create_database, rows=rows, start=start, repeat=repeat),
        "rows": rows,
        "round_trip": round_trip(create_database("round_trip")),
    }


WIDTHS = (10, 100, 1000)


def measure_widths(
    create_database: Callable[[str], str],
    *,
    rows: int,
    start: datetime,
    widths: tuple[int, ...] = WIDTHS,
    repeat: int = 2,
) -> list[dict]:
    """Raw COPY and the IO manager (empty window) writing about `rows` rows at each width
    (metrics per hour; the span shrinks as the width grows)."""
    url = create_database("write_widths")
    conn = connect(url)
    try:
        catalog_metrics(conn, max(widths), "bench.metric_")
    finally:
        conn.close()

    def empty():
        _truncate(url)

    measured = []
    for width in widths:
        hours = max(1, rows // width)
        end = start + timedelta(hours=hours)
        frame = hourly_values_frame(width, start, hours)
        text = frame.to_csv(index=False, header=False)

        raw = _best(repeat, empty, lambda text=text: _raw_copy(url, text))
        managed = _best(
            repeat, empty, lambda frame=frame, end=end: io_manager_write(url, frame, start, end)
        )
        measured.append(
            {"width": width, "hours": hours, "rows": len(frame), "raw": raw, "io_manager": managed}
        )
    return measured


def round_trip(url: str) -> str:
    """Writes a frame of awkward values through the IO manager into a table it creates, loads
    it back, and checks that both the table and the loaded frame hold exactly what was written."""
    frame = pd.DataFrame(
        {
            "hour": pd.to_datetime(
                ["2025-01-01 00:00:00", "2025-03-30 01:00:00", "2025-06-01 13:00:00"], utc=True
            ),
            "metric": ["plain", 'comma, "quote"\nnewline', ""],
            "value": [0.1, -0.0, float("nan")],
            "count": pd.array([1, None, -(2**62)], dtype="Int64"),
            "day": [date(2025, 1, 1), None, date(1999, 12, 31)],
            "at": pd.to_datetime(
                ["2025-01-01 00:00:00.123456", None, "1970-01-01 00:00:00.000000"], utc=True
            ),
            "ok": pd.array([True, None, False], dtype="boolean"),
        }
    )
    table_slice = TableSlice(
        table="awkward",
        schema="round_trip",
        database="bench",
        columns=None,
        partition_dimensions=[
            TablePartitionDimension(
                partition_expr="hour",
                partitions=TimeWindow(
                    datetime(2025, 1, 1, tzinfo=timezone.utc),
                    datetime(2026, 1, 1, tzinfo=timezone.utc),
                ),
            )
        ],
    )
    client, handler = PostgresDbClient(url), PostgresPandasTypeHandler()
    context = _output_context()
    with client.connect(context, table_slice) as conn:
        client.ensure_schema_exists(context, table_slice, conn)
        client.delete_table_slice(context, table_slice, conn)
        handler.handle_output(context, table_slice, frame, conn)
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT metric, value::text, count, day, at, ok FROM round_trip.awkward ORDER BY hour"
            )
            stored = cur.fetchall()
    finally:
        conn.close()
    assert stored == [
        (
            "plain",
            "0.1",
            1,
            date(2025, 1, 1),
            datetime(2025, 1, 1, 0, 0, 0, 123456, timezone.utc),
            True,
        ),
        ('comma, "quote"\nnewline', "-0", None, None, None, None),
        ("", None, -(2**62), date(1999, 12, 31), datetime(1970, 1, 1, tzinfo=timezone.utc), False),
    ], stored
    with client.connect(_input_context(), table_slice) as conn:
        loaded = handler.load_input(_input_context(), table_slice, conn)
    assert loaded["hour"].tolist() == frame["hour"].tolist()
    assert loaded["value"].iloc[0] == 0.1 and str(loaded["value"].iloc[1]) == "-0.0"
    assert loaded["value"].isna().tolist() == [False, False, True]
    assert loaded["count"].tolist()[::2] == [1, -(2**62)] and loaded["count"].isna().iloc[1]
    assert loaded["day"].iloc[0] == date(2025, 1, 1) and loaded["day"].iloc[2] == date(1999, 12, 31)
    assert loaded["at"].tolist()[::2] == frame["at"].tolist()[::2]
    assert loaded["ok"].tolist()[::2] == [True, False]
    return "exact"
