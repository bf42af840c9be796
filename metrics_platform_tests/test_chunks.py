"""Reading a long window in pieces."""

from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from metrics_platform.lib.chunks import (
    CHUNK_HOURS,
    CHUNK_ROWS,
    PIECE_ROWS_ENV,
    piece_hours,
    read_in_pieces,
    sub_windows,
)
from metrics_platform.lib.errors import ConfigurationError

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_sub_windows_cover_the_window_without_overlap():
    end = START + timedelta(hours=2 * CHUNK_HOURS + 5)
    windows = sub_windows(START, end)
    assert [e - s for s, e in windows] == [timedelta(hours=CHUNK_HOURS)] * 2 + [timedelta(hours=5)]
    assert windows[0][0] == START and windows[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))
    assert sub_windows(START, START + timedelta(hours=3)) == [(START, START + timedelta(hours=3))]
    assert sub_windows(START, START) == []
    with pytest.raises(ValueError):
        sub_windows(START, end, hours=0)


def _hours(start, end):
    hours = pd.date_range(start, end, freq="h", inclusive="left")
    return pd.DataFrame({"hour": hours, "value": range(len(hours))})


def test_read_in_pieces_joins_the_pieces_in_order():
    end = START + timedelta(hours=20)
    asked = []

    def read(start, end):
        asked.append((start, end))
        return _hours(start, end) if start < START + timedelta(hours=8) else _hours(start, start)

    frame = read_in_pieces(START, end, read, hours=6)
    assert asked == sub_windows(START, end, 6)
    assert list(frame["hour"]) == list(pd.date_range(START, periods=12, freq="h"))
    assert list(frame.index) == list(range(12))
    # An empty window is asked once, for its empty frame's columns.
    empty = read_in_pieces(START, START, lambda s, e: _hours(s, e))
    assert list(empty.columns) == ["hour", "value"] and not len(empty)


def test_a_piece_holds_about_the_rows_asked_for_in_whole_days(monkeypatch):
    monkeypatch.delenv(PIECE_ROWS_ENV, raising=False)
    assert piece_hours(1000) == CHUNK_ROWS // 1000 // 24 * 24  # 240 hours: 240,000 rows
    assert piece_hours(100) == 2496
    assert piece_hours(10**6) == 24  # never less than a day
    assert piece_hours(0) == CHUNK_ROWS // 24 * 24
    monkeypatch.setenv(PIECE_ROWS_ENV, "48000")
    assert piece_hours(1000) == 48
    for bad in ("0", "-5", "many"):
        monkeypatch.setenv(PIECE_ROWS_ENV, bad)
        with pytest.raises(ConfigurationError, match=PIECE_ROWS_ENV):
            piece_hours(10)
