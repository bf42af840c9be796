"""The late-rows sensor: rows that arrive in the product database for hours already counted.

Every minute it asks the product database for rows whose id is above the highest id it saw last
time (its cursor, per table) and whose creation time falls in an hour that has closed. If there
are any, it requests one run of the product database source over the hours they fall in, so
those hours, and then their days, are recomputed. On its first tick it only records the ids.
"""

import json
from datetime import datetime, timezone

import dagster as dg

from metrics_platform.defs.partitions import hourly_partitions
from metrics_platform.defs.sources.product_db import SOURCE
from metrics_platform.defs.sources.product_db.resource import ProductDatabase

RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def partition_key(hour: datetime) -> str:
    return hourly_partitions.get_partition_key_for_timestamp(hour.timestamp())


@dg.sensor(
    name="product_db_late_rows",
    job_name=f"{SOURCE}_hourly",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Recounts the hours that late rows of the product database belong to.",
)
def product_db_late_rows(context: dg.SensorEvaluationContext, product_db: ProductDatabase):
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
    first, last = partition_key(hours[0]), partition_key(hours[-1])
    context.log.info(f"late rows for {len(hours)} hour(s) between {first} and {last}")
    request = dg.RunRequest(
        run_key=f"late-rows:{cursor}",
        tags={RANGE_TAGS[0]: first, RANGE_TAGS[1]: last} if first != last else {},
        partition_key=first if first == last else None,
    )
    return dg.SensorResult(run_requests=[request], cursor=cursor)
