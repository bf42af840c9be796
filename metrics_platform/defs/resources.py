"""The resources every run shares, registered once and wired to their environment variables.

Each source brings its own resource (see its `build_source`)."""

import dagster as dg

from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.lib.database import DATABASE_URL_ENV
from metrics_platform.lib.postgres_io import PostgresPandasIOManager


def shared_resources() -> dict[str, object]:
    return {
        "io_manager": PostgresPandasIOManager(url=dg.EnvVar(DATABASE_URL_ENV)),
        "metric_store": MetricStore(url=dg.EnvVar(DATABASE_URL_ENV)),
    }
