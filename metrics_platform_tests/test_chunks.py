"""Cutting a long window into pieces."""

from datetime import datetime, timedelta, timezone

import pytest

from metrics_platform.lib.chunks import (
    CHUNK_ROWS,
    PIECE_ROWS_ENV,
    piece_hours,
    sub_windows,
)
from metrics_platform.lib.errors import ConfigurationError

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


WEEK = 7 * 24


def test_sub_windows_cover_the_window_without_overlap():
    end = START + timedelta(hours=2 * WEEK + 5)
    windows = sub_windows(START, end, WEEK)
    assert [e - s for s, e in windows] == [timedelta(hours=WEEK)] * 2 + [timedelta(hours=5)]
    assert windows[0][0] == START and windows[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(windows, windows[1:]))
    assert sub_windows(START, START + timedelta(hours=3), WEEK) == [
        (START, START + timedelta(hours=3))
    ]
    assert sub_windows(START, START, WEEK) == []
    with pytest.raises(ValueError):
        sub_windows(START, end, hours=0)


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
