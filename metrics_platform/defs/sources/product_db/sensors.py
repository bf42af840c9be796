"""The late-rows sensor: rows that arrive in the product database for hours already counted.

Every minute it asks the product database for rows whose id is above the highest id it saw last
time (its cursor, per table) and whose creation time falls in an hour that has closed. A row
counts in its own hour and in every later one (row counts are cumulative), so it requests one
run of the product database source from the first late hour to the latest hour the source has
landed; the hourly and daily values of those hours and days follow by their automation
conditions (see `defs/automation/late_data.py`). On its first tick it only records the ids.
"""

import json
from datetime import datetime, timezone

import dagster as dg

from metrics_platform.defs.automation.late_data import (
    LATER_HOURS,
    partition_key,
    range_request,
    recompute_windows,
)
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.sources.product_db import SOURCE
from metrics_platform.defs.sources.product_db.assets import ROW_COUNTS_KEY
from metrics_platform.defs.sources.product_db.resource import ProductDatabase


@dg.sensor(
    name="product_db_late_rows",
    job_name=f"{SOURCE}_hourly",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Recounts the hours that late rows of the product database change: their own "
    "and every later one.",
)
def product_db_late_rows(
    context: dg.SensorEvaluationContext, product_db: ProductDatabase, metric_store: MetricStore
):
    last_ids: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    this_hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
    found = product_db.late_rows(last_ids, before=this_hour)
    hours = sorted({hour for _, table_hours in found.values() for hour in table_hours})
    cursor = json.dumps({table: top for table, (top, _) in found.items()}, sort_keys=True)
    if not hours:
        return dg.SensorResult(
            skip_reason="no late rows" if last_ids else "first look: ids recorded",
            cursor=cursor,
        )
    latest = metric_store.latest_raw_hour(ROW_COUNTS_KEY)
    windows = recompute_windows(hours, LATER_HOURS, latest)
    context.log.info(
        f"late rows for {len(hours)} hour(s) from {partition_key(hours[0])}; "
        + (
            f"recounting {partition_key(windows[0][0])}...{partition_key(windows[0][1])}"
            if windows
            else "none of them counted yet"
        )
    )
    requests = [range_request(f"late-rows:{cursor}", first, last) for first, last in windows]
    if not requests:
        return dg.SensorResult(skip_reason="late rows for hours not counted yet", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)
