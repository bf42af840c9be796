"""Pure normalization of GA4 Data API `runReport` pages into metric rows.

GA4 reports `dateHour` (YYYYMMDDHH) in the property's time zone, which every response names in
`metadata.timeZone`. Each local hour is stored on the UTC hour in which it starts:

- At the autumn change the repeated local hour has one `dateHour`, so GA4 returns it as one row,
  both hours combined. It is stored on the first of the two UTC hours (fold=0); the second UTC
  hour gets no row, and the day's total stays exact.
- The skipped spring hour has no data; a row for it is refused.
- In a zone whose offset is not whole hours (Asia/Kolkata is +05:30), a local hour straddles two
  UTC hours; it is stored on the one in which it starts.

Values are read by their header's type; durations are stored in seconds. A value is read only
as the API writes it, a string of an integer (`TYPE_INTEGER`) or of a decimal (`12`, `-0.5`,
`1.5E7`): no underscores, no spaces, no `+`, no other spelling; `-0` is stored as 0. Extra
dimensions append their (sanitized) values to the metric name; distinct rows that then share an
(hour, metric) are summed, as counters are. A row repeated (the same dimension values twice in a
report, on one page or two) is refused, naming the row: summing it would double its values.

The daily report (`recomputed` metrics: distinct users, which a day does not sum from its hours)
is by `date` (YYYYMMDD), the property's local date. Its days are the platform's business days
only when the property's time zone is the business time zone: any other zone is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd

from metrics_platform.defs.sources.ga4 import SOURCE
from metrics_platform.lib.errors import SourceError
from metrics_platform.lib.metric_rows import (
    daily_metric_frame,
    empty_daily_frame,
    empty_metric_frame,
    metric_frame,
    sanitize_name_part,
)

DATE_HOUR = "dateHour"
DATE = "date"
_DATE_HOUR = re.compile(r"\d{10}")
_DATE = re.compile(r"\d{8}")
_CURRENCY = re.compile(r"[A-Z]{3}")  # ISO 4217
# Metric values as the API writes them: integers, or decimals with an optional exponent.
INTEGER_VALUE = re.compile(r"-?[0-9]+")
DECIMAL_VALUE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
# How a non-finite double may be written (Java's and JSON-ish spellings): refused as such.
NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity", "+Infinity", "Inf", "-Inf", "+Inf"})
_METRIC_NAME_MAX = 200


# How the value of each GA4 metric type is read, and the unit it is stored in. The unit of
# TYPE_CURRENCY is the property's currency code, from the response's metadata.
def parse_integer(text: str) -> float:
    """A `TYPE_INTEGER` value, or ValueError (or OverflowError beyond the float range)."""
    if not isinstance(text, str) or not INTEGER_VALUE.fullmatch(text):
        raise ValueError(f"{text!r} is not an integer")
    return float(int(text)) + 0.0  # -0 is 0


def parse_decimal(text: str) -> float:
    """A decimal metric value, or ValueError."""
    if not isinstance(text, str) or not DECIMAL_VALUE.fullmatch(text):
        raise ValueError(f"{text!r} is not a decimal")
    return float(text) + 0.0  # -0.0 + 0.0 is 0.0


METRIC_TYPES: Mapping[str, tuple[Callable[[str], float], str]] = {
    "TYPE_INTEGER": (parse_integer, ""),
    "TYPE_FLOAT": (parse_decimal, ""),
    "TYPE_STANDARD": (parse_decimal, ""),
    "TYPE_CURRENCY": (parse_decimal, ""),
    "TYPE_SECONDS": (parse_decimal, "s"),
    "TYPE_MILLISECONDS": (lambda text: parse_decimal(text) / 1000, "s"),
    "TYPE_MINUTES": (lambda text: parse_decimal(text) * 60, "s"),
    "TYPE_HOURS": (lambda text: parse_decimal(text) * 3600, "s"),
    "TYPE_FEET": (parse_decimal, "ft"),
    "TYPE_MILES": (parse_decimal, "mi"),
    "TYPE_METERS": (parse_decimal, "m"),
    "TYPE_KILOMETERS": (parse_decimal, "km"),
}


@dataclass(frozen=True)
class ReportedMetric:
    """A platform metric read from a report: the GA4 metric it comes from and its unit."""

    ga_metric: str
    unit: str


@dataclass(frozen=True)
class Report:
    """A report's metric rows inside the window (by hour, or by day for the daily report), and
    what the catalog needs to know of them."""

    frame: pd.DataFrame
    metrics: Mapping[str, ReportedMetric]
    time_zone: str | None
    rows_read: int


def normalize_report(
    pages: Sequence[Mapping], metric_names: Mapping[str, str], start: datetime, end: datetime
) -> pd.DataFrame:
    """Report pages -> long metric rows of the UTC hours in [start, end).

    `metric_names` maps each GA4 metric to its platform metric name.
    """
    return read_report(pages, metric_names, start, end).frame


def read_report(
    pages: Sequence[Mapping], metric_names: Mapping[str, str], start: datetime, end: datetime
) -> Report:
    """Like `normalize_report`, with the metrics' origins, the time zone and the rows read."""
    totals, metrics, zone, rows_read = _read_pages(
        pages, metric_names, DATE_HOUR, date_hour_to_utc, lambda hour: start <= hour < end
    )
    return Report(_frame(totals, metric_frame, empty_metric_frame), metrics, zone, rows_read)


