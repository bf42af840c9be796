"""The raw event assets: hourly counts and percentiles, and daily percentiles from raw timings."""

import dagster as dg
import pandas as pd

from metrics_platform.defs.automation.conditions import WHEN_THE_DAY_IS_COMPLETE
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.partitions import (
    BUSINESS_TIMEZONE,
    daily_partitions,
    hourly_partitions,
    single_run,
    utc_window,
)
from metrics_platform.defs.sources.events import SOURCE
from metrics_platform.defs.sources.events.normalize import (
    normalize_daily,
    normalize_hourly,
)
from metrics_platform.defs.sources.events.resource import EventLog
from metrics_platform.defs.sources.failures import source_failures
from metrics_platform.lib.store import MetricSpec

HOURLY_KEY = dg.AssetKey(["raw", "events_hourly"])
DAILY_KEY = dg.AssetKey(["raw", "events_daily_timings"])
NON_NEGATIVE = "values_non_negative"
RETRY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL)


def metric_specs(names: pd.Series, event_log: EventLog) -> list[MetricSpec]:
    specs = []
    for name in sorted(set(names)):
        if ".duration.p" in name:
            percentile = name.rsplit(".p", 1)[1]
            specs.append(
                MetricSpec(
                    name,
                    "recomputed",
                    SOURCE,
                    event_log.duration_unit,
                    f"{percentile}th percentile of the event's duration.",
                )
            )
        elif name.endswith(".errors"):
            specs.append(MetricSpec(name, "sum", SOURCE, "events", "Failed events of this type."))
        else:
            specs.append(MetricSpec(name, "sum", SOURCE, "events", "Events of this type."))
    return specs


def _metadata(context: dg.AssetExecutionContext, frame: pd.DataFrame, read: int) -> dict:
    start, end = utc_window(context)
    return {
        "window_start": dg.MetadataValue.timestamp(start),
        "window_end": dg.MetadataValue.timestamp(end),
        "rows_read": dg.MetadataValue.int(read),
        "rows_written": dg.MetadataValue.int(len(frame)),
        "rows_rejected": dg.MetadataValue.int(0),
        "metrics": dg.MetadataValue.int(frame["metric"].nunique()),
    }


def _non_negative(frame: pd.DataFrame) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=NON_NEGATIVE,
        passed=bool((frame["value"] >= 0).all()),
        metadata={"min": float(frame["value"].min()) if len(frame) else 0.0},
    )


@dg.asset(
    key=HOURLY_KEY,
    group_name=SOURCE,
    kinds={"postgres", "pandas"},
    partitions_def=hourly_partitions,
    backfill_policy=single_run,
    retry_policy=RETRY,
    metadata={"partition_expr": "hour", "primary_key": ["metric", "hour"]},
    check_specs=[
        dg.AssetCheckSpec(
            NON_NEGATIVE, asset=HOURLY_KEY, description="No count or duration is negative."
        )
    ],
)
def events_hourly(
    context: dg.AssetExecutionContext, event_log: EventLog, metric_store: MetricStore
):
    """Events per type and their latency percentiles for every UTC hour, from the product's event log."""
    start, end = utc_window(context)
    with source_failures():
        rows = event_log.stats(start, end, by="hour")
        frame = normalize_hourly(rows, event_log.percentiles)
    metric_store.register_metrics(metric_specs(frame["metric"], event_log))
    yield dg.Output(frame, metadata=_metadata(context, frame, len(rows)))
    yield _non_negative(frame)


@dg.asset(
    key=DAILY_KEY,
    deps=[HOURLY_KEY],  # recomputed whenever any hour of its day re-lands
    automation_condition=WHEN_THE_DAY_IS_COMPLETE,
    group_name=SOURCE,
    kinds={"postgres", "pandas"},
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    retry_policy=RETRY,
    metadata={"partition_expr": "day", "primary_key": ["metric", "day"]},
    check_specs=[
        dg.AssetCheckSpec(
            NON_NEGATIVE, asset=DAILY_KEY, description="No duration percentile is negative."
        )
    ],
)
def events_daily_timings(
    context: dg.AssetExecutionContext, event_log: EventLog, metric_store: MetricStore
):
    """Latency percentiles per event type for every day, computed from the day's raw timings."""
    start, end = utc_window(context)
    with source_failures():
        rows = event_log.stats(start, end, by="day", timezone=BUSINESS_TIMEZONE)
        frame = normalize_daily(rows, event_log.percentiles)
    metric_store.register_metrics(metric_specs(frame["metric"], event_log))
    yield dg.Output(frame, metadata=_metadata(context, frame, len(rows)))
    yield _non_negative(frame)
