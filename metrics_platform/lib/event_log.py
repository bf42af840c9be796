"""Dagster's Postgres event log storage, writing a range run's per-partition events in batches.

A backfill of a year of hourly partitions in one run records, per asset, 8,760 "materialization
planned" events when the run is created, 8,760 materializations as it ends, and one "check
planned" row per partition and check. dagster-postgres stores planned events one at a time
(each with new database connections: it keeps no pool) and builds the check rows as one giant
multi-row VALUES statement that SQLAlchemy compiles parameter by parameter: some 150 ms per
partition, 22 minutes of bookkeeping for a year of one graph. This storage writes each batch of
such events with one cached `executemany` (plus their tags and each asset's latest event in one
transaction), and the check rows with one serialized event and one `executemany`: about 4 ms
per partition (measured by `benchmarks/`).

It stores exactly what dagster-postgres stores (the same event rows, tags, asset entries and
check rows, in the same order), so every Dagster view of the instance is unchanged: in
particular the partitions of a failed range run still show as failed, which Dagster's other
lever for this cost (`DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS`) gives up.

Batches only reach an event log storage when `DAGSTER_EVENT_BATCH_SIZE` is set in the process
that runs the job; this storage sets it to 1,000 in its own process unless it is already set,
so that a run worker configured with this storage batches whatever launched it.

Two things it stores differently, on purpose:

- A range run evaluates each check once for its whole range, without a partition, while its
  planned rows are one per partition: dagster-postgres then adds a row without a partition and
  leaves every planned row PLANNED for good. Here the evaluation resolves the run's planned
  rows of that check, each keeping its partition (`_update_asset_check_evaluation`).
- A range run's materializations, one per partition, all carry the run's metadata (rows read
  and written, previews: the whole range's figures). They are stored once, on the range's last
  partition, with a `partition_range` entry naming the range; every other partition's
  materialization carries only a `partition_range` entry saying where the figures are
  (`_describe_range`). A year of hourly partitions otherwise stores 8,760 copies of each
  asset's metadata.

The class overrides internals of `dagster_postgres.PostgresEventLogStorage` (`store_event_batch`
and `_store_asset_check_evaluation_planned`) and relies on helpers of `SqlEventLogStorage`:
valid for the pinned dagster / dagster-postgres versions; `test_event_log.py` compares what it
stores with dagster-postgres's own class and must pass before either pin moves.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import cast

from dagster import MetadataValue
from dagster._core.events import (
    AssetCheckEvaluation,
    AssetCheckEvaluationPlanned,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._serdes import serialize_value
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config

EVENT_BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
RANGE_METADATA_KEY = "partition_range"
DEFAULT_EVENT_BATCH_SIZE = "1000"

# Event types written here with one executemany per batch; other batched types (failures to
# materialize, planned checks) go through dagster-postgres's own path.
_BATCHED_TYPES = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_OBSERVATION,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    }
)


class BatchedPostgresEventLogStorage(PostgresEventLogStorage):
    """PostgresEventLogStorage that writes a range run's per-partition events in batches.

    Configured in `dagster.yaml` as the instance's `event_log_storage` (module
    `metrics_platform.lib.event_log`), with the same config as dagster-postgres's class.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        os.environ.setdefault(EVENT_BATCH_SIZE_ENV, DEFAULT_EVENT_BATCH_SIZE)
        self._ranges: dict[str, str | None] = {}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        # dagster-postgres builds its own class by name: build this one instead.
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def _run_range(self, run_id: str) -> str | None:
        """`A...B` when the run covers a range of several partitions, else None (cached)."""
        if run_id not in self._ranges:
            if len(self._ranges) >= 1000:  # a long-lived process: keep the cache small
                self._ranges.clear()
            try:
                run = self._instance.get_run_by_id(run_id)
            except Exception:  # noqa: BLE001 - no instance registered: nothing to say
                run = None
            tags = run.tags if run is not None else {}
            start, end = (tags.get(tag) for tag in RANGE_TAGS)
            self._ranges[run_id] = f"{start}...{end}" if start and end and start != end else None
        return self._ranges[run_id]

    def _describe_range(self, event: EventLogEntry) -> EventLogEntry:
        """A range run's materialization: the range's metadata on the range's last partition,
        on every other one a `partition_range` note saying where it is."""
        dagster_event = event.get_dagster_event()
        if dagster_event.event_type != DagsterEventType.ASSET_MATERIALIZATION:
            return event
        keys = self._run_range(event.run_id)
        data = cast(StepMaterializationData, dagster_event.event_specific_data)
        materialization = data.materialization
        if keys is None or materialization.partition is None:
            return event
        last = keys.split("...", 1)[1]
        if materialization.partition == last:
            note = (
                f"{keys}: the figures of this materialization are the whole range's, "
                "written by one run"
            )
            metadata = {**materialization.metadata, RANGE_METADATA_KEY: MetadataValue.text(note)}
        else:
            note = (
                f"{keys}: written by one run with the whole range; the range's figures are on "
                f"partition {last}"
            )
            metadata = {RANGE_METADATA_KEY: MetadataValue.text(note)}
        described = materialization.with_metadata(metadata)
        return event._replace(
            dagster_event=dagster_event._replace(
                event_specific_data=data._replace(materialization=described)
            )
        )

    def store_event(self, event: EventLogEntry) -> None:
        super().store_event(self._describe_range(event) if event.is_dagster_event else event)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        # A run's planned events arrive in one batch with its planned checks: keep the order,
        # write each stretch of batchable events at once, hand the rest to dagster-postgres.
        for batchable, group in itertools.groupby(
            events, key=lambda event: event.get_dagster_event().event_type in _BATCHED_TYPES
        ):
            if batchable:
                self._store_asset_events(list(group))
            else:
                super().store_event_batch(list(group))

    def _store_asset_events(self, events: Sequence[EventLogEntry]) -> None:
        """The events' rows with one executemany (a statement SQLAlchemy compiles once, not a
        VALUES list of the batch's size), then, in one transaction, their tags and each asset's
        latest event in the asset table: what `store_event` does for each of them."""
        events = [self._describe_range(event) for event in events]
        rows = [self._event_to_row(event) for event in events]
        with self._connect() as conn:
            result = conn.execute(
                SqlEventLogStorageTable.insert().returning(
                    SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
                ),
                rows,
            )
            event_ids = [int(row[0]) for row in result.fetchall()]
        latest: dict = {}
        for event, event_id in zip(events, event_ids, strict=True):
            latest[event.get_dagster_event().asset_key] = (event, event_id)
        with self.index_transaction() as conn:
            self._store_asset_event_tags(conn, events, event_ids)
            for event, event_id in latest.values():
                self._store_asset_event(conn, event, event_id)

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        """One row per partition of the planned check, as dagster-postgres writes them, with the
        event serialized once and the rows inserted by one executemany."""
        planned = cast(AssetCheckEvaluationPlanned, event.get_dagster_event().event_specific_data)
        subset = planned.partitions_subset
        partition_keys = subset.get_partition_keys() if subset else [None]
        common = {
            "asset_key": planned.asset_key.to_string(),
            "check_name": planned.check_name,
            "run_id": event.run_id,
            "execution_status": AssetCheckExecutionRecordStatus.PLANNED.value,
            "evaluation_event": serialize_value(event),
            "evaluation_event_timestamp": self._event_insert_timestamp(event),
            "evaluation_event_storage_id": event_id,
        }
        with self.index_connection() as conn:
            conn.execute(
                AssetCheckExecutionsTable.insert(),
                [{**common, "partition": partition_key} for partition_key in partition_keys],
            )

    def _update_asset_check_evaluation(self, event: EventLogEntry, event_id: int | None) -> None:
        """An evaluation without a partition, in a run that planned the check per partition
        (a range run), resolves each of those planned rows; anything else as dagster-postgres."""
        evaluation = cast(AssetCheckEvaluation, event.get_dagster_event().event_specific_data)
        if evaluation.partition is not None:
            return super()._update_asset_check_evaluation(event, event_id)
        table = AssetCheckExecutionsTable
        status = (
            AssetCheckExecutionRecordStatus.SUCCEEDED
            if evaluation.passed
            else AssetCheckExecutionRecordStatus.FAILED
        )
        target = evaluation.target_materialization_data
        with self.index_connection() as conn:
            resolved = conn.execute(
                table.update()
                .where(
                    table.c.asset_key == evaluation.asset_key.to_string(),
                    table.c.check_name == evaluation.check_name,
                    table.c.run_id == event.run_id,
                    table.c.partition.isnot(None),
                    table.c.execution_status == AssetCheckExecutionRecordStatus.PLANNED.value,
                )
                .values(
                    execution_status=status.value,
                    evaluation_event=serialize_value(event),
                    evaluation_event_timestamp=self._event_insert_timestamp(event),
                    evaluation_event_storage_id=event_id,
                    materialization_event_storage_id=target.storage_id if target else None,
                )
            ).rowcount
        if not resolved:
            super()._update_asset_check_evaluation(event, event_id)
