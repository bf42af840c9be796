"""The batched event log storage stores what dagster-postgres's own class stores.

The same range runs (one that succeeds, one that fails) go to two Postgres instances: one with
dagster-postgres's `PostgresEventLogStorage` and Dagster's default (unbatched) event writes, one
with `BatchedPostgresEventLogStorage` as configured in `dagster.yaml`. Everything Dagster reads
back must be the same (each run's events, materialized / failed partitions, the assets' latest
events), except what the batched storage fixes on purpose: check executions of a range run are
resolved per partition, and a range's metadata is stored once, on its last partition.
This is the test to run before moving the dagster or
dagster-postgres pins, since the class overrides their internals.
"""

import os
from collections import Counter
from datetime import datetime, timezone

import dagster as dg
import pytest
import sqlalchemy
from dagster._core.events import DagsterEvent, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.base import PartitionKeyFilter
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from dagster._serdes import deserialize_value, serialize_value

from metrics_platform import cli
from metrics_platform.defs.partitions import HISTORY_START_ENV
from metrics_platform.lib import event_log_layout
from metrics_platform.lib.database import DATABASE_URL_ENV, connect
from metrics_platform.lib.event_log import (
    EVENT_BATCH_SIZE_ENV,
    BatchedPostgresEventLogStorage,
    RangeSerializer,
)
from metrics_platform_tests.conftest import RANGE_TAGS, new_database

HOURS = dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00")
FIRST_RANGE = ("2026-01-01-00:00", "2026-01-02-23:00")  # 48 partitions
FAILING_RANGE = ("2026-01-03-00:00", "2026-01-03-11:00")
WAITING_RANGE = ("2026-01-04-00:00", "2026-01-04-05:00")  # a run created, not started yet


class NumbersConfig(dg.Config):
    fail: bool = False


@dg.asset(
    partitions_def=HOURS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    check_specs=[dg.AssetCheckSpec("covers_the_window", asset="numbers")],
)
def numbers(context: dg.AssetExecutionContext, config: NumbersConfig):
    if config.fail:
        raise RuntimeError("the source is down")
    keys = context.partition_keys
    yield dg.MaterializeResult(metadata={"partitions": len(keys)}, data_version=dg.DataVersion("1"))
    yield dg.AssetCheckResult(passed=True)


@dg.asset(
    partitions_def=HOURS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[numbers],
    check_specs=[dg.AssetCheckSpec("positive", asset="doubled")],
)
def doubled(context: dg.AssetExecutionContext):
    yield dg.MaterializeResult(metadata={"partitions": len(context.partition_keys)})
    yield dg.AssetCheckResult(passed=True)


INSTANCE_YAML = """
run_storage:
  module: dagster_postgres.run_storage
  class: PostgresRunStorage
  config: {{postgres_url: "{url}"}}
event_log_storage:
  module: {module}
  class: {cls}
  config: {{postgres_url: "{url}"}}
schedule_storage:
  module: dagster_postgres.schedule_storage
  class: PostgresScheduleStorage
  config: {{postgres_url: "{url}"}}
"""


def _instance(tmp_path, url: str, module: str, cls: str) -> dg.DagsterInstance:
    home = tmp_path / cls
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(INSTANCE_YAML.format(url=url, module=module, cls=cls))
    return dg.DagsterInstance.from_config(str(home))


def _batched(tmp_path, postgres_server, dbname: str) -> dg.DagsterInstance:
    """An instance whose event log storage is the repository's, on a database of its own."""
    url = new_database(postgres_server, dbname)
    return _instance(
        tmp_path, url, "metrics_platform.lib.event_log", "BatchedPostgresEventLogStorage"
    )


def _ranges_and_one_partition(instance: dg.DagsterInstance) -> tuple[list[str], str]:
    """The range runs of `_run_both_ranges`, then a run of a single partition (its id)."""
    run_ids = _run_both_ranges(instance)
    single = dg.materialize([numbers], instance=instance, partition_key="2026-01-05-00:00")
    assert single.success
    return run_ids, single.run_id


