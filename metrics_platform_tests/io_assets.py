"""Small partitioned assets that exercise the Postgres IO manager (shared with subprocesses)."""

import dagster as dg
import pandas as pd

from metrics_platform.defs.partitions import daily_partitions, hourly_partitions, single_run

VALUES_KEY = dg.AssetKey(["test_io", "values"])
DAILY_KEY = dg.AssetKey(["test_io", "daily"])
METRICS = ["alpha", "beta", "gamma"]
loaded_windows: list[pd.DataFrame] = []


class ValuesConfig(dg.Config):
    version: int = 1
    metrics: list[str] = METRICS
    rows_per_hour: int = 0  # extra filler rows per hour, to make a write large
    outside_window: bool = False  # emit one row for the hour after the window
    repeat_a_key: bool = False  # emit the first row twice
    extra_column: bool = False  # emit a column the asset does not declare


def values_frame(start, end, config: ValuesConfig) -> pd.DataFrame:
    hours = pd.date_range(start, end, freq="h", inclusive="left", tz="UTC")
    names = list(config.metrics) + [f"filler_{i}" for i in range(config.rows_per_hour)]
    frame = pd.DataFrame(
        [(hour, name) for hour in hours for name in names], columns=["hour", "metric"]
    )
    frame["hour"] = pd.to_datetime(frame["hour"], utc=True)
    frame["value"] = [
        config.version * 1000 + hour.hour + index
        for hour, index in zip(frame["hour"], frame.index % len(names))
    ]
    frame["value"] = frame["value"].astype("float64")
    if config.outside_window:
        extra = pd.DataFrame({"hour": [pd.Timestamp(end)], "metric": ["alpha"], "value": [1.0]})
        frame = pd.concat([frame, extra], ignore_index=True)
    if config.repeat_a_key:
        frame = pd.concat([frame, frame.iloc[:1]], ignore_index=True)
    if config.extra_column:
        frame["note"] = "unexpected"
    return frame


@dg.asset(
    key=VALUES_KEY,
    partitions_def=hourly_partitions,
    backfill_policy=single_run,
    metadata={
        "partition_expr": "hour",
        "primary_key": ["metric", "hour"],
        "dagster/column_schema": dg.TableSchema(
            columns=[
                dg.TableColumn("hour", "timestamptz"),
                dg.TableColumn("metric", "text"),
                dg.TableColumn("value", "double precision"),
            ]
        ),
    },
)
def values(context: dg.AssetExecutionContext, config: ValuesConfig) -> pd.DataFrame:
    window = context.partition_time_window
    return values_frame(window.start, window.end, config)


@dg.asset(
    key=DAILY_KEY,
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    ins={"hourly": dg.AssetIn(key=VALUES_KEY)},
    metadata={"partition_expr": "day", "primary_key": ["metric", "day"]},
)
def daily(context: dg.AssetExecutionContext, hourly: pd.DataFrame) -> pd.DataFrame:
    loaded_windows.append(hourly)
    out = (
        hourly.assign(day=hourly["hour"].dt.date)
        .groupby(["metric", "day"], as_index=False)["value"]
        .sum()
    )
    out["day"] = out["day"].astype(object)
    return out
