"""Proposed changes to files outside the write path, applied here as local overrides so that
the benchmark can measure them (variant `socket-proposed`, or `--variants ...-proposed`).

1. `STATUS_AT_HOUR_ENDS`: the crawler source's query without its range join. The query in
   `defs/sources/crawlers/resource.py` joins every hour end with every status change of a
   crawler and keeps the one valid at that hour: hours x changes rows, which for a year is
   8,760 x ~10,000 per crawler. This version walks each status interval once and generates the
   hour ends it covers; the result is the same, row for row (`same_crawler_counts` checks it).

2. `BatchedPostgresEventLogStorage`: dagster-postgres's event log storage, except that the
   "check evaluation planned" rows of a range run (one per partition and check: 8,760 x 8 for a
   year of the hourly job) are written with one serialized event and one executemany, instead of
   serializing the same event once per partition into one giant multi-row VALUES statement
   that SQLAlchemy compiles bind parameter by bind parameter.
"""

from __future__ import annotations

import copy
from typing import cast

import yaml
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._serdes import serialize_value
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from psycopg2 import sql

STATUS_AT_HOUR_ENDS = sql.SQL(
    """
    WITH hours AS (
        SELECT generate_series(%(start)s::timestamptz + interval '1 hour', %(end)s::timestamptz,
                               interval '1 hour') AS hour_end
    ), states AS (
        SELECT {status_crawler} AS crawler_id,
               coalesce({stage} <> '', false) AS active,
               {changed_at} AS valid_from,
               lead({changed_at}) OVER (PARTITION BY {status_crawler} ORDER BY {changed_at}) AS valid_to
        FROM {status_table}
        WHERE {changed_at} < %(end)s
    ), active_at AS (
        -- the hour ends at which an active state holds: valid_from < hour_end <= valid_to
        SELECT s.crawler_id, hour_end
        FROM states s,
             generate_series(
                 greatest(date_trunc('hour', s.valid_from, 'UTC') + interval '1 hour',
                          %(start)s::timestamptz + interval '1 hour'),
                 least(coalesce(s.valid_to, %(end)s::timestamptz), %(end)s::timestamptz),
                 interval '1 hour') AS hour_end
        WHERE s.active AND (s.valid_to IS NULL OR s.valid_to > %(start)s)
    ), alive AS (
        SELECT h.hour_end, c.id
        FROM hours h
        JOIN (SELECT {id} AS id, {created_at} AS created_at, {deleted_at} AS deleted_at
              FROM {crawlers_table}) AS c
          ON c.created_at < h.hour_end AND (c.deleted_at IS NULL OR c.deleted_at >= h.hour_end)
    )
    SELECT h.hour_end - interval '1 hour' AS hour,
           count(a.id) AS total,
           count(x.crawler_id) AS active
    FROM hours h
    LEFT JOIN alive a ON a.hour_end = h.hour_end
    LEFT JOIN active_at x ON x.crawler_id = a.id AND x.hour_end = h.hour_end
    GROUP BY h.hour_end
    ORDER BY h.hour_end
    """
)


class BatchedPostgresEventLogStorage(PostgresEventLogStorage):
    """PostgresEventLogStorage that writes a range run's planned check rows in one batch."""

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        # The parent builds a PostgresEventLogStorage by name; build this class instead.
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        planned = cast("object", event.get_dagster_event().event_specific_data)
        subset = planned.partitions_subset  # type: ignore[attr-defined]
        partition_keys = subset.get_partition_keys() if subset else [None]
        serialized = serialize_value(event)  # the same event for every partition
        timestamp = self._event_insert_timestamp(event)
        rows = [
            {
                "asset_key": planned.asset_key.to_string(),  # type: ignore[attr-defined]
                "check_name": planned.check_name,  # type: ignore[attr-defined]
                "partition": partition_key,
                "run_id": event.run_id,
                "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
                "evaluation_event": serialized,
                "evaluation_event_timestamp": timestamp,
                "evaluation_event_storage_id": event_id,
            }
            for partition_key in partition_keys
        ]
        with self.index_connection() as conn:
            conn.execute(AssetCheckExecutionsTable.insert(), rows)


def apply_crawler_query() -> None:
    from metrics_platform.defs.sources.crawlers import resource

    resource._STATUS_AT_HOUR_ENDS = STATUS_AT_HOUR_ENDS


def instance_yaml(repository_yaml: str, event_log_module: str, event_log_class: str) -> str:
    """The repository's dagster.yaml with its event log storage class swapped: `storage` split
    into Dagster's three storage settings, everything else kept."""
    settings = yaml.safe_load(repository_yaml)
    url = settings.pop("storage")["postgres"]["postgres_url"]
    for key, module, cls in (
        ("run_storage", "dagster_postgres.run_storage", "PostgresRunStorage"),
        ("event_log_storage", event_log_module, event_log_class),
        ("schedule_storage", "dagster_postgres.schedule_storage", "PostgresScheduleStorage"),
    ):
        settings[key] = {
            "module": module,
            "class": cls,
            "config": {"postgres_url": copy.deepcopy(url)},
        }
    return yaml.safe_dump(settings, sort_keys=False)
