"""Hourly schedules, one per enabled source, revisit schedules for sources that revise the
past, and the sensor that runs the automation conditions.

A source's schedule ticks every hour, `lag` minutes after the hour (or later for sources that
report late), and materializes the hour that closed `lag` minutes before the tick. The run key
is the hour, so a tick evaluated twice never launches the same hour twice.

Some sources keep changing their answer for an hour after it closed: GA4 processes an hour's
events for up to two days. A source with `revisit` hours gets a second schedule that, once a
day, re-reads its last `revisit` closed hours in one range run; the hourly and daily values
above them follow through their automation conditions, so the stored numbers converge on the
source's final answer.
"""

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

import dagster as dg

from metrics_platform.defs.automation.conditions import automation_condition_sensor
from metrics_platform.defs.partitions import hourly_partitions
from metrics_platform.defs.sources.registry import SourceDefinition
from metrics_platform.lib.errors import ConfigurationError

DEFAULT_LAG_MINUTES = 5
# Hours re-read once a day, by source: GA4's processing latency is 24 to 48 hours.
DEFAULT_REVISIT_HOURS = {"ga4": 48}
MAX_REVISIT_HOURS = 31 * 24
REVISIT_HOUR_UTC = 3  # when revisit runs start, `lag` minutes past it
SCHEDULE_KEYS = ("lag_minutes", "revisit_hours")
# Every run of a source's job carries its name: dagster.yaml limits runs per source with it.
SOURCE_TAG = "metrics_platform/source"
# A run over a range of partitions, as the UI's single-run backfills launch it.
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def lag_minutes(schedule_settings: Mapping, source: str) -> int:
    lags = schedule_settings.get("lag_minutes") or {}
    value = lags.get(source, lags.get("default", DEFAULT_LAG_MINUTES))
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 7 * 24 * 60:
        raise ConfigurationError(
            f"schedule.lag_minutes.{source}: {value!r} is not a whole number of minutes "
            "between 0 and 10080"
        )
    return value


def revisit_hours(schedule_settings: Mapping, source: str) -> int:
    hours = schedule_settings.get("revisit_hours") or {}
    value = hours.get(source, hours.get("default", DEFAULT_REVISIT_HOURS.get(source, 0)))
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REVISIT_HOURS:
        raise ConfigurationError(
            f"schedule.revisit_hours.{source}: {value!r} is not a whole number of hours "
            f"between 0 and {MAX_REVISIT_HOURS}"
        )
    return value


def closed_hour(tick: datetime, lag: int) -> str:
    """The partition key of the hour that had closed `lag` minutes before `tick`."""
    settled = tick.astimezone(timezone.utc) - timedelta(minutes=lag)
    hour = settled.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return hourly_partitions.get_partition_key_for_timestamp(hour.timestamp())


def revisited_hours(tick: datetime, lag: int, hours: int) -> tuple[str, str]:
    """The first and last partition keys of the `hours` hours that had closed `lag` minutes
    before `tick` (never before the first partition)."""
    last = closed_hour(tick, lag)
    end = hourly_partitions.time_window_for_partition_key(last).end
    start = max(end - timedelta(hours=hours), hourly_partitions.start)
    return hourly_partitions.get_partition_key_for_timestamp(start.timestamp()), last


def build_source_schedules(
    source: SourceDefinition, lag: int, revisit: int
) -> list[dg.ScheduleDefinition]:
    """The source's hourly schedule, and its daily revisit schedule if `revisit` hours."""
    job = dg.define_asset_job(
        f"{source.name}_hourly",
        selection=dg.AssetSelection.assets(source.key),
        description=f"The {source.name} source for one hour (or a range of hours).",
        tags={SOURCE_TAG: source.name},
    )
    # Both schedules run the source's job, on UTC clocks, from the start.
    schedule = functools.partial(
        dg.schedule,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )

    @schedule(
        name=f"{source.name}_hourly_schedule",
        cron_schedule=f"{lag % 60} * * * *",
        description=f"Every hour, {lag} minutes after it closes, the {source.name} source for that hour.",
    )
    def hourly(context: dg.ScheduleEvaluationContext):
        key = closed_hour(context.scheduled_execution_time, lag)
        return dg.RunRequest(run_key=key, partition_key=key)

    if not revisit:
        return [hourly]

    @schedule(
        name=f"{source.name}_revisit_schedule",
        cron_schedule=f"{lag % 60} {REVISIT_HOUR_UTC} * * *",
        description=f"Once a day, the {source.name} source's last {revisit} closed hours again, "
        "in one run: the source revises them after the fact.",
    )
    def revisit_schedule(context: dg.ScheduleEvaluationContext):
        first, last = revisited_hours(context.scheduled_execution_time, lag, revisit)
        return dg.RunRequest(
            run_key=f"revisit {first}...{last}",
            tags={RANGE_TAGS[0]: first, RANGE_TAGS[1]: last},
        )

    return [hourly, revisit_schedule]


def build_schedules(
    sources: Sequence[SourceDefinition], schedule_settings: Mapping
) -> list[dg.ScheduleDefinition]:
    unknown = sorted(set(schedule_settings) - set(SCHEDULE_KEYS))
    if unknown:
        raise ConfigurationError(
            f"schedule.{unknown[0]}: unknown setting (known: {', '.join(SCHEDULE_KEYS)})"
        )
    return [
        schedule
        for source in sources
        for schedule in build_source_schedules(
            source,
            lag_minutes(schedule_settings, source.name),
            revisit_hours(schedule_settings, source.name),
        )
    ]


automation_sensor = automation_condition_sensor(
    "metrics_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Recomputes hourly and daily values whenever the data under them lands or changes.",
)
