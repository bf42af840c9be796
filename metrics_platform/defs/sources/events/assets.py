"""The raw event assets: hourly counts and percentiles, and daily percentiles from raw timings."""

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone

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
from metrics_platform.defs.sources.raw import RawTotals, daily_raw_asset, raw_asset
from metrics_platform.lib.chunks import MIN_PIECE_HOURS, piece_hours, sub_windows
from metrics_platform.lib.metric_rows import fill_zeros, window_hours
from metrics_platform.lib.postgres_io.pieces import output_in_pieces
from metrics_platform.lib.store import MetricSpec

HOURLY_KEY = dg.AssetKey(["raw", "events_hourly"])
DAILY_KEY = dg.AssetKey(["raw", "events_daily_timings"])
NON_NEGATIVE = "values_non_negative"


def metric_specs(names: Iterable[str], event_log: EventLog) -> list[MetricSpec]:
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


def _registering(metric_store: MetricStore, event_log: EventLog) -> Callable[[pd.DataFrame], None]:
    """A function that registers the metrics of a piece's frame, each once per run."""
    registered: set[str] = set()

    def register(frame: pd.DataFrame) -> None:
        new = set(frame["metric"].unique()) - registered
        if new:
            metric_store.register_metrics(metric_specs(new, event_log))
            registered.update(new)

    return register


def _metadata(start, end, totals: RawTotals) -> dict:
    return window_metadata(
        start,
        end,
        rows_read=totals.read,
        rows_written=totals.written,
        rows_rejected=0,
        metrics=totals.metrics,
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
    with_errors = event_log.error_column is not None
    known = set(metric_store.source_metrics(SOURCE))
    windows = [(start, end)]
    if end - start > timedelta(hours=MIN_PIECE_HOURS):
        # A window longer than a piece may be made piece by piece, so every type with events
        # anywhere in it is known first: each piece gets its zeros, as the whole window would.
        with source_failures(context):
            types = event_log.types(start, end)
            known.update(names.of(event_type)[1] for event_type in types)
        width = max(1, len(types)) * (2 + len(event_log.percentiles))
        windows = sub_windows(start, end, piece_hours(width))
    totals = RawTotals()
    register = _registering(metric_store, event_log)

    def piece(piece_start: datetime, piece_end: datetime) -> pd.DataFrame:
        with source_failures(context):
            rows = event_log.stats(piece_start, piece_end, by="hour")
            frame = normalize_hourly(rows, event_log.percentiles, names)
        # Every hour read has a count for every known type: 0 when none of its events happened.
        counters = known_counters([*frame["metric"].unique(), *known], with_errors=with_errors)
        frame = fill_zeros(frame, counters, window_hours(piece_start, piece_end))
        register(frame)
        return totals.add(frame, read=len(rows))

    yield output_in_pieces(windows, piece, lambda: _metadata(start, end, totals))
    yield totals.non_negative(NON_NEGATIVE)


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
    window = context.partition_time_window  # local midnights of the business time zone
    start, end = utc_window(context)
    names = EventTypeNames(event_log.percentiles)
    totals = RawTotals()
    register = _registering(metric_store, event_log)

    def piece(first: datetime, last: datetime) -> pd.DataFrame:
        with source_failures(context):
            rows = event_log.stats(
                first.astimezone(timezone.utc),
                last.astimezone(timezone.utc),
                by="day",
                timezone=BUSINESS_TIMEZONE,
            )
            frame = normalize_daily(rows, event_log.percentiles, names)
        register(frame)
        return totals.add(frame, read=len(rows))

    # A day has a row per percentile metric, a 24th of that per hour.
    percentiles = [n for n in metric_store.source_metrics(SOURCE) if ".duration.p" in n]
    hours = piece_hours(max(1, len(percentiles) // 24))
    windows = sub_windows(window.start, window.end, hours)
    yield output_in_pieces(windows, piece, lambda: _metadata(start, end, totals), days=True)
    yield totals.non_negative(NON_NEGATIVE)