def _run_both_ranges(instance: dg.DagsterInstance) -> list[str]:
    run_ids = []
    for (start, end), fail in ((FIRST_RANGE, False), (FAILING_RANGE, True)):
        result = dg.materialize(
            [numbers, doubled],
            instance=instance,
            tags=dict(zip(RANGE_TAGS, (start, end))),
            run_config={"ops": {"numbers": {"config": {"fail": fail}}}},
            raise_on_error=False,
        )
        assert result.success is not fail
        run_ids.append(result.run_id)
    job = dg.Definitions(assets=[numbers, doubled]).resolve_implicit_global_asset_job_def()
    waiting = instance.create_run_for_job(job, tags=dict(zip(RANGE_TAGS, WAITING_RANGE)))
    run_ids.append(waiting.run_id)
    return run_ids


def _what_dagster_reads(instance: dg.DagsterInstance, run_ids: list[str]) -> dict:
    seen: dict = {}
    for number, run_id in enumerate(run_ids):
        records = instance.get_records_for_run(run_id, limit=100_000).records
        events = [
            r.event_log_entry.get_dagster_event()
            for r in records
            if r.event_log_entry.is_dagster_event
        ]
        seen[f"run {number} events"] = Counter(
            (event.event_type, str(event.asset_key), event.partition)
            for event in events
            if event.event_type != dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        )
        # What the run planned, partition by partition, whether stored as one event per
        # partition or as one event for the range; how many events is kept apart.
        planned = [
            event
            for event in events
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        ]
        seen[f"run {number} planned"] = sorted(
            (str(event.asset_key), partition)
            for event in planned
            for partition in (
                event.partitions_subset.get_partition_keys()
                if event.partitions_subset
                else [event.partition]
            )
        )
        seen[f"run {number} planned events"] = Counter(str(event.asset_key) for event in planned)
    for asset in (numbers, doubled):
        key = asset.key
        status = get_and_update_asset_status_cache_value(instance, key, HOURS)
        seen[f"{key} partitions"] = {
            "materialized": sorted(
                status.deserialize_materialized_partition_subsets(HOURS).get_partition_keys()
            ),
            "failed": sorted(
                status.deserialize_failed_partition_subsets(HOURS).get_partition_keys()
            ),
            "in progress": sorted(
                status.deserialize_in_progress_partition_subsets(HOURS).get_partition_keys()
            ),
        }
        # The UI's latest run of each partition.
        seen[f"{key} latest run by partition"] = {
            partition: run_ids.index(info.run_id) if info else None
            for partition in HOURS.get_partition_keys_in_range(
                dg.PartitionKeyRange(FIRST_RANGE[0], WAITING_RANGE[1])
            )
            for info in [instance.get_latest_planned_materialization_info(key, partition)]
        }
        record = instance.get_asset_records([key])[0]
        entry = record.asset_entry
        seen[f"{key} latest"] = (
            entry.last_materialization.dagster_event.partition,
            entry.last_run_id == run_ids[-1] or entry.last_run_id == run_ids[0],
        )
        # The indexed tags of each event (data versions; derived ones hash storage ids, so keys).
        with instance.event_log_storage.index_connection() as conn:
            tags = Counter(
                conn.execute(
                    sqlalchemy.select(AssetEventTagsTable.c.key).where(
                        AssetEventTagsTable.c.asset_key == key.to_string()
                    )
                ).all()
            )
        assert tags  # the data version tags of every materialization
        seen[f"{key} event tags"] = tags
        for check in asset.check_keys:
            history = instance.event_log_storage.get_asset_check_execution_history(
                check, limit=100_000
            )
            seen[f"{check} executions"] = Counter(
                (execution.partition, execution.status.value) for execution in history
            )
    return seen


