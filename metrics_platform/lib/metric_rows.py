"""The one shape every source is normalized to before it reaches the metric store.

A source reports, for each UTC hour (its dimension), a set of named metric values. Flattened, that
is a long frame with one row per (hour, metric): `hour` (UTC, on the hour), `metric` (the
platform metric name, e.g. `objects.users.count`) and `value` (a finite float).
`metric_frame` builds it and checks it; anything that does not fit raises `SourceError`
naming the source, so a bad payload fails its own asset and never lands as a silent zero.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime

import numpy as np
import pandas as pd

from metrics_platform.lib.errors import ConfigurationError, SourceError

METRIC_ROW_COLUMNS = ["hour", "metric", "value"]
DAILY_ROW_COLUMNS = ["day", "metric", "value"]
METRIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:\-]{0,199}")


def validate_metric_name(name: str, *, key: str) -> str:
    if not isinstance(name, str) or not METRIC_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{key}: {name!r} is not a valid metric name (letters, digits, '_', '.', ':', '-')"
        )
    return name


def empty_metric_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "hour": pd.Series([], dtype="datetime64[ns, UTC]"),
            "metric": pd.Series([], dtype=object),
            "value": pd.Series([], dtype="float64"),
        }
    )


def metric_frame(
    source: str,
    hours: Iterable[datetime] | pd.Series,
    metrics: Iterable[str] | pd.Series,
    values: Iterable[float] | pd.Series,
) -> pd.DataFrame:
    """A checked long frame from three parallel columns."""
    try:
        frame = pd.DataFrame(
            {
                "hour": pd.to_datetime(pd.Series(list(hours), dtype=object), utc=True),
                "metric": pd.Series(list(metrics), dtype=object),
                "value": pd.to_numeric(pd.Series(list(values), dtype=object)).astype("float64"),
            }
        )
        return check_metric_frame(source, frame)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SourceError(source, f"values do not fit the metric row shape: {exc}") from None


def metric_frame_from_records(
    source: str, records: Iterable[tuple[Mapping, Mapping[str, float]]]
) -> pd.DataFrame:
    """Flatten (dimensions, metrics) records, each with an `hour` dimension."""
    hours, names, values = [], [], []
    for dimensions, metrics in records:
        if "hour" not in dimensions:
            raise SourceError(source, f"record without an hour dimension: {dict(dimensions)!r}")
        for name, value in metrics.items():
            hours.append(dimensions["hour"])
            names.append(name)
            values.append(value)
    if not names:
        return empty_metric_frame()
    return metric_frame(source, hours, names, values)


def check_metric_frame(source: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Raise `SourceError` unless `frame` is a well-formed, finite, duplicate-free long frame."""
    if list(frame.columns) != METRIC_ROW_COLUMNS:
        raise SourceError(
            source, f"expected columns {METRIC_ROW_COLUMNS}, got {list(frame.columns)}"
        )
    if frame.empty:
        return empty_metric_frame()
    if frame["hour"].isna().any():
        raise SourceError(source, "a row has no hour")
    if (frame["hour"] != frame["hour"].dt.floor("h")).any():
        bad = frame.loc[frame["hour"] != frame["hour"].dt.floor("h"), "hour"].iloc[0]
        raise SourceError(source, f"hour {bad.isoformat()} is not on the hour")
    bad_names = [
        n for n in frame["metric"].unique() if not (isinstance(n, str) and METRIC_NAME.fullmatch(n))
    ]
    if bad_names:
        raise SourceError(source, f"invalid metric name {bad_names[0]!r}")
    values = frame["value"].to_numpy()
    if not np.isfinite(values).all():
        bad = values[~np.isfinite(values)][0]
        raise SourceError(source, f"non-finite value {bad!r}; refusing to store it")
    duplicated = frame.duplicated(["hour", "metric"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise SourceError(
            source, f"metric {row['metric']!r} reported twice for hour {row['hour'].isoformat()}"
        )
    return frame.sort_values(["hour", "metric"], ignore_index=True)


def sanitize_name_part(text: str) -> str:
    """A label or event type made safe for a metric name: runs of other characters become `_`."""
    return re.sub(r"[^A-Za-z0-9_:\-]+", "_", str(text)).strip("_") or "_"


def daily_metric_frame(source: str, days, metrics, values) -> pd.DataFrame:
    """A checked (day, metric, value) frame, for values a source computes per day itself."""
    try:
        hours = [pd.Timestamp(day).tz_localize("UTC") if day is not None else None for day in days]
    except (TypeError, ValueError, OverflowError) as exc:
        raise SourceError(source, f"a day is not a date: {exc}") from None
    frame = metric_frame(source, hours, metrics, values)
    return pd.DataFrame(
        {
            "day": pd.Series([h.date() for h in frame["hour"]], dtype=object),
            "metric": frame["metric"],
            "value": frame["value"],
        }
    )


def empty_daily_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "day": pd.Series([], dtype=object),
            "metric": pd.Series([], dtype=object),
            "value": pd.Series([], dtype="float64"),
        }
    )


def fill_zeros(
    frame: pd.DataFrame, metrics: Iterable[str], periods: Iterable, period: str = "hour"
) -> pd.DataFrame:
    """`frame` with a 0 for every (period, metric) of `metrics` x `periods` it has no row for.

    For a source that was read for those periods: a counter of something that did not happen is
    0, not "not measured". Only metrics that are 0 when nothing happens belong in `metrics`
    (counts, sums, distinct users), never ones that cannot exist without events (percentiles).
    """
    names = sorted(set(metrics))
    periods = list(periods)
    if not names or not periods:
        return frame
    grid = pd.MultiIndex.from_product([periods, names], names=[period, "metric"])
    present = pd.MultiIndex.from_frame(frame[[period, "metric"]]) if len(frame) else None
    missing = grid if present is None else grid.difference(present)
    if not len(missing):
        return frame
    zeros = missing.to_frame(index=False).assign(value=0.0)
    if period == "hour":
        zeros["hour"] = pd.to_datetime(zeros["hour"], utc=True)
    else:
        zeros[period] = zeros[period].astype(object)
    zeros["metric"] = zeros["metric"].astype(object)
    columns = [period, "metric", "value"]
    filled = zeros[columns] if not len(frame) else pd.concat([frame[columns], zeros[columns]])
    return filled.sort_values([period, "metric"], ignore_index=True)


def window_hours(start: datetime, end: datetime) -> pd.DatetimeIndex:
    """The UTC hours of the half-open window [start, end)."""
    return pd.date_range(start, end, freq="h", inclusive="left", tz="UTC")
