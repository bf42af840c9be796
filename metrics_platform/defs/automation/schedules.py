"""Hourly schedules, one per enabled source, and the sensor that runs the automation conditions.

A source's schedule ticks every hour, `lag` minutes after the hour (or later for sources that
report late), and materializes the hour that closed `lag` minutes before the tick. The run key
is the hour, so a tick evaluated twice never launches the same hour twice.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

import dagster as dg

from metrics_platform.defs.partitions import hourly_partitions
from metrics_platform.defs.sources.registry import SourceDefinition
from metrics_platform.lib.errors import ConfigurationError

DEFAULT_LAG_MINUTES = 5
# Every run of a source's job carries its name: dagster.yaml limits runs per source with it.
SOURCE_TAG = "metrics_platform/source"


def lag_minutes(schedule_settings: Mapping, source: str) -> int:
    lags = schedule_settings.get("lag_minutes") or {}
    value = lags.get(source, lags.get("default", DEFAULT_LAG_MINUTES))
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 7 * 24 * 60:
        raise ConfigurationError(
            f"schedule.lag_minutes.{source}: {value!r} is not a whole number of minutes "
            "between 0 and 10080"
        )
    return value


def closed_hour(tick: datetime, lag: int) -> str:
    """The partition key of the hour that had closed `lag` minutes before `tick`."""
    settled = tick.astimezone(timezone.utc) - timedelta(minutes=lag)
    hour = settled.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return hourly_partitions.get_partition_key_for_timestamp(hour.timestamp())


def build_source_schedule(source: SourceDefinition, lag: int) -> dg.ScheduleDefinition:
    job = dg.define_asset_job(
        f"{source.name}_hourly",
        selection=dg.AssetSelection.assets(source.key),
        description=f"The {source.name} source for one hour (or a range of hours).",
        tags={SOURCE_TAG: source.name},
    )

    @dg.schedule(
        name=f"{source.name}_hourly_schedule",
        job=job,
        cron_schedule=f"{lag % 60} * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Every hour, {lag} minutes after it closes, the {source.name} source for that hour.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        key = closed_hour(context.scheduled_execution_time, lag)
        return dg.RunRequest(run_key=key, partition_key=key)

    return _schedule


def build_schedules(
    sources: Sequence[SourceDefinition], schedule_settings: Mapping
) -> list[dg.ScheduleDefinition]:
    return [build_source_schedule(s, lag_minutes(schedule_settings, s.name)) for s in sources]


automation_sensor = dg.AutomationConditionSensorDefinition(
    "metrics_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Recomputes hourly and daily values whenever the data under them lands or changes.",
)