def test_batched_storage_stores_what_dagster_postgres_stores(
    tmp_path, postgres_server, monkeypatch
):
    monkeypatch.delenv(EVENT_BATCH_SIZE_ENV, raising=False)
    reference_url = new_database(postgres_server, "events_reference")
    with _instance(
        tmp_path, reference_url, "dagster_postgres.event_log", "PostgresEventLogStorage"
    ) as reference:
        reference_seen = _what_dagster_reads(reference, _run_both_ranges(reference))

    batched_url = new_database(postgres_server, "events_batched")
    with _instance(
        tmp_path, batched_url, "metrics_platform.lib.event_log", "BatchedPostgresEventLogStorage"
    ) as batched:
        assert isinstance(batched.event_log_storage, BatchedPostgresEventLogStorage)
        assert os.environ[EVENT_BATCH_SIZE_ENV] == "1000"  # batches reach the storage
        batched_seen = _what_dagster_reads(batched, _run_both_ranges(batched))

    executions, planned_events = {}, {}
    for seen in (reference_seen, batched_seen):
        for key in [k for k in seen if k.endswith(" executions")]:
            executions.setdefault(key, []).append(seen.pop(key))
        for key in [k for k in seen if k.endswith(" planned events")]:
            planned_events.setdefault(key, []).append(seen.pop(key))
    assert batched_seen == reference_seen
    # A range run plans each asset with one event for the whole range, not one per partition.
    for (reference, batched), size in zip(planned_events.values(), (48, 12, 6), strict=True):
        assert reference == {str(numbers.key): size, str(doubled.key): size}
        assert batched == {str(numbers.key): 1, str(doubled.key): 1}
    # And what is seen is right: the first range materialized, the failed range shown failed.
    numbers_partitions = batched_seen[f"{numbers.key} partitions"]
    assert len(numbers_partitions["materialized"]) == 48
    assert numbers_partitions["failed"] == HOURS.get_partition_keys_in_range(
        dg.PartitionKeyRange(*FAILING_RANGE)
    )
    latest_runs = Counter(batched_seen[f"{numbers.key} latest run by partition"].values())
    assert latest_runs == {0: 48, 1: 12, None: 12, 2: 6}
    assert numbers_partitions["in progress"] == HOURS.get_partition_keys_in_range(
        dg.PartitionKeyRange(*WAITING_RANGE)
    )

    # Check executions: dagster-postgres records the range's one evaluation without a partition
    # and leaves the 48 planned rows PLANNED; here each planned partition is resolved.
    for check in [*numbers.check_keys, *doubled.check_keys]:
        reference, batched = executions[f"{check} executions"]
        assert (
            reference[(None, "SUCCEEDED")] == 1
            and len({p for p, status in reference if status == "PLANNED"}) == 48 + 12 + 6
        )
        assert batched[(None, "SUCCEEDED")] == 0
        succeeded = {p for p, status in batched if status == "SUCCEEDED"}
        assert succeeded == set(
            HOURS.get_partition_keys_in_range(dg.PartitionKeyRange(*FIRST_RANGE))
        )
        # The failed run never evaluated its checks: its rows stay planned (Dagster shows them
        # as not executed once the run has ended), as do the waiting run's.
        assert {p for p, status in batched if status == "PLANNED"} == {
            *HOURS.get_partition_keys_in_range(dg.PartitionKeyRange(*FAILING_RANGE)),
            *HOURS.get_partition_keys_in_range(dg.PartitionKeyRange(*WAITING_RANGE)),
        }


def test_a_range_s_figures_are_stored_once_on_its_last_partition(tmp_path, postgres_server):
    """A range run's metadata is the whole range's: it is stored
    once, on the range's last partition; every other partition says where to find it instead
    of carrying a copy. A run of one partition is stored as dagster-postgres stores it."""
    with _batched(tmp_path, postgres_server, "events_metadata") as instance:
        run_ids, single_run_id = _ranges_and_one_partition(instance)
        records = instance.fetch_materializations(numbers.key, limit=1000).records
        planned = [
            record
            for run_id in [*run_ids, single_run_id]
            for record in instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
            ).records
            if record.event_log_entry.get_dagster_event().asset_key == numbers.key
        ]
    by_partition = {r.partition_key: r.asset_materialization.metadata for r in records}
    first, last = FIRST_RANGE
    assert by_partition[last]["partitions"].value == 48  # the range's figure
    assert by_partition[last]["partition_range"].value == (
        f"{first}...{last}: the figures of this materialization are the whole range's, "
        "written by one run"
    )
    inner = by_partition["2026-01-01-07:00"]
    assert set(inner) == {"partition_range"}
    assert inner["partition_range"].value == (
        f"{first}...{last}: written by one run with the whole range; the range's figures are "
        f"on partition {last}"
    )
    assert "partition_range" not in by_partition["2026-01-05-00:00"]
    assert by_partition["2026-01-05-00:00"]["partitions"].value == 1
    # A run of one partition is planned with its partition, as dagster-postgres plans it; a
    # range run with one event for the range.
    by_run = {
        record.event_log_entry.run_id: record.event_log_entry.get_dagster_event()
        for record in planned
    }
    assert len(by_run) == len(planned) == 4
    assert by_run[single_run_id].partition == "2026-01-05-00:00"
    assert by_run[single_run_id].partitions_subset is None
    assert sorted(len(e.partitions_subset or []) for e in by_run.values()) == [0, 6, 12, 48]


