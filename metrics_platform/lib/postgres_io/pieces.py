"""Windows written and read piece by piece.

A range run's window can hold years of hours. An asset that works through its window piece by
piece hands the IO manager `FramePieces`: consecutive sub-windows of its output's window, each
frame made only when the IO manager comes to write it, so one piece is in memory at a time. The
write is still one transaction: every piece is checked against what the store holds for its
sub-window (stored values are never replaced by less), its sub-window deleted and its rows
copied, and a failure in any piece rolls back all of them. An input annotated `StoredWindow` is
read the same way: `read(start, end)` returns the rows of one sub-window, in the step's snapshot
(all of a step's inputs see the store as it was at one instant, see `snapshots.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import dagster as dg
import pandas as pd
from dagster._core.definitions.partitions.utils import TimeWindow
from dagster._core.storage.db_io_manager import TablePartitionDimension, TableSlice

Period = datetime | date


@dataclass
class FramePieces:
    """An output's window as consecutive (start, end, frame) pieces, made as they are written.

    `metadata` is called once every piece is written: what the producer counted on the way
    (rows, gaps), attached to the materialization beside the IO manager's own."""

    pieces: Iterable[tuple[Period, Period, pd.DataFrame]]
    metadata: Callable[[], Mapping[str, object]] = field(default=dict)


def output_in_pieces(
    windows: Sequence[tuple[datetime, datetime]],
    piece: Callable[[datetime, datetime], pd.DataFrame],
    produced: Callable[[], Mapping[str, object]],
    metadata: Mapping[str, object] | None = None,
    *,
    days: bool = False,
) -> dg.Output:
    """The output of a window cut into consecutive `windows`, each made by `piece(start, end)`.

    More than one window: `FramePieces`, each piece made as the IO manager comes to write it,
    and `produced()` (what the pieces counted) added once every piece is written. One window:
    the frame itself, made now, exactly as an asset without pieces. `metadata` is the output's
    own; `days` gives the pieces as dates (a table of days), the windows being local midnights.
    """
    if not windows:
        raise ValueError("an output's window has at least one piece")
    if len(windows) == 1:
        frame = piece(*windows[0])
        return dg.Output(frame, metadata={**(metadata or {}), **produced()})

    def bounds(start: datetime, end: datetime) -> tuple[Period, Period]:
        return (start.date(), end.date()) if days else (start, end)

    made = ((*bounds(start, end), piece(start, end)) for start, end in windows)
    return dg.Output(FramePieces(made, produced), metadata=dict(metadata or {}))


Where = Mapping[str, Sequence[object]]


class StoredWindow:
    """An input's window (`start`, `end`), read sub-window by sub-window: `read(start, end)`
    gives the rows of [start, end), which must lie inside it (datetimes, or dates for a table
    of days); `where={column: values}` keeps only the rows whose column holds one of the
    values (read so by the store, e.g. the few metrics a computation uses)."""

    def __init__(
        self,
        start: Period,
        end: Period,
        read: Callable[[Period, Period, Where | None], pd.DataFrame],
    ):
        self.start, self.end = start, end
        self._read = read

    def read(self, start: Period, end: Period, where: Where | None = None) -> pd.DataFrame:
        return self._read(start, end, where)

    @classmethod
    def of_frame(cls, frame: pd.DataFrame, period: str, start: Period, end: Period):
        """A frame already in memory, read the same way (rows of `period` in [start, end))."""

        def read(piece_start: Period, piece_end: Period, where: Where | None) -> pd.DataFrame:
            column = frame[period]
            inside = (column >= piece_start) & (column < piece_end)
            for name, values in (where or {}).items():
                inside &= frame[name].isin(list(values))
            return frame[inside].reset_index(drop=True)

        return cls(start, end, read)


def time_dimension(table_slice: TableSlice) -> TablePartitionDimension | None:
    """The slice's time dimension (its column and window), if it has one."""
    for dimension in table_slice.partition_dimensions or []:
        if isinstance(dimension.partitions, TimeWindow):
            return dimension
    return None


def window_of(table_slice: TableSlice) -> TimeWindow | None:
    """The slice's time window, if it has one."""
    dimension = time_dimension(table_slice)
    return dimension.partitions if dimension is not None else None


def sub_slice(table_slice: TableSlice, start: Period, end: Period) -> TableSlice:
    """The slice narrowed to [start, end) of its time window (datetimes in the window's own
    time zone; a date stands for its midnight there)."""
    window = window_of(table_slice)
    if window is None:
        raise ValueError(f"{table_slice.schema}.{table_slice.table} is not partitioned by time")
    tz = window.start.tzinfo

    def moment(value: Period) -> datetime:
        if isinstance(value, datetime):
            return value.astimezone(tz)
        return datetime(value.year, value.month, value.day, tzinfo=tz)

    narrowed = TimeWindow(moment(start), moment(end))
    if narrowed.start < window.start or narrowed.end > window.end:
        raise ValueError(
            f"{table_slice.schema}.{table_slice.table}: the piece {start}..{end} is outside the "
            f"output's window {window.start}..{window.end}"
        )
    return table_slice._replace(
        partition_dimensions=[
            TablePartitionDimension(d.partition_expr, narrowed)
            if isinstance(d.partitions, TimeWindow)
            else d
            for d in table_slice.partition_dimensions or []
        ]
    )


def as_stored_window(
    value: StoredWindow | pd.DataFrame, period: str, start: Period, end: Period
) -> StoredWindow:
    """An input as a `StoredWindow`, whether the IO manager read it so or another IO manager
    handed over the whole frame."""
    if isinstance(value, StoredWindow):
        return value
    return StoredWindow.of_frame(value, period, start, end)