def read_daily_report(
    pages: Sequence[Mapping],
    metric_names: Mapping[str, str],
    first: date,
    last: date,
    business_time_zone: str,
) -> Report:
    """Daily report pages -> (day, metric, value) rows of the days `first` to `last` included.

    The report's dates are the property's: a property in any zone but `business_time_zone`
    is refused, its days would not be the business days.
    """
    totals, metrics, zone, rows_read = _read_pages(
        pages, metric_names, DATE, lambda text, _: date_to_day(text), lambda d: first <= d <= last
    )
    if zone is not None and not same_clock(zone, business_time_zone, first, last):
        raise SourceError(
            SOURCE,
            f"the property's time zone is {zone} and the business time zone is "
            f"{business_time_zone}: GA4's daily values would not be the business days'; set the "
            f"property's time zone to {business_time_zone} in Google Analytics, or do not mark its "
            "metrics `recomputed`",
        )
    return Report(_frame(totals, daily_metric_frame, empty_daily_frame), metrics, zone, rows_read)


def same_clock(zone: str, other: str, first: date, last: date) -> bool:
    """Whether two time zones keep the same clock around the days `first` to `last`: the same
    name, or the same UTC offset at every hour (`Etc/UTC` and `UTC`, `Europe/Paris` and
    `Europe/Berlin`), so that their dates are the same days."""
    if zone == other:
        return True
    try:
        zones = ZoneInfo(zone), ZoneInfo(other)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    start = datetime.combine(first - timedelta(days=1), time(), timezone.utc)
    instants = (start + timedelta(hours=h) for h in range(((last - first).days + 3) * 24))
    return all(
        instant.astimezone(zones[0]).utcoffset() == instant.astimezone(zones[1]).utcoffset()
        for instant in instants
    )


def _frame(
    totals: Mapping[tuple[object, str], float],
    build: Callable[..., pd.DataFrame],
    empty: Callable[[], pd.DataFrame],
) -> pd.DataFrame:
    """The long frame of the (period, metric) totals, built by `build`, or `empty()`."""
    if not totals:
        return empty()
    keys, values = zip(*totals.items())
    periods, names = zip(*keys)
    return build(SOURCE, periods, names, values)


def _read_pages(
    pages: Sequence[Mapping],
    metric_names: Mapping[str, str],
    period_dimension: str,
    read_period: Callable[[object, ZoneInfo], object],
    keep: Callable[[object], bool],
) -> tuple[dict[tuple[object, str], float], dict[str, ReportedMetric], str | None, int]:
    """The values of every kept (period, metric) summed, the metrics' origins, the property's
    time zone and the rows read, from report pages by `period_dimension`."""
    if not isinstance(pages, Sequence) or isinstance(pages, (str, bytes)):
        raise SourceError(SOURCE, "the report is not a list of pages")
    totals: dict[tuple[object, str], float] = {}
    metrics: dict[str, ReportedMetric] = {}
    zones: set[str] = set()
    rows_read = 0
    seen_rows: dict[tuple[str, ...], str] = {}  # dimension values -> where they were first
    for number, page in enumerate(pages, start=1):
        where = f"page {number}"
        if not isinstance(page, Mapping):
            raise SourceError(SOURCE, f"{where} is not a JSON object")
        metadata = _field(page, "metadata", Mapping, where)
        zone = _zone(metadata, where)
        zones.add(zone.key)
        columns = _metric_columns(page, metric_names, metadata, where)
        dimensions = [
            _field(h, "name", str, f"{where} dimensionHeaders")
            for h in _items(page, "dimensionHeaders", where)
        ]
        if dimensions.count(period_dimension) != 1:
            raise SourceError(
                SOURCE, f"{where}: dimensionHeaders {dimensions} must name {period_dimension} once"
            )
        period_index = dimensions.index(period_dimension)
        extra = [i for i, name in enumerate(dimensions) if i != period_index]
        if not extra:
            metrics.update({name: reported for name, _, reported in columns})
        for index, row in enumerate(_items(page, "rows", where, required=False), start=1):
            at = f"{where} row {index}"
            dimension_values = _values(row, "dimensionValues", len(dimensions), at)
            metric_values = _values(row, "metricValues", len(columns), at)
            first_at = seen_rows.setdefault(tuple(dimension_values), at)
            if first_at != at:
                raise SourceError(
                    SOURCE,
                    f"{at} repeats the row of {first_at}, dimension values {dimension_values}: "
                    "the report holds the same row twice",
                )
            period = read_period(dimension_values[period_index], zone)
            suffix = [sanitize_name_part(dimension_values[i]) for i in extra]
            rows_read += 1
            for (base, read, reported), text in zip(columns, metric_values):
                value = _read(read, text, reported.ga_metric, at)
                if not keep(period):
                    continue
                name = ".".join([base, *suffix])[:_METRIC_NAME_MAX]
                totals[(period, name)] = totals.get((period, name), 0.0) + value
                metrics[name] = reported
    if len(zones) > 1:
        raise SourceError(SOURCE, f"pages disagree on the property's time zone: {sorted(zones)}")
    return totals, metrics, next(iter(zones), None), rows_read


