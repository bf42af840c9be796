"""The platform's partitions, defined once and imported everywhere.

Hourly partitions are UTC hours; daily partitions are UTC days. A partition exists only once
its hour or day has closed. History starts at `METRICS_PLATFORM_HISTORY_START` (default
2025-01-01), the first hour a backfill can reach.
"""

import os
import warnings

import dagster as dg

HISTORY_START_ENV = "METRICS_PLATFORM_HISTORY_START"
HISTORY_START = os.environ.get(HISTORY_START_ENV, "2025-01-01")

hourly_partitions = dg.HourlyPartitionsDefinition(
    start_date=f"{HISTORY_START}-00:00", timezone="UTC", end_offset=0
)
daily_partitions = dg.DailyPartitionsDefinition(start_date=HISTORY_START, timezone="UTC", end_offset=0)

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
