"""Jobs over the asset graph: the hourly assets for a range of hours, and the daily rollups."""

from collections.abc import Sequence

import dagster as dg

from metrics_platform.defs.metrics.assets import DAILY_VALUES_KEY, HOURLY_VALUES_KEY
from metrics_platform.defs.metrics.kpis import DAILY_KPIS_KEY, HOURLY_KPIS_KEY

HOURLY_JOB = "hourly_metrics"
DAILY_JOB = "daily_metrics"


def build_jobs(raw_keys: Sequence[dg.AssetKey], daily_keys: Sequence[dg.AssetKey]) -> list:
    return [
        dg.define_asset_job(
            HOURLY_JOB,
            selection=dg.AssetSelection.assets(*raw_keys, HOURLY_VALUES_KEY, HOURLY_KPIS_KEY),
            description="Every enabled source, the hourly values and KPIs, for one hour or a range.",
        ),
        dg.define_asset_job(
            DAILY_JOB,
            selection=dg.AssetSelection.assets(*daily_keys, DAILY_VALUES_KEY, DAILY_KPIS_KEY),
            description="Daily values (rollups, the sources' own daily assets) and KPIs, for a day or a range.",
        ),
    ]
