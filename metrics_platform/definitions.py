"""The Dagster code location: composes the sources, the metric assets, jobs and resources."""

import dagster as dg

from metrics_platform.defs.jobs import daily_job, hourly_job
from metrics_platform.defs.metrics.assets import build_hourly_values, daily_values
from metrics_platform.defs.resources import build_resources
from metrics_platform.defs.sources.product_db.assets import product_db_row_counts

RAW_SOURCE_ASSETS = [product_db_row_counts]

defs = dg.Definitions(
    assets=[
        *RAW_SOURCE_ASSETS,
        build_hourly_values([asset.key for asset in RAW_SOURCE_ASSETS]),
        daily_values,
    ],
    jobs=[hourly_job, daily_job],
    resources=build_resources(),
)
