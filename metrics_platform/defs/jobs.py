"""Jobs over the asset graph: every hourly asset for a range of hours, and the daily rollups."""

import dagster as dg

from metrics_platform.defs.metrics.assets import DAILY_VALUES_KEY


hourly_job = dg.define_asset_job(
    "hourly_metrics",
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(DAILY_VALUES_KEY),
    description="Every raw source and the hourly values, for one hour or a range of hours.",
)

daily_job = dg.define_asset_job(
    "daily_metrics",
    selection=dg.AssetSelection.assets(DAILY_VALUES_KEY),
    description="Daily rollups of the hourly values, for one day or a range of days.",
)
