"""Daily rollups as a pure function: counters sum, gauges keep the day's last value."""

import pandas as pd
import pytest

from metrics_platform.defs.metrics.rollup import rollup_daily
from metrics_platform.lib.errors import MetricsPlatformError


def hourly(rows):
    frame = pd.DataFrame(rows, columns=["metric_id", "hour", "value"])
    frame["hour"] = pd.to_datetime(frame["hour"], utc=True)
    return frame


def test_counters_sum_and_gauges_take_the_last_hour():
    frame = hourly(
        [
            (1, "2026-03-10 00:00", 2.0),
            (1, "2026-03-10 23:00", 3.0),
            (1, "2026-03-11 00:00", 7.0),
            (2, "2026-03-10 05:00", 10.0),
            (2, "2026-03-10 22:00", 12.0),
            (2, "2026-03-10 03:00", 99.0),
        ]
    )
    daily = rollup_daily(frame, {1: "sum", 2: "last"})
    assert daily.to_dict("records") == [
        {"metric_id": 1, "day": pd.Timestamp("2026-03-10").date(), "value": 5.0},
        {"metric_id": 1, "day": pd.Timestamp("2026-03-11").date(), "value": 7.0},
        {"metric_id": 2, "day": pd.Timestamp("2026-03-10").date(), "value": 12.0},
    ]


def test_days_follow_the_requested_time_zone():
    frame = hourly([(1, "2026-03-10 22:30", 1.0), (1, "2026-03-10 23:00", 1.0)])
    frame["hour"] = frame["hour"].dt.floor("h")
    daily = rollup_daily(frame, {1: "sum"}, timezone="Europe/Paris")
    assert daily["day"].tolist() == [
        pd.Timestamp("2026-03-10").date(),
        pd.Timestamp("2026-03-11").date(),
    ]


def test_an_empty_day_rolls_up_to_no_rows():
    assert rollup_daily(hourly([]), {}).empty


def test_a_metric_missing_from_the_catalog_is_an_error():
    with pytest.raises(MetricsPlatformError, match="not in the catalog"):
        rollup_daily(hourly([(5, "2026-03-10 00:00", 1.0)]), {1: "sum"})


def test_a_day_of_23_hours_sums_its_own_hours_and_a_gauge_takes_its_last():
    """2026-03-29 in Europe/Paris starts at 23:00 UTC the day before and has 23 hours."""
    hours = pd.date_range("2026-03-28 22:00", "2026-03-29 23:00", freq="h", tz="UTC")
    frame = pd.concat(
        [
            pd.DataFrame({"metric_id": 1, "hour": hours, "value": 1.0}),
            pd.DataFrame({"metric_id": 2, "hour": hours, "value": range(len(hours))}),
        ]
    ).sample(frac=1, random_state=4)
    daily = rollup_daily(frame, {1: "sum", 2: "last"}, timezone="Europe/Paris")
    by_key = {(r["metric_id"], str(r["day"])): r["value"] for r in daily.to_dict("records")}
    assert by_key[(1, "2026-03-29")] == 23
    assert by_key[(1, "2026-03-28")] == 1 and by_key[(1, "2026-03-30")] == 2
    assert by_key[(2, "2026-03-29")] == 23  # 21:00 UTC (the 24th hour given), its last hour