@pytest.mark.parametrize("preset", [None, "25"])
def test_the_storage_turns_batching_on_unless_the_operator_chose(
    tmp_path, postgres_server, monkeypatch, preset
):
    if preset is None:
        monkeypatch.delenv(EVENT_BATCH_SIZE_ENV, raising=False)
    else:
        monkeypatch.setenv(EVENT_BATCH_SIZE_ENV, preset)
    with _batched(tmp_path, postgres_server, "events_env"):
        assert os.environ[EVENT_BATCH_SIZE_ENV] == (preset or "1000")


def _materialization(partition: str, timestamp: float, note: str = "same") -> EventLogEntry:
    materialization = dg.AssetMaterialization(
        asset_key="numbers", partition=partition, metadata={"partition_range": note}
    )
    event = DagsterEvent(
        event_type_value=dg.DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="job",
        event_specific_data=StepMaterializationData(materialization),
        message="Materialized value numbers.",
        step_key="numbers",
    )
    return EventLogEntry(
        error_info=None,
        level=10,
        user_message="Materialized value numbers.",
        run_id="8c1bae77-2ffd-46fe-a47c-e229e7a5c9be",
        timestamp=timestamp,
        step_key="numbers",
        job_name="job",
        dagster_event=event,
    )


def test_a_range_s_materializations_are_serialized_as_dagster_serializes_them():
    serialize = RangeSerializer()
    events = [
        *(_materialization(f"2026-01-01-{h:02d}:00", 1796151833.17 + h / 7) for h in range(24)),
        _materialization("2026-01-02-00:00", 1796151900.0, note="another"),  # not the same event
        _materialization('a "quoted" \\ partition \u00e9', 1e9),  # text JSON escapes
        _materialization("2026-01-02-01:00", 1796151901.0),
    ]
    for event in events:
        assert serialize(event) == (serialize_value(event), {})
    assert serialize.reused == len(events)  # each was written into a template


def test_a_range_s_stored_form_is_made_once_unless_it_depends_on_the_partition():
    """The stored form (here: a note of how many partitions the template served) and the
    indexed tags of a range's materializations come from its first one; a materialization the
    storage marks as singular (its range's last) gets its own."""
    forms = []

    def stored_form(event):
        forms.append(event.get_dagster_event().partition)
        return event

    def tags(event):
        return {"dagster/data_version": "7"}

    serialize = RangeSerializer(
        stored_form, tags, singular=lambda e: e.get_dagster_event().partition.endswith("23:00")
    )
    events = [_materialization(f"2026-01-01-{h:02d}:00", 1796151833.0 + h) for h in range(24)]
    assert [serialize(event) for event in events] == [
        (serialize_value(event), {"dagster/data_version": "7"}) for event in events
    ]
    assert serialize.reused == 23
    assert forms == ["\x00partition\x00", "2026-01-01-23:00"]


def test_the_stored_materializations_are_the_events_dagster_serializes(tmp_path, postgres_server):
    with _batched(tmp_path, postgres_server, "events_text") as instance:
        _run_both_ranges(instance)
        with instance.event_log_storage.index_connection() as conn:
            table = SqlEventLogStorageTable
            rows = conn.execute(
                sqlalchemy.select(table.c.partition, table.c.timestamp, table.c.event).where(
                    table.c.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION.value
                )
            ).all()
    assert len(rows) == 2 * 48
    for partition, timestamp, text in rows:
        entry = deserialize_value(text, EventLogEntry)
        assert serialize_value(entry) == text
        assert entry.get_dagster_event().partition == partition
        moment = datetime.fromtimestamp(entry.timestamp, timezone.utc).replace(tzinfo=None)
        assert moment == timestamp


def _check_rows(instance: dg.DagsterInstance) -> list[tuple]:
    """(run id, partition, status, whether the row holds its own copy of the event)."""
    table = AssetCheckExecutionsTable
    with instance.event_log_storage.index_connection() as conn:
        return conn.execute(
            sqlalchemy.select(
                table.c.run_id,
                table.c.partition,
                table.c.execution_status,
                table.c.evaluation_event.isnot(None),
            )
        ).all()


