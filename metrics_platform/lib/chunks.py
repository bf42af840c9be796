"""Cutting a long window into pieces.

A range run hands an asset its whole window (a year of hours, or nine). What is built from it
(a source client's Python tuples, the objects a normalizer makes, a frame and its copies) is
several times the size of the rows it ends as, so the window is made, written and read a piece
at a time (`lib/postgres_io/pieces.py`): consecutive sub-windows of whole days, each of about
`CHUNK_ROWS` rows at the asset's width, so that memory is bounded by a piece whatever the span.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from metrics_platform.lib.errors import ConfigurationError

# The shortest piece: a day of hours, so that a piece of a table of days is whole days.
MIN_PIECE_HOURS = 24
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
    days = rows // max(1, rows_per_hour) // MIN_PIECE_HOURS
    return max(1, days) * MIN_PIECE_HOURS


def sub_windows(start: datetime, end: datetime, hours: int) -> list[tuple[datetime, datetime]]:
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
