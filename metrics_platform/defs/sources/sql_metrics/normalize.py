"""Pure reading of a SQL metric's rows into metric rows, refusing anything that does not fit.

A query returns `(period, [label columns...], value)`: the period is the UTC hour (a
`timestamptz` on the hour) or, for a daily query, the business day (a `date`); the label
columns are exactly the fields of the metric's template, by name, in any order; the value is a
finite number. Every refusal raises `SourceError` naming the metric: rows outside the window,
two rows for one metric and period, a NULL period, label or value, a value that is not a
number.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal

import pandas as pd

from metrics_platform.defs.sources.sql_metrics import SOURCE
from metrics_platform.lib.errors import SourceError
from metrics_platform.lib.metric_rows import (
    daily_metric_frame,
    empty_daily_frame,
    empty_metric_frame,
    metric_frame,
)
from metrics_platform.lib.templates import fill_template, template_fields


def read_rows(
    template: str,
    columns: Sequence[str],
    rows: Sequence[tuple],
    first: datetime | date,
    last: datetime | date,
    *,
    period: str = "hour",
) -> pd.DataFrame:
    """A query's rows -> (period, metric, value) rows. For hours, [first, last) is the UTC
    window; for days, [first, last] are the business days asked for."""

    def refuse(cause: str) -> SourceError:
        return SourceError(SOURCE, f"metric {template!r}: {cause}")

    fields = template_fields(template)
    labels = list(columns[1:-1])
    if len(columns) < 2 or sorted(labels) != sorted(fields) or len(set(columns)) != len(columns):
        expected = ", ".join([period, *fields, "value"])
        raise refuse(
            f"the query returns the columns ({', '.join(columns)}); it must return ({expected}): "
            "the period, the template's label columns by name, then the value"
        )
    seen: set[tuple] = set()
    periods, names, values = [], [], []
    for row in rows:
        at, value = row[0], row[-1]
        if at is None:
            raise refuse(f"a row has no {period} (NULL)")
        _check_period(refuse, at, period, first, last)
        label_values = dict(zip(labels, row[1:-1]))
        for label, label_value in label_values.items():
            if label_value is None:
                raise refuse(f"label {label!r} is NULL at {at}")
        name = fill_template(template, label_values)
        if value is None:
            raise refuse(f"{name} is NULL at {at}")
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise refuse(f"{name} at {at}: {reprlib.repr(value)} is not a number")
        if not math.isfinite(value):
            raise refuse(f"{name} at {at}: {value} is not finite; refusing to store it")
        if (name, at) in seen:
            raise refuse(f"two rows for {name} at {at}: each {period} and label set once")
        seen.add((name, at))
        periods.append(at)
        names.append(name)
        values.append(float(value))
    if period == "day":
        return daily_metric_frame(SOURCE, periods, names, values) if names else empty_daily_frame()
    return metric_frame(SOURCE, periods, names, values) if names else empty_metric_frame()


def _check_period(refuse, at, period: str, first, last) -> None:
    if period == "day":
        if isinstance(at, datetime) or not isinstance(at, date):
            raise refuse(f"the day {reprlib.repr(at)} is not a date (cast it: `::date`)")
        if not first <= at <= last:
            raise refuse(f"a row for {at} is outside its window {first}..{last}")
        return
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise refuse(
            f"the hour {reprlib.repr(at)} is not a timestamptz "
            "(for a timestamp column in UTC: `AT TIME ZONE 'UTC'`)"
        )
    if not first <= at < last:
        raise refuse(f"a row for {at} is outside its window {first}..{last} (half-open)")
    if at.minute or at.second or at.microsecond or at.utcoffset().total_seconds() % 3600:
        raise refuse(f"the hour {at} is not on the hour (`date_trunc('hour', ...)`)")


def combine(frames: Iterable[tuple[str, pd.DataFrame]], period: str = "hour") -> pd.DataFrame:
    """The rows of every query, refusing a metric that two queries make."""
    parts = [(template, frame) for template, frame in frames if len(frame)]
    owners: dict[str, str] = {}
    for template, frame in parts:
        for name in frame["metric"].unique():
            if owners.setdefault(name, template) != template:
                raise SourceError(
                    SOURCE,
                    f"metric {name!r} is made by two queries: {owners[name]!r} and {template!r}",
                )
    if not parts:
        return empty_daily_frame() if period == "day" else empty_metric_frame()
    combined = pd.concat([frame for _, frame in parts], ignore_index=True)
    return combined.sort_values([period, "metric"], ignore_index=True)
