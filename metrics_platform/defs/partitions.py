"""The platform's partitions, defined once and imported everywhere.

Daily partitions are the business's calendar days in `METRICS_PLATFORM_BUSINESS_TIMEZONE`
(default UTC): in a zone with daylight saving time, a day is 23 or 25 hours long twice a year,
and its daily values cover exactly those hours. Hourly partitions are the UTC hours; Dagster
maps hours to days only between partitions of one time zone, so their keys are written in the
business zone too (`2026-10-25-02:00` and `2026-10-25-02:00+0100` are the two UTC hours
00:00 and 01:00 of the autumn change). Every hour is still exactly one UTC hour, and every
value is stored against its UTC hour; this is why the zone must be a whole number of hours from
UTC all year round.

A partition exists only once its hour or day has closed. History starts at
`METRICS_PLATFORM_HISTORY_START` (default 2025-01-01), the first day a backfill can reach.
Assets work on `utc_window(context)`: the partition window as UTC datetimes, safe for arithmetic
across daylight saving changes.
"""

import os
import re
import warnings
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg

from metrics_platform.lib.errors import ConfigurationError

HISTORY_START_ENV = "METRICS_PLATFORM_HISTORY_START"
BUSINESS_TIMEZONE_ENV = "METRICS_PLATFORM_BUSINESS_TIMEZONE"


def _history_start() -> str:
    value = os.environ.get(HISTORY_START_ENV) or "2025-01-01"
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ConfigurationError(f"{HISTORY_START_ENV}: {value!r} is not a YYYY-MM-DD date")
    return value


def _business_timezone() -> str:
    value = os.environ.get(BUSINESS_TIMEZONE_ENV) or "UTC"
    try:
        zone = ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"{BUSINESS_TIMEZONE_ENV}: {value!r} is not an IANA time zone (e.g. Europe/Paris)"
        ) from None
    year = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for day in range(0, 366, 7):
        offset = (year + timedelta(days=day)).astimezone(zone).utcoffset()
        if offset.total_seconds() % 3600:
            raise ConfigurationError(
                f"{BUSINESS_TIMEZONE_ENV}: {value!r} is {offset} from UTC; business days must "
                "start on a UTC hour, so only zones a whole number of hours from UTC are supported"
            )
    return value


HISTORY_START = _history_start()
BUSINESS_TIMEZONE = _business_timezone()

hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=f"{HISTORY_START}-00:00", timezone=BUSINESS_TIMEZONE, end_offset=0
)
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=HISTORY_START, timezone=BUSINESS_TIMEZONE, end_offset=0
)


def utc_window(context: dg.AssetExecutionContext) -> tuple[datetime, datetime]:
    """The run's partition window (one partition or a range) as UTC datetimes."""
    window = context.partition_time_window
    return window.start.astimezone(timezone.utc), window.end.astimezone(timezone.utc)


# Every partitioned asset backfills a range of partitions in one run: one query per source
# for the whole window, never one run per hour.
single_run = dg.BackfillPolicy.single_run()

# `backfill_policy` is a beta parameter of `@asset`; single-run backfills are the platform's
# design, so that one notice is silenced here rather than repeated on every load.
warnings.filterwarnings(
    "ignore",
    message=r"Parameter `backfill_policy` of function `asset` is currently in beta",
    category=dg.BetaWarning,
)