def date_hour_to_utc(date_hour: object, zone: ZoneInfo) -> datetime:
    """The UTC hour in which the local hour `date_hour` (YYYYMMDDHH, in `zone`) starts.

    A repeated local hour maps to its first occurrence; a skipped one is refused.
    """
    if not isinstance(date_hour, str) or not _DATE_HOUR.fullmatch(date_hour):
        raise SourceError(SOURCE, f"dateHour {date_hour!r} is not YYYYMMDDHH")
    try:
        local = datetime.strptime(date_hour, "%Y%m%d%H").replace(tzinfo=zone)
        utc = local.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise SourceError(SOURCE, f"dateHour {date_hour!r} is not a date and hour") from None
    if utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
        raise SourceError(
            SOURCE,
            f"dateHour {date_hour} does not exist in {zone.key}: daylight-saving time skips it",
        )
    return utc.replace(minute=0)


def date_to_day(text: object) -> date:
    """The day of a GA4 `date` (YYYYMMDD)."""
    if not isinstance(text, str) or not _DATE.fullmatch(text):
        raise SourceError(SOURCE, f"date {text!r} is not YYYYMMDD")
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        raise SourceError(SOURCE, f"date {text!r} is not a date") from None


def _metric_columns(page: Mapping, metric_names: Mapping[str, str], metadata: Mapping, where: str):
    """(platform name, value reader, ReportedMetric) for each metric column of the page."""
    currency = metadata.get("currencyCode")
    columns = []
    for header in _items(page, "metricHeaders", where):
        at = f"{where} metricHeaders"
        name = _field(header, "name", str, at)
        kind = _field(header, "type", str, at)
        if name not in metric_names:
            raise SourceError(SOURCE, f"{at}: metric {name!r} was not asked for")
        if kind not in METRIC_TYPES:
            raise SourceError(SOURCE, f"{at}: metric {name!r} has unknown type {kind!r}")
        read, unit = METRIC_TYPES[kind]
        if kind == "TYPE_CURRENCY" and isinstance(currency, str) and _CURRENCY.fullmatch(currency):
            unit = currency
        columns.append((metric_names[name], read, ReportedMetric(name, unit)))
    return columns


def _zone(metadata: Mapping, where: str) -> ZoneInfo:
    name = _field(metadata, "timeZone", str, f"{where} metadata")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SourceError(SOURCE, f"{where}: unknown time zone {name!r}") from None


def _read(read: Callable[[str], float], text: str, ga_metric: str, where: str) -> float:
    if text in NON_FINITE:
        raise SourceError(
            SOURCE,
            f"{where}: {ga_metric} value {text!r} is a non-finite value; refusing to store it",
        )
    try:
        return float(read(text))
    except (TypeError, ValueError, OverflowError):
        raise SourceError(SOURCE, f"{where}: {ga_metric} value {text!r} is not a number") from None


_KINDS = {Mapping: "an object", list: "a list", str: "a string"}


def _field(obj: object, key: str, kind: type, where: str):
    value = obj.get(key) if isinstance(obj, Mapping) else None
    if not isinstance(value, kind):
        raise SourceError(SOURCE, f"{where}: `{key}` is missing or not {_KINDS[kind]}")
    return value


def _items(obj: Mapping, key: str, where: str, *, required: bool = True) -> list:
    if not required and key not in obj:
        return []
    return _field(obj, key, list, where)


def _values(row: object, key: str, count: int, where: str) -> list[str]:
    values = [
        _field(item, "value", str, f"{where} {key}") for item in _field(row, key, list, where)
    ]
    if len(values) != count:
        raise SourceError(SOURCE, f"{where}: {len(values)} {key} for {count} headers")
    return values
