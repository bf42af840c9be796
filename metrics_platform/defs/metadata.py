"""Metadata every partitioned materialization records, and the column schemas assets declare.

A declared `dagster/column_schema` is definition metadata: the UI shows the columns before any
materialization, and the IO manager checks every output against it instead of recording the
schema again on each partition's materialization (a range run records one per partition).
"""

from datetime import datetime

import dagster as dg


def window_metadata(start: datetime, end: datetime, **counts: int) -> dict[str, dg.MetadataValue]:
    """The window a materialization covered, and its counters (rows read, written...)."""
    return {
        "window_start": dg.MetadataValue.timestamp(start),
        "window_end": dg.MetadataValue.timestamp(end),
        **{name: dg.MetadataValue.int(int(value)) for name, value in counts.items()},
    }


_PERIODS = {
    "hour": ("timestamptz", "Start of the UTC hour."),
    "day": ("date", "The business day."),
}


def raw_table_schema(period: str) -> dg.TableSchema:
    """Columns of a raw source table `raw.<asset>`: what the source said for each period."""
    period_type, period_description = _PERIODS[period]
    return dg.TableSchema(
        columns=[
            dg.TableColumn(period, period_type, description=period_description),
            dg.TableColumn("metric", "text", description="Platform metric name."),
            dg.TableColumn("value", "double precision", description="The value for the period."),
        ]
    )


def value_table_schema(period: str) -> dg.TableSchema:
    """Columns of a value table of the metric store (`metrics.hourly_values`...)."""
    period_type, period_description = _PERIODS[period]
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                "metric_id", "integer", description="Id in the `metrics.metric` catalog."
            ),
            dg.TableColumn(period, period_type, description=period_description),
            dg.TableColumn("value", "double precision", description="The value for the period."),
        ]
    )


def value_table_metadata(period: str) -> dict:
    """Definition metadata of an asset stored in a value table of the metric store: its
    partition column, its key (stored values are never replaced by fewer, see
    `lib/postgres_io/kept_values.py`) and its columns."""
    return {
        "partition_expr": period,
        "primary_key": ["metric_id", period],
        "dagster/column_schema": value_table_schema(period),
    }