def test_a_range_s_check_rows_name_their_event_instead_of_copying_it(tmp_path, postgres_server):
    """A range run's check rows (one per partition and check) name the planned or evaluation
    event they hold by its event log id instead of each carrying a copy of it: every read of
    a check execution still returns the event, even after the run's events are deleted."""
    with _batched(tmp_path, postgres_server, "events_checks") as instance:
        run_ids, single_run_id = _ranges_and_one_partition(instance)
        rows = _check_rows(instance)
        storage = instance.event_log_storage
        check_key = next(iter(numbers.check_keys))

        # Stored: a range's rows without a copy; a single partition's as dagster-postgres does.
        assert {copied for run_id, *_, copied in rows if run_id in run_ids} == {False}
        assert [copied for run_id, *_, copied in rows if run_id == single_run_id] == [True]

        # Read: every record carries its event, of the type its status says.
        history = storage.get_asset_check_execution_history(check_key, limit=1000)
        assert len(history) == 48 + 12 + 6 + 1
        for record in history:
            assert record.event is not None
            expected = (
                dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
                if record.status.value == "PLANNED"
                else dg.DagsterEventType.ASSET_CHECK_EVALUATION
            )
            assert record.event.dagster_event_type == expected
            assert record.event.run_id == record.run_id
        succeeded = [r for r in history if r.status.value == "SUCCEEDED"]
        assert {r.evaluation.passed for r in succeeded} == {True}
        latest = storage.get_latest_asset_check_execution_by_key(
            [check_key], partition_filter=PartitionKeyFilter(key="2026-01-01-07:00")
        )[check_key]
        assert (latest.run_id, latest.partition) == (run_ids[0], "2026-01-01-07:00")
        assert latest.evaluation.passed and latest.evaluation.check_name == check_key.name
        infos = storage.get_asset_check_partition_info([check_key])
        assert len(infos) == 48 + 12 + 6 + 1

        # A deleted run's check rows keep their events (Dagster keeps the rows).
        instance.delete_run(run_ids[0])
        after = storage.get_asset_check_execution_history(check_key, limit=1000)
        assert [(r.id, r.status, r.event) for r in after] == [
            (r.id, r.status, r.event) for r in history
        ]


