"""The raw retention assets: sign-ups and active users per hour, and per business day the active
users and the cohorts' D1 / D7 / D30 returns.

A cohort's D<N> is final once day + N has closed, so the daily asset is computed when its day's
hours are in and again, once a day, for the last `MAX_DAY + 1` days (their cohorts are not all
final yet): one range run, and the daily values above follow, so the stored values converge on
the final ones. A late sign-up or activity row changes only its own hour and the cohorts it
belongs to (`own_hour`), which those re-reads cover.
"""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd

from metrics_platform.defs.automation.conditions import WHEN_THE_DAY_IS_COMPLETE
from metrics_platform.defs.metadata import window_metadata
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.partitions import BUSINESS_TIMEZONE, daily_partitions, utc_window
from metrics_platform.defs.sources.failures import source_failures
from metrics_platform.defs.sources.raw import raw_asset
from metrics_platform.defs.sources.retention import HOURLY_METRICS, SOURCE
from metrics_platform.defs.sources.retention.normalize import normalize_daily, normalize_hourly
from metrics_platform.defs.sources.retention.resource import MAX_DAY, UserActivity
from metrics_platform.lib.metric_rows import fill_zeros, window_hours
from metrics_platform.lib.store import MetricSpec

ACTIVITY_KEY = dg.AssetKey(["raw", "user_activity"])
COHORTS_KEY = dg.AssetKey(["raw", "retention_cohorts"])
NON_NEGATIVE = "values_non_negative"
# Once a day, a quarter past the business day's end, the days whose cohorts are not final yet.
REREAD_CRON = "15 0 * * *"
COHORTS_NOT_FINAL = (
    dg.AutomationCondition.in_latest_time_window(timedelta(days=MAX_DAY + 1))
    & dg.AutomationCondition.cron_tick_passed(REREAD_CRON, BUSINESS_TIMEZONE).since_last_handled()
    & ~dg.AutomationCondition.in_progress()
).with_label("cohorts not final yet")


def metric_specs(days) -> list[MetricSpec]:
    specs = [
        MetricSpec("users.signed_up", "sum", SOURCE, "users", "Users who signed up."),
        MetricSpec(
            "users.active",
            "recomputed",
            SOURCE,
            "users",
            "Distinct users with any activity (a day's: distinct over the business day).",
        ),
    ]
    for n in days:
        specs += [
            MetricSpec(
                f"retention.d{n}.users",
                "recomputed",
                SOURCE,
                "users",
                f"Of the users who signed up on the business day, those active {n} day(s) later.",
            ),
            MetricSpec(
                f"retention.d{n}",
                "recomputed",
                SOURCE,
                "",
                f"D{n} retention: share of the day's sign-up cohort active {n} day(s) later.",
            ),
        ]
    return specs


def _non_negative(frame: pd.DataFrame) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=NON_NEGATIVE,
        passed=bool((frame["value"] >= 0).all()),
        metadata={"min": float(frame["value"].min()) if len(frame) else 0.0},
    )


@raw_asset(
    ACTIVITY_KEY,
    source=SOURCE,
    kinds={"postgres", "pandas"},
    checks=[(NON_NEGATIVE, "No count of users is negative.")],
)
def user_activity(
    context: dg.AssetExecutionContext, product_users: UserActivity, metric_store: MetricStore
):
    """Sign-ups and distinct active users for every UTC hour, from the product database."""
    start, end = utc_window(context)
    with source_failures(context):
        rows = product_users.hourly(start, end)
        frame = normalize_hourly(rows)
    frame = fill_zeros(frame, HOURLY_METRICS, window_hours(start, end))
    metric_store.register_metrics(metric_specs(product_users.days))
    yield dg.Output(
        frame, metadata=window_metadata(start, end, rows_read=len(rows), rows_written=len(frame))
    )
    yield _non_negative(frame)


def final_days(first, last, n: int, today) -> list:
    """The cohort days of first..last whose day + n has closed before `today`."""
    count = (last - first).days + 1
    return [
        d
        for d in (first + timedelta(days=k) for k in range(count))
        if d + timedelta(days=n) < today
    ]


@raw_asset(
    COHORTS_KEY,
    source=SOURCE,
    kinds={"postgres", "pandas"},
    partitions_def=daily_partitions,
    period="day",
    deps=[ACTIVITY_KEY],
    automation_condition=(WHEN_THE_DAY_IS_COMPLETE | COHORTS_NOT_FINAL).with_label(
        "whole day landed, or cohorts not final yet"
    ),
    checks=[(NON_NEGATIVE, "No count or share of users is negative.")],
)
def retention_cohorts(
    context: dg.AssetExecutionContext, product_users: UserActivity, metric_store: MetricStore
):
    """Per business day: distinct active users, and of the users who signed up that day, those
    active again 1, 7 and 30 days later and their share, once that day has closed."""
    start, end = utc_window(context)
    window = context.partition_time_window  # midnights of the business time zone
    first, last = window.start.date(), window.end.date() - timedelta(days=1)
    today = datetime.now(timezone.utc).astimezone(ZoneInfo(BUSINESS_TIMEZONE)).date()
    activity_end = end + timedelta(days=max(product_users.days) + 1)
    with source_failures(context):
        active = product_users.daily_active(start, end, BUSINESS_TIMEZONE)
        cohorts = product_users.cohorts(start, end, BUSINESS_TIMEZONE, today, activity_end)
        frame = normalize_daily(active, cohorts)
    days = final_days(first, last, 0, today + timedelta(days=1))
    frame = fill_zeros(frame, ["users.active"], days, period="day")
    for n in product_users.days:  # a day without sign-ups: none of its cohort returned
        frame = fill_zeros(
            frame, [f"retention.d{n}.users"], final_days(first, last, n, today), "day"
        )
    metric_store.register_metrics(metric_specs(product_users.days))
    yield dg.Output(
        frame,
        metadata=window_metadata(
            start, end, rows_read=len(active) + len(cohorts), rows_written=len(frame)
        ),
    )
    yield _non_negative(frame)
