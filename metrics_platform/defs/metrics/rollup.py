"""Pure daily rollups of hourly values, by each metric's aggregation kind."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from metrics_platform.lib.errors import MetricsPlatformError

DAILY_COLUMNS = ["metric_id", "day", "value"]


def rollup_daily(
    hourly: pd.DataFrame, aggregations: Mapping[int, str], timezone: str = "UTC"
) -> pd.DataFrame:
    """(metric_id, hour, value) -> (metric_id, day, value).

    Counters (`sum`) add up the day's hours; gauges (`last`) take the value of the day's latest
    hour; `recomputed` metrics (percentiles) are left out: averaging hourly percentiles would be
    wrong, their sources compute each day from raw data. `day` is the calendar day of the hour
    in `timezone`.
    """
    if hourly.empty:
        return pd.DataFrame(
            {
                "metric_id": pd.Series([], dtype="int64"),
                "day": pd.Series([], dtype=object),
                "value": pd.Series([], dtype="float64"),
            }
        )
    unknown = set(hourly["metric_id"].unique()) - set(aggregations)
    if unknown:
        raise MetricsPlatformError(f"metric ids {sorted(unknown)} are not in the catalog")
    # Days as local midnights (one datetime64 each), kinds as masks: no per-row Python objects
    # over a window of hours; only the result's days become dates.
    day = hourly["hour"].dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()
    frame = pd.DataFrame({"metric_id": hourly["metric_id"], "day": day, "value": hourly["value"]})
    keys = ["metric_id", "day"]
    ids = hourly["metric_id"]
    sums = frame[ids.isin([i for i, kind in aggregations.items() if kind == "sum"])]
    sums = sums.groupby(keys, as_index=False)["value"].sum()
    gauges = ids.isin([i for i, kind in aggregations.items() if kind == "last"])
    lasts = frame[gauges].assign(hour=hourly.loc[gauges, "hour"]).sort_values(["metric_id", "hour"])
    lasts = lasts.groupby(keys, as_index=False)["value"].last()
    daily = pd.concat([sums, lasts], ignore_index=True)
    daily["metric_id"] = daily["metric_id"].astype("int64")
    daily["day"] = pd.Series(daily["day"].dt.date, dtype=object)
    return daily[DAILY_COLUMNS].sort_values(["metric_id", "day"], ignore_index=True)
