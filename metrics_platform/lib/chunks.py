"""Reading a long window in pieces.

A range run hands a source asset its whole window (a year of hours, or nine). What a source's
client builds from its answer (one Python tuple per row, the objects a normalizer makes) is
several times the size of the compact frame it ends as, so reading the whole window at once
holds all of that at the same time. Read piece by piece, only one piece's answer is alive at a
time: the source is asked for consecutive sub-windows of `CHUNK_HOURS` hours, each normalized
to its frame before the next one is read, and the frames are joined.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timedelta

import pandas as pd

from metrics_platform.lib.errors import ConfigurationError

# A week of hours: at 1,000 metrics, a piece is ~170,000 rows.
CHUNK_HOURS = 7 * 24
# The rows a piece of a metric asset holds (`piece_hours`): large enough that each piece's fixed
# costs (its queries, its write's checks) stay small beside its rows, small enough that a piece's
# frames and their copies stay within tens of MiB.
# `METRICS_PLATFORM_PIECE_ROWS` sets another size (fewer rows: less memory, more queries).
CHUNK_ROWS = 250_000
PIECE_ROWS_ENV = "METRICS_PLATFORM_PIECE_ROWS"


def piece_rows() -> int:
    """The rows of a piece: `METRICS_PLATFORM_PIECE_ROWS`, else `CHUNK_ROWS`."""
    text = os.environ.get(PIECE_ROWS_ENV, "").strip()
    if not text:
        return CHUNK_ROWS
    try:
        rows = int(text)
    except ValueError:
        rows = 0
    if rows < 1:
        raise ConfigurationError(f"{PIECE_ROWS_ENV}: expected a number of rows, got {text!r}")
    return rows


def piece_hours(rows_per_hour: int, rows: int | None = None) -> int:
    """Hours of a piece of about `rows` rows (`piece_rows()` by default) at `rows_per_hour`
    (e.g. the catalog's metrics): whole days, at least one."""
    rows = piece_rows() if rows is None else rows
    return max(24, rows // max(1, rows_per_hour) // 24 * 24)


def sub_windows(
    start: datetime, end: datetime, hours: int = CHUNK_HOURS
) -> list[tuple[datetime, datetime]]:
    """Consecutive half-open windows of `hours` hours (the last one shorter) covering
    [start, end); one window for a shorter span, none for an empty one."""
    if hours < 1:
        raise ValueError("a piece is at least one hour")
    step = timedelta(hours=hours)
    windows = []
    while start < end:
        windows.append((start, min(start + step, end)))
        start += step
    return windows


def read_in_pieces(
    start: datetime,
    end: datetime,
    read: Callable[[datetime, datetime], pd.DataFrame],
    hours: int = CHUNK_HOURS,
) -> pd.DataFrame:
    """`read(start, end)` for the window, done sub-window by sub-window and joined in order.
    `read` must return a frame of the same columns for any window (empty for no rows)."""
    frames = [
        read(piece_start, piece_end) for piece_start, piece_end in sub_windows(start, end, hours)
    ]
    if not frames:
        return read(start, end)
    if len(frames) == 1:
        return frames[0]
    filled = [frame for frame in frames if len(frame)]
    return pd.concat(filled or frames[:1], ignore_index=True)
