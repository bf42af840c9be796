"""The Dagster code location: composes the sources, the metric assets, jobs and resources."""

import os
from collections.abc import Mapping

import dagster as dg

from metrics_platform.defs.automation.alerts import (
    UI_URL_ENV,
    WEBHOOK_ENV,
    AlertWebhook,
    check_failure_alerts,
    run_failure_alerts,
)
from metrics_platform.defs.automation.late_data import build_later_hours_sensor
from metrics_platform.defs.automation.schedules import (
    automation_sensor,
    build_schedules,
)
from metrics_platform.defs.jobs import build_jobs
from metrics_platform.defs.metrics.assets import (
    build_daily_values,
    build_freshness_check,
    build_hourly_values,
)
from metrics_platform.defs.metrics.kpis import build_kpi_assets, parse_kpis
from metrics_platform.defs.monitor import build_monitor
from metrics_platform.defs.resources import shared_resources
from metrics_platform.defs.sources.registry import (
    PLATFORM_METRICS,
    SourceDefinition,
    check_metric_owners,
    source_builders,
)
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.settings import check_sections, load_settings, section


def freshness_delay(quality: Mapping) -> int:
    value = quality.get("freshness_delay_minutes", 90)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"quality.freshness_delay_minutes: {value!r} is not a number of minutes"
        )
    return value


def env_value(env: Mapping[str, str], name: str):
    """A resource setting read from the environment at run time (EnvVar), when it is set."""
    return dg.EnvVar(name) if env.get(name) else ""


def later_hours_sensors(enabled: list[SourceDefinition]) -> list[dg.SensorDefinition]:
    cumulative = [(source.name, source.key) for source in enabled if source.cumulative]
    return [build_later_hours_sensor(cumulative)] if cumulative else []


def build_sources(settings: Mapping, env: Mapping[str, str]) -> list[SourceDefinition]:
    builders = source_builders()
    check_sections(settings, builders)
    sources = [build(section(settings, name), env) for name, build in builders.items()]
    check_metric_owners(sources)
    return sources


def build_definitions(
    settings: Mapping | None = None, env: Mapping[str, str] | None = None
) -> dg.Definitions:
    settings = load_settings() if settings is None else settings
    env = os.environ if env is None else env
    sources = build_sources(settings, env)
    enabled = [source for source in sources if source.enabled]
    raw_keys = [source.key for source in enabled]
    daily_keys = [key for source in enabled for key in source.daily_keys]
    freshness = build_freshness_check(freshness_delay(section(settings, "quality")))
    freshness_job = dg.define_asset_job(
        "freshness_checks",
        selection=dg.AssetSelection.checks(freshness),
        description="Checks that the latest closed hour has landed.",
    )
    known = [PLATFORM_METRICS, *(m for s in sources for m in s.metrics)]
    kpis = parse_kpis(settings.get("kpis") or [], known)
    alert_checks = build_monitor(settings.get("alerts"), kpis, known, env)
    return dg.Definitions(
        assets=[
            *(asset for source in sources for asset in source.for_definitions()),
            build_hourly_values(
                raw_keys,
                [m for s in enabled for m in s.expected_metrics],
                {source.key: source.name for source in enabled},
            ),
            build_daily_values(daily_keys, [source.name for source in enabled]),
            *build_kpi_assets(kpis),
        ],
        asset_checks=[freshness, *alert_checks],
        jobs=[*build_jobs(raw_keys, daily_keys), freshness_job],
        schedules=[
            *build_schedules(enabled, section(settings, "schedule")),
            dg.ScheduleDefinition(
                name="freshness_check_schedule",
                job=freshness_job,
                cron_schedule="*/15 * * * *",
                default_status=dg.DefaultScheduleStatus.RUNNING,
                description="Every 15 minutes, checks that the latest closed hour has landed.",
            ),
        ],
        sensors=[
            automation_sensor,
            run_failure_alerts,
            check_failure_alerts,
            *(sensor for source in enabled for sensor in source.sensors),
            *later_hours_sensors(enabled),
        ],
        resources={
            **shared_resources(),
            "alert_webhook": AlertWebhook(
                url=env_value(env, WEBHOOK_ENV),
                ui_url=env_value(env, UI_URL_ENV) or "http://127.0.0.1:3000",
            ),
            **{key: res for source in enabled for key, res in source.resources.items()},
        },
    )


defs = build_definitions()
