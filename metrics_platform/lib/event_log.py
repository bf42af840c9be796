"""Dagster's Postgres event log storage, writing a range run's per-partition events in batches.

A backfill of a year of hourly partitions in one run records, per asset, 8,760 "materialization
planned" events when the run is created, 8,760 materializations as it ends, and one "check
planned" row per partition and check. dagster-postgres stores planned events one at a time
(each with new database connections: it keeps no pool) and builds the check rows as one giant
multi-row VALUES statement that SQLAlchemy compiles parameter by parameter: some 150 ms per
partition, 22 minutes of bookkeeping for a year of one graph. This storage writes each batch of
such events with one `COPY` (their ids drawn from the table's sequence first; then their tags
with another `COPY` and each asset's latest event, in one transaction), serializes a range's
materializations by writing each one's partition and timestamp into the first one's text
(`RangeSerializer`: they differ in nothing else), and writes the check rows with one `COPY`:
about 2 ms per partition (measured by `benchmarks/`).

Batches only reach an event log storage when `DAGSTER_EVENT_BATCH_SIZE` is set in the process
that runs the job; this storage sets it to 1,000 in its own process unless it is already set,
so that a run worker configured with this storage batches whatever launched it.

Five things it stores differently, on purpose:

- A range run plans each asset with one "materialization planned" event for its whole range
  (Dagster's partition-subset form), not one per partition: a year of hourly partitions stored
  8,760 of them per asset, about a fifth of the run's records. A run of a single partition is
  still planned with its partition. The reads that need each partition's latest attempt count
  a range's event for each of its partitions, so the partitions of a failed range run show as
  failed, of a running one as in progress, and the UI's latest run of a partition is the same
  (`get_latest_asset_partition_materialization_attempts_without_materializations`,
  `get_latest_planned_materialization_info`). Dagster's own reads of the subset form
  (`DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS`) skip it for both, which is the price it
  notes for that setting.

- A range run evaluates each check once for its whole range, without a partition, while its
  planned rows are one per partition: dagster-postgres then adds a row without a partition and
  leaves every planned row PLANNED for good. Here the evaluation resolves the run's planned
  rows of that check, each keeping its partition (`_update_asset_check_evaluation`).

- A range run's check rows (one per partition and check) name their planned or evaluation
  event by its event log id (`evaluation_event_storage_id`, which every row has) instead of
  each carrying a copy of it: a year of hourly partitions stored 8,760 copies of each check's
  event, about 60% of the run's records. The reads of check executions
  (`get_asset_check_execution_history`, `get_latest_asset_check_execution_by_key`) return the
  named event, and deleting a run's events copies them into its check rows first, which Dagster
  keeps. A single partition's row carries its copy, as dagster-postgres's does.

- A range run's materializations, one per partition, all carry the run's metadata (rows read
  and written, previews: the whole range's figures). They are stored once, on the range's last
  partition, with a `partition_range` entry naming the range; every other partition's
  materialization carries only a `partition_range` entry saying where the figures are
  (`_describe_range`). A year of hourly partitions otherwise stores 8,760 copies of each
  asset's metadata.

- Those other partitions' materializations, the same event but for their partition and
  timestamp, are stored as their range's template (stored once per range and asset) and their
  own timestamp, about 220 bytes a row instead of 1.6 KB (`event_log_layout`: the rows live in
  `event_log_rows`, and `event_logs` is a view that writes each template's event back out, so
  every reader gets the text Dagster serialized). The storage converts a database's plain
  `event_logs` table to that layout when it starts (unless it may not create tables).

Apart from those, it stores what dagster-postgres stores (the same event rows, tags, asset
entries and check rows, in the same order), so every Dagster view of the instance is the same:
in particular the partitions of a failed range run still show as failed, which Dagster's other
lever for this cost (`DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS`) gives up. The one view
that differs is a range run's own event list: one planned event per asset, not per partition.

The class overrides internals of `dagster_postgres.PostgresEventLogStorage` (`store_event_batch`,
`_store_asset_check_evaluation_planned`, `_update_asset_check_evaluation`, `_init_db`,
`delete_events_for_run`, `wipe`, the reads above) and relies on helpers of
`SqlEventLogStorage`: valid for the pinned dagster / dagster-postgres versions;
`test_event_log.py` compares what it stores with dagster-postgres's own class and must pass
before either pin moves.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import sqlalchemy as db
from dagster import AssetCheckKey, AssetKey, MetadataValue
from dagster._core.definitions.partitions.subset import PartitionsSubset
from dagster._core.events import (
    AssetCheckEvaluation,
    AssetCheckEvaluationPlanned,
    AssetMaterializationPlannedData,
    DagsterEventType,
    StepMaterializationData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)
from dagster._core.storage.event_log.base import PartitionKeyFilter, PlannedMaterializationInfo
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.sqlalchemy_compat import db_fetch_mappings, db_select, db_subquery
from dagster._serdes import deserialize_value, serialize_value
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy.dialects.postgresql import distinct_on

from metrics_platform.lib.database import TextBlocks
from metrics_platform.lib.event_log_layout import (
    EVENT_COLUMNS,
    ROWS_TABLE,
    TEMPLATES_TABLE,
    can_fill,
    ensure_compact_layout,
    is_compact,
)

EVENT_BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
RANGE_METADATA_KEY = "partition_range"
DEFAULT_EVENT_BATCH_SIZE = "1000"
# Stand-ins for a materialization's partition and timestamp in a range's serialized template:
# values no event has, whose JSON text appears once in it.
_PARTITION_MARK = "\x00partition\x00"
_TIMESTAMP_MARK = -12345678.875
_PARTITION_JSON = json.dumps(_PARTITION_MARK)
_TIMESTAMP_JSON = json.dumps(_TIMESTAMP_MARK)

# Event types written here with one COPY per batch; other batched types (failures to
# materialize, planned checks) go through dagster-postgres's own path.
_BATCHED_TYPES = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_OBSERVATION,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    }
)


# Rows per block of a COPY's text: a year of a check's planned rows (a serialized event each)
# is not held as one string.
_COPY_BLOCK_ROWS = 1000


def _csv_field(value) -> str:
    """One field of COPY's CSV format: NULL unquoted and empty, anything else quoted."""
    if value is None:
        return ""
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return '"' + text.replace('"', '""') + '"'


