"""Stored values are never replaced by less: the check a write makes before it deletes a window.

A write replaces its partition window. If the new rows leave out keys the store already holds
for that window (a source that answers nothing for hours older than its retention, or fewer
series than before), the write would silently delete history. So, before deleting, the type
handler asks what the window holds and refuses a write that would remove any stored key without
replacing it, naming the table's source, the window and what would be lost. Nothing is written
and the stored values stay. An operator who means the shrink (a metric renamed, a series
retired) allows it for one run with the run tag `metrics_platform/allow_fewer_values=true`
(`metrics-platform materialize --allow-fewer-values`, or the tag in the UI's launchpad).

The check is exact and cheap in the common case: one grouped count of the stored window per key
(a metric), compared with the new rows per key. A key whose new rows cover every period of the
window loses nothing; a key absent from the new rows loses all its stored periods; only the keys
in between (partly covered, e.g. percentiles of hours without events) are compared period by
period.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone

import pandas as pd
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import TableSlice
from psycopg2 import sql

from metrics_platform.lib.postgres_io.client import slice_condition, table_identifier
from metrics_platform.lib.postgres_io.pieces import time_dimension

ALLOW_FEWER_VALUES_TAG = "metrics_platform/allow_fewer_values"
# Definition metadata naming the source a table's rows come from, for messages.
SOURCE_METADATA_KEY = "metrics_platform/source"
EXAMPLES = 5


@dataclass(frozen=True)
class Loss:
    """Stored (key, period) rows a write would remove without replacing them."""

    rows: int
    by_key: Mapping[object, int]  # key value -> periods lost

    def describe(self) -> str:
        biggest = sorted(self.by_key.items(), key=lambda item: (-item[1], str(item[0])))
        shown = ", ".join(f"{key} ({n})" for key, n in biggest[:EXAMPLES])
        more = f" and {len(biggest) - EXAMPLES} more" if len(biggest) > EXAMPLES else ""
        return f"{self.rows} stored value(s) of {len(biggest)} key(s): {shown}{more}"


def _periods_in_window(window: TimeWindow, is_date: bool) -> int:
    if is_date:
        return (window.end.date() - window.start.date()).days
    return int((window.end - window.start).total_seconds() // 3600)


def _normalized(values: Sequence, is_date: bool) -> list:
    """Periods as comparable plain values: dates, or UTC epoch microseconds."""
    if is_date:
        return [
            v if isinstance(v, date) and not isinstance(v, datetime) else v.date() for v in values
        ]
    stamps = pd.to_datetime(pd.Series(list(values), dtype=object), utc=True)
    return (stamps.astype("int64") // 1000).tolist()


def values_lost(
    cursor, table_slice: TableSlice, frame: pd.DataFrame, key: Sequence[str], types: Mapping
) -> Loss | None:
    """The stored rows of the slice that `frame` would remove without replacing, or None.

    `key` is the table's primary key: the slice's time column and one more column (the
    metric). Tables keyed otherwise are not checked."""
    dimension = time_dimension(table_slice)
    if dimension is None or not types:
        return None
    period = dimension.partition_expr
    others = [column for column in key if column != period]
    if len(others) != 1 or period not in key:
        return None
    (metric,) = others
    is_date = types.get(period) == "date"
    condition, params = slice_condition(table_slice.partition_dimensions, types)
    cursor.execute(
        sql.SQL("SELECT {metric}, count(*) FROM {table} WHERE {condition} GROUP BY 1").format(
            metric=sql.Identifier(metric), table=table_identifier(table_slice), condition=condition
        ),
        params,
    )
    stored = dict(cursor.fetchall())
    if not stored:
        return None

    new_counts: dict = {}
    if len(frame) and metric in frame.columns:
        new_counts = frame.groupby(frame[metric].astype(object), sort=False)[period].nunique()
        new_counts = {k.item() if hasattr(k, "item") else k: int(n) for k, n in new_counts.items()}
    full = _periods_in_window(dimension.partitions, is_date)
    lost: dict = {}
    partial = []
    for name, count in stored.items():
        covered = new_counts.get(name, 0)
        if covered == 0:
            lost[name] = count
        elif covered < full:
            partial.append(name)
    if partial:
        cursor.execute(
            sql.SQL(
                "SELECT {metric}, {period} FROM {table} WHERE {condition} AND {metric} = ANY(%s)"
            ).format(
                metric=sql.Identifier(metric),
                period=sql.Identifier(period),
                table=table_identifier(table_slice),
                condition=condition,
            ),
            [*params, partial],
        )
        rows = cursor.fetchall()
        stored_pairs = set(zip([r[0] for r in rows], _normalized([r[1] for r in rows], is_date)))
        mine = frame[frame[metric].isin(partial)]
        new_pairs = set(
            zip(mine[metric].astype(object).tolist(), _normalized(mine[period].tolist(), is_date))
        )
        for name, _ in stored_pairs - new_pairs:
            lost[name] = lost.get(name, 0) + 1
    if not lost:
        return None
    return Loss(rows=sum(lost.values()), by_key=lost)


def with_metric_names(cursor, loss: Loss, key: Sequence[str]) -> Loss:
    """The loss with catalog ids (`metric_id` keys of the metric store) shown by name."""
    if "metric_id" not in key:
        return loss
    cursor.execute("SELECT id, name FROM metrics.metric WHERE id = ANY(%s)", (sorted(loss.by_key),))
    names = dict(cursor.fetchall())
    return Loss(loss.rows, {names.get(i, f"metric id {i}"): n for i, n in loss.by_key.items()})


def allows_fewer_values(run_tags: Mapping[str, str]) -> bool:
    """Whether run tags carry the operator's explicit permission to store fewer values."""
    return str(run_tags.get(ALLOW_FEWER_VALUES_TAG, "")).lower() in ("true", "1", "yes")


def fewer_values_allowed(context) -> bool:
    """Whether the output's run carries the operator's permission to store fewer values."""
    try:
        tags = context.step_context.run_tags
    except Exception:  # an output context built outside a run has no step
        return False
    return allows_fewer_values(tags)


def window_label(table_slice: TableSlice, types: Mapping | None = None) -> str:
    """The slice's window, half-open: UTC hours (`2026-11-01T00:00Z..2026-11-02T00:00Z`), or
    the dates of a table partitioned by day (`2026-11-01..2026-11-02`)."""
    dimension = time_dimension(table_slice)
    if dimension is None:
        return "the whole table"
    start, end = dimension.partitions.start, dimension.partitions.end
    if (types or {}).get(dimension.partition_expr) == "date":
        return f"{start.date().isoformat()}..{end.date().isoformat()}"
    utc = timezone.utc
    return f"{start.astimezone(utc):%Y-%m-%dT%H:%MZ}..{end.astimezone(utc):%Y-%m-%dT%H:%MZ}"
