"""The raw event assets: hourly counts and percentiles, and daily percentiles from raw timings."""

import dagster as dg
import pandas as pd

from metrics_platform.defs.metadata import window_metadata
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.partitions import (
    BUSINESS_TIMEZONE,
    utc_window,
)
from metrics_platform.defs.sources.events import SOURCE
from metrics_platform.defs.sources.events.normalize import (
    EventTypeNames,
    known_counters,
    normalize_daily,
    normalize_hourly,
)
from metrics_platform.defs.sources.events.resource import EventLog
from metrics_platform.defs.sources.failures import source_failures
from metrics_platform.defs.sources.raw import daily_raw_asset, raw_asset
from metrics_platform.lib.chunks import read_in_pieces
from metrics_platform.lib.metric_rows import fill_zeros, window_hours
from metrics_platform.lib.store import MetricSpec

HOURLY_KEY = dg.AssetKey(["raw", "events_hourly"])
DAILY_KEY = dg.AssetKey(["raw", "events_daily_timings"])
NON_NEGATIVE = "values_non_negative"


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
    return window_metadata(
        *utc_window(context),
        rows_read=read,
        rows_written=len(frame),
        rows_rejected=0,
        metrics=frame["metric"].nunique(),
    )


def _non_negative(frame: pd.DataFrame) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=NON_NEGATIVE,
        passed=bool((frame["value"] >= 0).all()),
        metadata={"min": float(frame["value"].min()) if len(frame) else 0.0},
    )


@raw_asset(
    HOURLY_KEY,
    source=SOURCE,
    kinds={"postgres", "pandas"},
    checks=[(NON_NEGATIVE, "No count or duration is negative.")],
)
def events_hourly(
    context: dg.AssetExecutionContext, event_log: EventLog, metric_store: MetricStore
):
    """Events per type and their latency percentiles for every UTC hour, from the product's event log."""
    start, end = utc_window(context)
    names = EventTypeNames(event_log.percentiles)
    read = 0

    def piece(piece_start, piece_end):
        nonlocal read
        rows = event_log.stats(piece_start, piece_end, by="hour")
        read += len(rows)
        return normalize_hourly(rows, event_log.percentiles, names)

    with source_failures(context):
        # A long window is read a week at a time: one week's answer in memory at once.
        frame = read_in_pieces(start, end, piece)
    # Every hour read has a count for every known type: 0 when none of its events happened.
    known = [*frame["metric"].unique(), *metric_store.source_metrics(SOURCE)]
    counters = known_counters(known, with_errors=event_log.error_column is not None)
    frame = fill_zeros(frame, counters, window_hours(start, end))
    metric_store.register_metrics(metric_specs(frame["metric"], event_log))
    yield dg.Output(frame, metadata=_metadata(context, frame, read))
    yield _non_negative(frame)


@daily_raw_asset(
    DAILY_KEY,
    hourly=HOURLY_KEY,
    source=SOURCE,
    kinds={"postgres", "pandas"},
    checks=[(NON_NEGATIVE, "No duration percentile is negative.")],
)
def events_daily_timings(
    context: dg.AssetExecutionContext, event_log: EventLog, metric_store: MetricStore
):
    """Latency percentiles per event type for every day, computed from the day's raw timings."""
    start, end = utc_window(context)
    with source_failures(context):
        rows = event_log.stats(start, end, by="day", timezone=BUSINESS_TIMEZONE)
        frame = normalize_daily(rows, event_log.percentiles)
    metric_store.register_metrics(metric_specs(frame["metric"], event_log))
    yield dg.Output(frame, metadata=_metadata(context, frame, len(rows)))
    yield _non_negative(frame)
