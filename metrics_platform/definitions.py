"""The Dagster code location: composes the sources, the metric assets, jobs and resources."""

import os
from collections.abc import Mapping

import dagster as dg

from metrics_platform.defs.jobs import build_jobs
from metrics_platform.defs.metrics.assets import build_hourly_values, daily_values
from metrics_platform.defs.resources import shared_resources
from metrics_platform.defs.sources import product_db
from metrics_platform.defs.sources.registry import SourceDefinition
from metrics_platform.lib.settings import load_settings, section

# Every source the platform knows, by its settings section.
SOURCE_BUILDERS = {
    product_db.SOURCE: product_db.build_source,
}


def build_sources(settings: Mapping, env: Mapping[str, str]) -> list[SourceDefinition]:
    return [build(section(settings, name), env) for name, build in SOURCE_BUILDERS.items()]


def build_definitions(
    settings: Mapping | None = None, env: Mapping[str, str] | None = None
) -> dg.Definitions:
    settings = load_settings() if settings is None else settings
    sources = build_sources(settings, os.environ if env is None else env)
    enabled = [source for source in sources if source.enabled]
    raw_keys = [source.key for source in enabled]
    return dg.Definitions(
        assets=[
            *(source.for_definitions() for source in sources),
            build_hourly_values(raw_keys),
            daily_values,
        ],
        jobs=build_jobs(raw_keys),
        resources={
            **shared_resources(),
            **{key: res for source in enabled for key, res in source.resources.items()},
        },
    )


defs = build_definitions()