def _csv_line(row: Sequence) -> str:
    return ",".join(_csv_field(value) for value in row) + "\n"


def _copy_lines(cursor, table: str, columns: Sequence[str], lines: Iterable[str]) -> None:
    """`COPY table (columns) FROM STDIN` of CSV `lines`, a block of lines at a time (constant
    names: no identifier from input)."""
    lines = iter(lines)

    def blocks() -> Iterator[str]:
        while block := "".join(itertools.islice(lines, _COPY_BLOCK_ROWS)):
            yield block

    cursor.copy_expert(
        f"COPY {table} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", TextBlocks(blocks())
    )


def _copy(cursor, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """`COPY table (columns) FROM STDIN` of `rows`."""
    _copy_lines(cursor, table, columns, map(_csv_line, rows))


def _range_plans(asset_key: AssetKey):
    """A query of the asset's planned events without a partition (a range's, or an
    unpartitioned run's): id, run id and serialized event."""
    table = SqlEventLogStorageTable
    return db_select([table.c.id, table.c.run_id, table.c.event]).where(
        table.c.asset_key == asset_key.to_string(),
        table.c.dagster_event_type == DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value,
        table.c.partition.is_(None),
    )


def _planned_subset(serialized: str) -> PartitionsSubset | None:
    """The range a stored planned event without a partition plans; None for an unpartitioned
    run."""
    return deserialize_value(serialized, EventLogEntry).get_dagster_event().partitions_subset


def _last_key(keys: str) -> str:
    """The last partition of a range `A...B`."""
    return keys.split("...", 1)[1]


def _evaluation_event():
    """A check row's event: its own copy, or, for a row of a range run, which names its event
    by `evaluation_event_storage_id` instead of copying it, that event log row's text."""
    checks, events = AssetCheckExecutionsTable, SqlEventLogStorageTable
    named = (
        db_select([events.c.event])
        .where(events.c.id == checks.c.evaluation_event_storage_id)
        .scalar_subquery()
    )
    # COALESCE evaluates the lookup only for rows without a copy.
    return db.func.coalesce(checks.c.evaluation_event, named).label("evaluation_event")


_CHECK_RECORD_COLUMNS = ("id", "run_id", "execution_status", "create_timestamp", "partition")


def _with_partition(event: EventLogEntry, partition: str, timestamp: float) -> EventLogEntry:
    """A materialization with another partition and timestamp."""
    dagster_event = event.get_dagster_event()
    data = cast(StepMaterializationData, dagster_event.event_specific_data)
    return event._replace(
        timestamp=timestamp,
        dagster_event=dagster_event._replace(
            event_specific_data=data._replace(
                materialization=data.materialization._replace(partition=partition)
            )
        ),
    )


@dataclass(frozen=True)
class _Template:
    """A range's stored materialization with marks in place of its partition and timestamp."""

    marked: EventLogEntry  # the event as Dagster made it, marked
    pieces: tuple[str, str, str]  # the stored text around the two marks
    partition_first: bool  # whether the partition's mark comes before the timestamp's
    tags: Mapping[str, str]  # the stored event's indexed tags

    @classmethod
    def of(cls, marked: EventLogEntry, stored: EventLogEntry, tags: Mapping[str, str]):
        """The template of a marked event and its stored form, or None when a mark's text is
        not found exactly once in the stored text."""
        text = serialize_value(stored)
        if text.count(_PARTITION_JSON) != 1 or text.count(_TIMESTAMP_JSON) != 1:
            return None
        first, second = sorted((_PARTITION_JSON, _TIMESTAMP_JSON), key=text.index)
        head, rest = text.split(first)
        middle, tail = rest.split(second)
        return cls(marked, (head, middle, tail), first == _PARTITION_JSON, tags)

    def text(self, partition: str, timestamp: str) -> str:
        """The stored text with a partition and a timestamp (as JSON text) written in."""
        values = (json.dumps(partition), timestamp)
        first, second = values if self.partition_first else values[::-1]
        head, middle, tail = self.pieces
        return head + first + middle + second + tail


@dataclass(frozen=True)
class Filled:
    """A range's materialization as its range's template with its own partition and timestamp
    (what the compact layout stores of it)."""

    template: _Template
    partition: str
    timestamp: str  # JSON text

    @property
    def text(self) -> str:
        return self.template.text(self.partition, self.timestamp)


def _unchanged(event: EventLogEntry) -> EventLogEntry:
    return event


def _no_tags(event: EventLogEntry) -> Mapping[str, str]:
    return {}


def _never(event: EventLogEntry) -> bool:
    return False


class RangeSerializer:
    """The stored text of an asset event and its indexed tags, made faster for the
    materializations of a range.

    A range run's materializations differ only in their partition and timestamp. The first one's
    stored form (`stored_form`) is serialized with marks in their place; every next one that is
    the same event but for those two values (compared field by field on the event as Dagster
    made it, a tenth of the cost of making its stored form and serializing it) is that text with
    its own two values written in, and has the same indexed tags (`indexed_tags`). Anything else,
    and a materialization whose stored form depends on more than its partition and timestamp
    (`singular`), is made and serialized as usual.
    """

    def __init__(self, stored_form=_unchanged, indexed_tags=_no_tags, singular=_never) -> None:
        self._stored_form = stored_form
        self._indexed_tags = indexed_tags
        self._singular = singular
        self._template: _Template | None = None
        self.reused = 0  # events written into a template

    def __call__(self, event: EventLogEntry) -> tuple[str, Mapping[str, str]]:
        """The event's stored text and indexed tags."""
        stored, tags = self.stored(event)
        return (stored.text if isinstance(stored, Filled) else stored), tags

    def stored(self, event: EventLogEntry) -> tuple[str | Filled, Mapping[str, str]]:
        """The event's stored text, or its range's template filled in, and indexed tags."""
        dagster_event = event.dagster_event
        if (
            dagster_event is not None
            and dagster_event.event_type_value == DagsterEventType.ASSET_MATERIALIZATION.value
        ):
            data = cast(StepMaterializationData, dagster_event.event_specific_data)
            partition = data.materialization.partition
            if partition is not None and not self._singular(event):
                template = self._template_of(
                    _with_partition(event, _PARTITION_MARK, _TIMESTAMP_MARK)
                )
                if template is not None:
                    self.reused += 1
                    return Filled(template, partition, json.dumps(event.timestamp)), template.tags
        stored = self._stored_form(event)
        return serialize_value(stored), self._indexed_tags(stored)

    def _template_of(self, marked: EventLogEntry) -> _Template | None:
        if self._template is None or self._template.marked != marked:
            stored = self._stored_form(marked)
            self._template = _Template.of(marked, stored, self._indexed_tags(stored))
        return self._template


class BatchedPostgresEventLogStorage(PostgresEventLogStorage):
    """PostgresEventLogStorage that writes a range run's per-partition events in batches.

    Configured in `dagster.yaml` as the instance's `event_log_storage` (module
    `metrics_platform.lib.event_log`), with the same config as dagster-postgres's class.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        os.environ.setdefault(EVENT_BATCH_SIZE_ENV, DEFAULT_EVENT_BATCH_SIZE)
        self._ranges: dict[str, str | None] = {}
        self._serialize = RangeSerializer(
            self._stored_form, self._tags_for_asset_event, self._is_ranges_last
        )
        self._asset_key_texts: dict[AssetKey, str] = {}
        # The templates stored for this process's ranges: id(template) -> (template, row id).
        self._template_ids: dict[int, tuple[_Template, int]] = {}
        self._compact = self._layout()

    def _layout(self) -> bool:
        """Whether the event log has the compact layout (`event_log_layout`): converted to it
        when the storage may create its tables."""
        with self._connect() as conn:
            cursor = conn.connection.cursor()
            if self.should_autocreate_tables:
                return ensure_compact_layout(cursor)
            return is_compact(cursor)

    def _init_db(self) -> None:
        # dagster-postgres looks for an `event_logs` table, and the compact layout's is a view:
        # nothing to create then.
        with self._connect() as conn:
            if is_compact(conn.connection.cursor()):
                return
        super()._init_db()

    @property
    def _rows_table(self) -> str:
        """The table of the event log's rows (`event_logs` is a view of it in the compact
        layout)."""
        return ROWS_TABLE if self._compact else SqlEventLogStorageTable.name

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

    def _is_ranges_last(self, event: EventLogEntry) -> bool:
        """Whether a materialization is of its range run's last partition (which carries the
        range's figures)."""
        keys = self._run_range(event.run_id)
        return keys is not None and event.get_dagster_event().partition == _last_key(keys)

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
        last = _last_key(keys)
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
        # The metadata is normalized already: no need for `with_metadata`'s checks.
        described = materialization._replace(metadata=metadata)
        return event._replace(
            dagster_event=dagster_event._replace(
                event_specific_data=data._replace(materialization=described)
            )
        )

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        # A range run plans each asset once, for its whole range; the reads below expand it.
        return True

    def _planned_per_partition(self, event: EventLogEntry) -> EventLogEntry:
        """A planned materialization of a single partition, stored as dagster-postgres stores it
        (with its partition); a range's one planned event is kept as it is."""
        dagster_event = event.get_dagster_event()
        if dagster_event.event_type != DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            return event
        planned = cast(AssetMaterializationPlannedData, dagster_event.event_specific_data)
        subset = planned.partitions_subset
        if subset is None or len(subset) != 1:
            return event
        (partition,) = subset.get_partition_keys()
        return event._replace(
            dagster_event=dagster_event._replace(
                event_specific_data=planned._replace(partition=partition, partitions_subset=None)
            )
        )

    def _stored_form(self, event: EventLogEntry) -> EventLogEntry:
        if not event.is_dagster_event:
            return event
        return self._describe_range(self._planned_per_partition(event))

    def get_latest_asset_partition_materialization_attempts_without_materializations(
        self, asset_key: AssetKey, after_storage_id: int | None = None
    ) -> Mapping[str, tuple[str, int]]:
        """Dagster's answer (each partition's latest planned event, unless a materialization
        followed it), with a range's one planned event counted as planning each of its
        partitions: the partitions of a failed range run show as failed, of a running one as in
        progress, as with one planned event per partition."""
        table = SqlEventLogStorageTable
        planned_type = DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value
        after = [table.c.id > after_storage_id] if after_storage_id is not None else []
        with self.index_connection() as conn:
            # The latest event of each type per partition, and the ranges' planned events.
            latest = conn.execute(
                db_select(
                    [table.c.dagster_event_type, table.c.partition, table.c.id, table.c.run_id]
                )
                .ext(distinct_on(table.c.dagster_event_type, table.c.partition))
                .where(
                    table.c.asset_key == asset_key.to_string(),
                    table.c.dagster_event_type.in_(
                        [planned_type, DagsterEventType.ASSET_MATERIALIZATION.value]
                    ),
                    table.c.partition.isnot(None),
                    *after,
                )
                .order_by(table.c.dagster_event_type, table.c.partition, table.c.id.desc())
            ).all()
            ranges = conn.execute(_range_plans(asset_key).where(*after).order_by(table.c.id)).all()
        planned: dict[str, tuple[str, int]] = {}
        materialized: dict[str, int] = {}
        for kind, partition, event_id, run_id in latest:
            if kind == planned_type:
                planned[partition] = (run_id, event_id)
            else:
                materialized[partition] = event_id
        for event_id, run_id, serialized in ranges:
            subset = _planned_subset(serialized)
            for partition in subset.get_partition_keys() if subset is not None else ():
                if partition not in planned or planned[partition][1] < event_id:
                    planned[partition] = (run_id, event_id)
        return {
            partition: (run_id, event_id)
            for partition, (run_id, event_id) in planned.items()
            if materialized.get(partition, -1) < event_id
        }

    def get_latest_planned_materialization_info(
        self, asset_key: AssetKey, partition: str | None = None
    ) -> PlannedMaterializationInfo | None:
        """The latest run that planned the asset (the UI's latest run of a partition), a range
        run's one planned event counting for each partition of its range."""
        latest = super().get_latest_planned_materialization_info(asset_key, partition)
        if partition is None:
            return latest
        table = SqlEventLogStorageTable
        query = _range_plans(asset_key).order_by(table.c.id.desc())
        if latest is not None:
            query = query.where(table.c.id > latest.storage_id)
        with self.index_connection() as conn:
            for event_id, run_id, serialized in conn.execute(query).yield_per(100):
                subset = _planned_subset(serialized)
                if subset is not None and partition in subset:
                    return PlannedMaterializationInfo(storage_id=event_id, run_id=run_id)
        return latest

    def store_event(self, event: EventLogEntry) -> None:
        super().store_event(self._stored_form(event))

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
        """The events' rows with one `COPY` (their ids drawn from the table's sequence first, in
        order), then, in one transaction, their indexed tags with another `COPY` and each
        asset's latest event in the asset table: what `store_event` does for each of them. In
        the compact layout a range's materializations are stored as their range's template
        (stored once) and their own timestamp."""
        stored = [self._serialize.stored(event) for event in events]
        with self._connect() as conn:
            cursor = conn.connection.cursor()
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
                (self._rows_table, len(events)),
            )
            event_ids = sorted(int(row[0]) for row in cursor.fetchall())
            columns = EVENT_COLUMNS
            if self._compact:
                columns += ("template_id", "template_timestamp")
                self._store_templates(cursor, (form for form, _ in stored))
            _copy(
                cursor,
                self._rows_table,
                columns,
                (
                    self._row(event_id, event, form)
                    for event_id, event, (form, _) in zip(event_ids, events, stored, strict=True)
                ),
            )
        latest: dict = {}
        for event, event_id in zip(events, event_ids, strict=True):
            latest[event.get_dagster_event().asset_key] = (event, event_id)
        tags = [
            (
                event_id,
                self._asset_key_text(event),
                key,
                value,
                self._event_insert_timestamp(event),
            )
            for event, event_id, (_, indexed) in zip(events, event_ids, stored, strict=True)
            for key, value in indexed.items()
        ]
        with self.index_transaction() as conn:
            if tags:
                _copy(
                    conn.connection.cursor(),
                    AssetEventTagsTable.name,
                    ("event_id", "asset_key", "key", "value", "event_timestamp"),
                    tags,
                )
            for event, event_id in latest.values():
                self._store_asset_event(conn, self._stored_form(event), event_id)

    def _asset_key_text(self, event: EventLogEntry) -> str | None:
        """The event's asset key as stored (a JSON list; cached, as a range repeats it)."""
        key = event.get_dagster_event().asset_key
        if key is None:
            return None
        if key not in self._asset_key_texts:
            if len(self._asset_key_texts) >= 10_000:  # a long-lived process
                self._asset_key_texts.clear()
            self._asset_key_texts[key] = key.to_string()
        return self._asset_key_texts[key]

    def _storable(self, form: str | Filled) -> bool:
        """Whether an event is stored as its template (compact layout, a partition key the
        view can write in)."""
        return self._compact and isinstance(form, Filled) and can_fill(form.partition)

    def _store_templates(self, cursor, forms: Iterable[str | Filled]) -> None:
        """Store the templates of these events that are not stored yet, noting their ids (for
        `_row`, until the next batch)."""
        if len(self._template_ids) >= 100:  # a long-lived process; never within a batch
            self._template_ids.clear()
        for form in forms:
            if not self._storable(form) or id(form.template) in self._template_ids:
                continue
            template = form.template
            head, middle, tail = template.pieces
            cursor.execute(
                f"INSERT INTO {TEMPLATES_TABLE} (run_id, partition_first, head, middle, tail)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (template.marked.run_id, template.partition_first, head, middle, tail),
            )
            self._template_ids[id(template)] = (template, cursor.fetchone()[0])

    def _row(self, event_id: int, event: EventLogEntry, form: str | Filled) -> tuple:
        """The `EVENT_COLUMNS` of an asset event (a materialization, observation or planned
        materialization) stored as `form` (`_event_to_row`'s values, after its id); in the
        compact layout, then its template's id and its timestamp's text, or two NULLs."""
        dagster_event = event.get_dagster_event()
        if dagster_event.event_type_value == DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value:
            # Planned for one partition: stored with its partition.
            dagster_event = self._planned_per_partition(event).get_dagster_event()
        if self._storable(form):
            text, template = None, (self._template_ids[id(form.template)][1], form.timestamp)
        else:
            text, template = (form.text if isinstance(form, Filled) else form), (None, None)
        row = (
            event_id,
            event.run_id,
            text,
            dagster_event.event_type_value,
            self._event_insert_timestamp(event),
            dagster_event.step_key,
            self._asset_key_text(event),
            dagster_event.partition or None,
        )
        return row + template if self._compact else row

    def _store_asset_check_evaluation_planned(
        self, event: EventLogEntry, event_id: int | None
    ) -> None:
        """One row per partition of the planned check, as dagster-postgres writes them, with one
        `COPY`. A range's rows name the planned event by its event log id instead of each
        carrying a copy of it (the reads below return it); a single partition's row, or an
        unpartitioned check's, carries its copy as dagster-postgres's does."""
        planned = cast(AssetCheckEvaluationPlanned, event.get_dagster_event().event_specific_data)
        subset = planned.partitions_subset
        partition_keys = subset.get_partition_keys() if subset else [None]
        by_reference = len(partition_keys) > 1 and event_id is not None
        common = (
            planned.asset_key.to_string(),
            planned.check_name,
            event.run_id,
            AssetCheckExecutionRecordStatus.PLANNED.value,
            None if by_reference else serialize_value(event),
            self._event_insert_timestamp(event),
            event_id,
        )
        prefix = _csv_line(common)[:-1] + ","
        with self.index_connection() as conn:
            _copy_lines(
                conn.connection.cursor(),
                AssetCheckExecutionsTable.name,
                (
                    "asset_key",
                    "check_name",
                    "run_id",
                    "execution_status",
                    "evaluation_event",
                    "evaluation_event_timestamp",
                    "evaluation_event_storage_id",
                    "partition",
                ),
                # The rows differ in their partition only: the rest is made once.
                (prefix + _csv_field(key) + "\n" for key in partition_keys),
            )

    def _update_asset_check_evaluation(self, event: EventLogEntry, event_id: int | None) -> None:
        """An evaluation without a partition, in a run that planned the check per partition
        (a range run), resolves each of those planned rows (a range's by naming the evaluation's
        event log id instead of copying it into each); anything else as dagster-postgres."""
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
                    # Rows that name their planned event name their evaluation.
                    evaluation_event=(
                        serialize_value(event)
                        if event_id is None
                        else db.case(
                            (table.c.evaluation_event.is_(None), None),
                            else_=serialize_value(event),
                        )
                    ),
                    evaluation_event_timestamp=self._event_insert_timestamp(event),
                    evaluation_event_storage_id=event_id,
                    materialization_event_storage_id=target.storage_id if target else None,
                )
            ).rowcount
        if not resolved:
            super()._update_asset_check_evaluation(event, event_id)

    # Reads of check executions: a range's rows name their event instead of copying it.

    def get_asset_check_execution_history(
        self,
        check_key: AssetCheckKey,
        limit: int,
        cursor: int | None = None,
        status: AbstractSet[AssetCheckExecutionRecordStatus] | None = None,
        partition_filter: PartitionKeyFilter | None = None,
    ) -> Sequence[AssetCheckExecutionRecord]:
        """dagster-postgres's query (newest first, paged by row id), each row with its event."""
        table = AssetCheckExecutionsTable
        query = (
            db_select([*(table.c[name] for name in _CHECK_RECORD_COLUMNS), _evaluation_event()])
            .where(
                table.c.asset_key == check_key.asset_key.to_string(),
                table.c.check_name == check_key.name,
                self._get_asset_check_partition_filter_clause(partition_filter),
            )
            .order_by(table.c.id.desc())
            .limit(limit)
        )
        if cursor:
            query = query.where(table.c.id < cursor)
        if status:
            query = query.where(table.c.execution_status.in_([s.value for s in status]))
        with self.index_connection() as conn:
            rows = db_fetch_mappings(conn, query)
        return [AssetCheckExecutionRecord.from_db_row(row, key=check_key) for row in rows]

    def get_latest_asset_check_execution_by_key(
        self,
        check_keys: Sequence[AssetCheckKey],
        partition_filter: PartitionKeyFilter | None = None,
    ) -> Mapping[AssetCheckKey, AssetCheckExecutionRecord]:
        """dagster-postgres's query (each check's row of highest id), each row with its
        event."""
        if not check_keys:
            return {}
        table = AssetCheckExecutionsTable
        latest = db_subquery(
            db_select([db.func.max(table.c.id).label("id")])
            .where(
                table.c.asset_key.in_([key.asset_key.to_string() for key in check_keys]),
                table.c.check_name.in_([key.name for key in check_keys]),
                self._get_asset_check_partition_filter_clause(partition_filter),
            )
            .group_by(table.c.asset_key, table.c.check_name)
        )
        query = db_select(
            [
                *(table.c[name] for name in _CHECK_RECORD_COLUMNS),
                table.c.asset_key,
                table.c.check_name,
                _evaluation_event(),
            ]
        ).select_from(table.join(latest, table.c.id == latest.c.id))
        with self.index_connection() as conn:
            rows = db_fetch_mappings(conn, query)
        records = {}
        for row in rows:
            key = AssetCheckKey(
                asset_key=cast(AssetKey, AssetKey.from_db_string(row["asset_key"])),
                name=row["check_name"],
            )
            records[key] = AssetCheckExecutionRecord.from_db_row(row, key=key)
        return records

    def delete_events_for_run(self, conn, run_id: str) -> None:
        """Dagster keeps a deleted run's check rows: those that name one of its events get a
        copy of it first."""
        checks, events = AssetCheckExecutionsTable, SqlEventLogStorageTable
        conn.execute(
            checks.update()
            .where(
                checks.c.run_id == run_id,
                checks.c.evaluation_event.is_(None),
                checks.c.evaluation_event_storage_id == events.c.id,
            )
            .values(evaluation_event=events.c.event)
        )
        if not self._compact:
            super().delete_events_for_run(conn, run_id)
            return
        # Dagster's deletes, on the view's table (not row by row through the view's trigger),
        # and the run's templates. Constant text: the event types are Dagster's.
        asset_types = ", ".join(
            f"'{kind.value}'"
            for kind in (DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION)
        )
        for statement in (
            f"DELETE FROM {AssetEventTagsTable.name} WHERE event_id IN (SELECT id FROM"
            f" {ROWS_TABLE} WHERE run_id = :run_id AND dagster_event_type IN ({asset_types}))",
            f"DELETE FROM {ROWS_TABLE} WHERE run_id = :run_id",
            f"DELETE FROM {TEMPLATES_TABLE} WHERE run_id = :run_id",
        ):
            conn.execute(db.text(statement), {"run_id": run_id})

    def wipe(self) -> None:
        super().wipe()
        if self._compact:
            with self.index_connection() as conn:
                conn.execute(db.text(f"DELETE FROM {TEMPLATES_TABLE}"))
