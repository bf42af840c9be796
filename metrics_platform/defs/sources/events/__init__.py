"""Application events of the product: counts per type and latency percentiles from timings."""

from collections.abc import Mapping

import dagster as dg

from metrics_platform.defs.sources.registry import SourceDefinition, build_resource

SOURCE = "events"
URL_ENV_DEFAULT = "METRICS_PLATFORM_PRODUCT_DATABASE_URL"


def build_source(section: Mapping, env: Mapping[str, str]) -> SourceDefinition:
    from metrics_platform.defs.sources.events.assets import (
        events_daily_timings,
        events_hourly,
    )
    from metrics_platform.defs.sources.events.resource import EventLog

    if not section:
        return SourceDefinition(
            SOURCE,
            events_hourly,
            disabled_reason="no `events` section in the settings file",
            daily_assets=[events_daily_timings],
            metrics=["events.*"],
        )
    settings = dict(section)
    url_env = settings.pop("url_env", URL_ENV_DEFAULT)
    resource = build_resource("events", EventLog, url=dg.EnvVar(url_env), **settings)
    reason = None if env.get(url_env) else f"{url_env} is not set"
    return SourceDefinition(
        SOURCE,
        events_hourly,
        {"event_log": resource},
        reason,
        daily_assets=[events_daily_timings],
        metrics=["events.*"],
    )