def _layout(url: str) -> tuple[str, list[tuple]]:
    """The kind of `event_logs` ('r' a table, 'v' a view) and, in the compact layout, each
    materialization row's (run id, partition, whether it holds its own event, template)."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass('event_logs')")
            (kind,) = cur.fetchone()
            rows = []
            if kind == "v":
                cur.execute(
                    "SELECT run_id, partition, event IS NOT NULL, template_id FROM event_log_rows"
                    " WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
                )
                rows = cur.fetchall()
            return kind, rows
    finally:
        conn.close()


def _events_as_read(instance: dg.DagsterInstance, run_ids: list[str]) -> list[tuple]:
    """Every event of the runs as Dagster reads it back: (storage id, stored text)."""
    return [
        (record.storage_id, serialize_value(record.event_log_entry))
        for run_id in run_ids
        for record in instance.get_records_for_run(run_id, limit=100_000).records
    ]


def test_a_range_s_materializations_are_stored_as_its_template(
    tmp_path, postgres_server, monkeypatch, capsys
):
    """A database with dagster-postgres's plain event log is converted to the compact layout
    when the repository's storage starts on it: its rows stay as they are, a range run's
    materializations are then stored as their range's template (once) and their own timestamp,
    and every reader, the repository's storage or dagster-postgres's class, reads back the
    events Dagster serialized. The layout can be turned back into dagster-postgres's table."""
    url = new_database(postgres_server, "events_layout")
    with _instance(
        tmp_path / "plain", url, "dagster_postgres.event_log", "PostgresEventLogStorage"
    ) as plain:
        before = _run_both_ranges(plain)
        read_before = _events_as_read(plain, before)
    assert _layout(url) == ("r", [])

    with _instance(
        tmp_path / "batched",
        url,
        "metrics_platform.lib.event_log",
        "BatchedPostgresEventLogStorage",
    ) as batched:
        kind, rows = _layout(url)
        assert kind == "v" and rows and all(own for *_, own, _ in rows)  # nothing rewritten
        assert _events_as_read(batched, before) == read_before
        run_ids, single = _ranges_and_one_partition(batched)
        read_after = _events_as_read(batched, [*before, *run_ids, single])
        # The first range's materializations: a template for each asset, every partition
        # stored as it but the range's last, which carries the range's figures.
        _, rows = _layout(url)
        stored = [(partition, own, template) for run_id, partition, own, template in rows]
        first_range = [row for row, (run_id, *_) in zip(stored, rows) if run_id == run_ids[0]]
        assert len(first_range) == 2 * 48
        assert Counter(own for _, own, _ in first_range) == {False: 2 * 47, True: 2}
        assert {p for p, own, _ in first_range if own} == {FIRST_RANGE[1]}
        assert len({t for *_, t in first_range if t is not None}) == 2
        assert [own for run_id, _, own, _ in rows if run_id == single] == [True]
        for record in batched.get_records_for_run(run_ids[0], limit=100_000).records:
            text = serialize_value(record.event_log_entry)
            assert deserialize_value(text, EventLogEntry) == record.event_log_entry

    # dagster-postgres's class on the converted database: reads the same, writes through the
    # view.
    with _instance(
        tmp_path / "plain_again", url, "dagster_postgres.event_log", "PostgresEventLogStorage"
    ) as plain:
        assert _events_as_read(plain, [*before, *run_ids, single]) == read_after
        extra = dg.materialize([numbers], instance=plain, partition_key="2026-01-06-00:00")
        assert extra.success and _events_as_read(plain, [extra.run_id])

    with _instance(
        tmp_path / "batched_again",
        url,
        "metrics_platform.lib.event_log",
        "BatchedPostgresEventLogStorage",
    ) as batched:
        read_extra = _events_as_read(batched, [extra.run_id])
        assert [text for _, text in read_extra] == [
            text for _, text in _events_as_read(plain, [extra.run_id])
        ]
        # A deleted run takes its rows, their tags and its templates with it.
        batched.delete_run(run_ids[0])
        assert not [row for row in _layout(url)[1] if row[0] == run_ids[0]]
        kept = [*before, *run_ids[1:], single, extra.run_id]
        read_kept = _events_as_read(batched, kept)
        conn = connect(url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM event_log_templates WHERE run_id = %s", (run_ids[0],)
                )
                assert cur.fetchone() == (0,)
                cur.execute(
                    "SELECT count(*) FROM asset_event_tags t"
                    " LEFT JOIN event_log_rows r ON r.id = t.event_id WHERE r.id IS NULL"
                )
                assert cur.fetchone() == (0,)
        finally:
            conn.close()

    # Back to dagster-postgres's table, every row with its event, by the operator's command.
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv(HISTORY_START_ENV, "2026-01-01")
    assert cli.main(["event-log", "plain"]) == 0
    assert "dagster-postgres's table" in capsys.readouterr().out
    assert _layout(url) == ("r", [])
    with _instance(
        tmp_path / "plain_restored", url, "dagster_postgres.event_log", "PostgresEventLogStorage"
    ) as plain:
        assert _events_as_read(plain, kept) == read_kept


def test_a_busy_event_log_is_converted_by_a_later_start(tmp_path, postgres_server, monkeypatch):
    """The conversion waits for the table's readers only briefly: while a long read holds the
    plain table, the storage starts and writes the plain layout, as dagster-postgres does; the
    next start converts it."""
    url = new_database(postgres_server, "events_busy")
    with _instance(
        tmp_path / "plain", url, "dagster_postgres.event_log", "PostgresEventLogStorage"
    ) as plain:
        before = _run_both_ranges(plain)[:1]
    monkeypatch.setattr(event_log_layout, "LOCK_TIMEOUT_MS", 200)
    reader = connect(url)
    try:
        with reader.cursor() as cur:
            cur.execute("SELECT count(*) FROM event_logs")  # a read that stays open
            with _instance(
                tmp_path / "busy",
                url,
                "metrics_platform.lib.event_log",
                "BatchedPostgresEventLogStorage",
            ) as batched:
                single = dg.materialize(
                    [numbers], instance=batched, partition_key="2026-01-05-00:00"
                )
                assert single.success
                assert _layout(url)[0] == "r"
        reader.rollback()
    finally:
        reader.close()
    with _instance(
        tmp_path / "later", url, "metrics_platform.lib.event_log", "BatchedPostgresEventLogStorage"
    ) as batched:
        assert _layout(url)[0] == "v"
        assert _events_as_read(batched, [*before, single.run_id])
