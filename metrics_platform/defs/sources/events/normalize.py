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


class EventTypeNames:
    """The metric names of each event type, made once per type (keyed by its text and kind:
    any column type, hashable or not, and 1 and "1" stay two types), refusing two types that
    map to one prefix. One instance serves every piece of a window read in pieces, so two types
    seen in different pieces are refused as they are within one."""

    def __init__(self, percentiles: Sequence[int]):
        self.percentiles = list(percentiles)
        self._named: dict[tuple[type, str], tuple[str, str, str, list[str]]] = {}
        self._seen: dict[str, object] = {}

    def of(self, event_type: object) -> tuple[str, str, str, list[str]]:
        """(prefix, count metric, errors metric, percentile metrics) of the type."""
        known = self._named.get((type(event_type), str(event_type)))
        if known is None:
            prefix = metric_prefix(event_type)
            if self._seen.setdefault(prefix, event_type) != event_type:
                raise SourceError(
                    SOURCE,
                    f"event types {self._seen[prefix]!r} and {event_type!r} both map to {prefix}",
                )
            known = self._named[(type(event_type), str(event_type))] = (
                prefix,
                f"{prefix}.count",
                f"{prefix}.errors",
                percentile_names(event_type, self.percentiles),
            )
        return known


def _explode(
    rows: Sequence[tuple],
    percentiles: Sequence[int],
    *,
    counts: bool,
    names: EventTypeNames | None = None,
):
    periods, metric_names, values = [], [], []
    names = names or EventTypeNames(percentiles)
    for period, event_type, events, errors, timings in rows:
        known = names.of(event_type)
        prefix, count_name, errors_name, percentile_metrics = known
        if counts:
            periods.append(period)
            metric_names.append(count_name)
            values.append(events)
            if errors is not None:
                periods.append(period)
                metric_names.append(errors_name)
                values.append(errors)
        if timings is not None:
            if len(timings) != len(percentiles):
                raise SourceError(
                    SOURCE, f"{prefix}: {len(timings)} percentiles for {len(percentiles)}"
                )
            for name, value in zip(percentile_metrics, timings):
                if value is not None:
                    periods.append(period)
                    metric_names.append(name)
                    values.append(value)
    return periods, metric_names, values


def normalize_hourly(
    rows: Sequence[tuple], percentiles: Sequence[int], names: EventTypeNames | None = None
) -> pd.DataFrame:
    """(hour, type, events, errors, percentiles) rows -> long hourly metric rows. `names`
    carries the types' names across the pieces of one window."""
    hours, metrics, values = _explode(rows, percentiles, counts=True, names=names)
    if not metrics:
        return empty_metric_frame()
    frame = metric_frame(SOURCE, hours, metrics, values)
    if (frame["value"] < 0).any():
        raise SourceError(SOURCE, "a count or duration is negative")
    return frame


def normalize_daily(
    rows: Sequence[tuple], percentiles: Sequence[int], names: EventTypeNames | None = None
) -> pd.DataFrame:
    """(day, type, events, errors, percentiles) rows -> (day, metric, value) percentile rows.
    `names` carries the types' names across the pieces of one window."""
    days, metrics, values = _explode(rows, percentiles, counts=False, names=names)
    if not metrics:
        return empty_daily_frame()
    return daily_metric_frame(SOURCE, days, metrics, values)


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
