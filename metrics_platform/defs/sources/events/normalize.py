"""Pure normalization of event statistics into metric rows.

Per event type `<type>` (sanitized for metric names): `events.<type>.count` (counter),
`events.<type>.errors` (counter, with an error column) and `events.<type>.duration.p<N>`
(percentiles; the daily values are recomputed from the day's raw timings).

Zero versus missing: in every hour the event log was read, each known type (seen in the window
or already in the catalog) has a count, 0 when none of its events happened, and an error count
when errors are recorded. A type with no timings in a period has no percentiles for it: a
percentile of no events does not exist, it is never a zero.
"""

from collections.abc import Iterable, Sequence

import pandas as pd

from metrics_platform.defs.sources.events import SOURCE
from metrics_platform.lib.errors import SourceError
from metrics_platform.lib.metric_rows import (
    daily_metric_frame,
    empty_daily_frame,
    empty_metric_frame,
    metric_frame,
    sanitize_name_part,
)


def metric_prefix(event_type: object) -> str:
    if event_type is None or str(event_type).strip() == "":
        raise SourceError(SOURCE, "an event has no type")
    return f"events.{sanitize_name_part(event_type)}"


def percentile_names(event_type: object, percentiles: Sequence[int]) -> list[str]:
    return [f"{metric_prefix(event_type)}.duration.p{p}" for p in percentiles]


def _explode(rows: Sequence[tuple], percentiles: Sequence[int], *, counts: bool):
    periods, names, values = [], [], []
    # Names made once per event type (keyed by its text and kind: any column type, hashable or
    # not, and 1 and "1" stay two types, refused below as both mapping to one prefix).
    named: dict[tuple[type, str], tuple[str, str, str, list[str]]] = {}
    seen: dict[str, object] = {}
    for period, event_type, events, errors, timings in rows:
        known = named.get((type(event_type), str(event_type)))
        if known is None:
            prefix = metric_prefix(event_type)
            if seen.setdefault(prefix, event_type) != event_type:
                raise SourceError(
                    SOURCE, f"event types {seen[prefix]!r} and {event_type!r} both map to {prefix}"
                )
            known = named[(type(event_type), str(event_type))] = (
                prefix,
                f"{prefix}.count",
                f"{prefix}.errors",
                percentile_names(event_type, percentiles),
            )
        prefix, count_name, errors_name, percentile_metrics = known
        if counts:
            periods.append(period)
            names.append(count_name)
            values.append(events)
            if errors is not None:
                periods.append(period)
                names.append(errors_name)
                values.append(errors)
        if timings is not None:
            if len(timings) != len(percentiles):
                raise SourceError(
                    SOURCE, f"{prefix}: {len(timings)} percentiles for {len(percentiles)}"
                )
            for name, value in zip(percentile_metrics, timings):
                if value is not None:
                    periods.append(period)
                    names.append(name)
                    values.append(value)
    return periods, names, values


def normalize_hourly(rows: Sequence[tuple], percentiles: Sequence[int]) -> pd.DataFrame:
    """(hour, type, events, errors, percentiles) rows -> long hourly metric rows."""
    hours, names, values = _explode(rows, percentiles, counts=True)
    if not names:
        return empty_metric_frame()
    frame = metric_frame(SOURCE, hours, names, values)
    if (frame["value"] < 0).any():
        raise SourceError(SOURCE, "a count or duration is negative")
    return frame


def normalize_daily(rows: Sequence[tuple], percentiles: Sequence[int]) -> pd.DataFrame:
    """(day, type, events, errors, percentiles) rows -> (day, metric, value) percentile rows."""
    days, names, values = _explode(rows, percentiles, counts=False)
    if not names:
        return empty_daily_frame()
    return daily_metric_frame(SOURCE, days, names, values)


def known_counters(metric_names: Iterable[str], *, with_errors: bool) -> list[str]:
    """The counters of every event type among `metric_names` (any of a type's metrics):
    `events.<type>.count`, and `events.<type>.errors` when errors are recorded."""
    prefixes = set()
    for name in metric_names:
        for suffix in (".count", ".errors"):
            if name.startswith("events.") and name.endswith(suffix):
                prefixes.add(name.removesuffix(suffix))
        if name.startswith("events.") and ".duration.p" in name:
            prefixes.add(name.rsplit(".duration.p", 1)[0])
    suffixes = (".count", ".errors") if with_errors else (".count",)
    return sorted(prefix + suffix for prefix in prefixes for suffix in suffixes)
