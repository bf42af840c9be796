"""Automation conditions of the derived assets.

- Hourly values follow their sources: an hour is (re)computed whenever any source lands or
  re-lands it. They do not wait for a source that failed or is late (a missing parent): the
  sources that did land are combined now, and the hour is recomputed when the others arrive.
- Daily values wait for their whole day: once all 24 hours (and the sources' own daily assets)
  are in, and again whenever any of them changes, so a corrected hour re-rolls its day.

Neither is limited to the latest partition: a late or corrected hour from last month propagates
as surely as the hour that just closed.

"Updated" is remembered until the automation *requests* the partition, or until the partition
is written by a run that started after every one of its parents' latest writes (it read what
they wrote): `written_after_its_inputs`. So the automation does not redo an hour that the
command line (or the UI) just recomputed from its sources in a run of its own, while a source
that re-lands an hour during a long recomputation of that hour (after the run started) still
gets the hour recomputed once more. Times compared are the run's start and the parents'
materialization times, per partition; a parent written by the same run counts as read.

`written_after_its_inputs` is the platform's own condition class, which the daemon cannot
load: the sensor that evaluates these conditions runs in the code location's process
(`automation_condition_sensor`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping

import dagster as dg
from dagster._core.events import DagsterEventType

# Storage ids asked for at once when reading the latest materializations.
_CHUNK = 1000


def _latest_materializations(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Iterable[str]
) -> dict[str, tuple[str | None, float]]:
    """Partition -> (run id, timestamp) of its latest materialization."""
    ids = instance.get_latest_storage_id_by_partition(
        key, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(partitions)
    )
    storage_ids = sorted(ids.values())
    latest: dict[str, tuple[str | None, float]] = {}
    for start in range(0, len(storage_ids), _CHUNK):
        chunk = storage_ids[start : start + _CHUNK]
        for record in instance.get_asset_event_summary_records(
            DagsterEventType.ASSET_MATERIALIZATION,
            asset_key=key,
            storage_ids=chunk,
            limit=len(chunk),
        ):
            latest[record.partition] = (record.run_id, record.timestamp)
    return latest


def _run_starts(instance: dg.DagsterInstance, run_ids: Iterable[str | None]) -> Mapping[str, float]:
    wanted = sorted({run_id for run_id in run_ids if run_id})
    if not wanted:
        return {}
    records = instance.get_run_records(filters=dg.RunsFilter(run_ids=wanted))
    return {r.dagster_run.run_id: r.start_time for r in records if r.start_time is not None}


class WrittenAfterItsInputs(dg.AutomationCondition):
    """True for the partitions whose latest materialization was written by a run that started
    after the latest materialization of every parent partition it depends on (or that wrote
    that parent itself). Time-partitioned assets only; others are never true."""

    @property
    def name(self) -> str:
        return "written_after_its_inputs"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        candidates = context.candidate_subset
        definition = context.partitions_def
        if candidates.is_empty or not isinstance(definition, dg.TimeWindowPartitionsDefinition):
            return dg.AutomationResult(context, true_subset=context.get_empty_subset())
        view = context.asset_graph_view
        instance = view.instance
        keys = set(candidates.expensively_compute_partition_keys())
        written = _latest_materializations(instance, context.key, keys)
        started = _run_starts(instance, (run_id for run_id, _ in written.values()))
        consumed = {
            partition: (run_id, started[run_id])
            for partition, (run_id, _) in written.items()
            if run_id in started
        }
        for parent in context.asset_graph.get(context.key).parent_keys:
            parent_def = context.asset_graph.get(parent).partitions_def
            if not isinstance(parent_def, dg.TimeWindowPartitionsDefinition):
                consumed.clear()
                break
            parent_keys = view.compute_parent_subset(parent, candidates)
            latest = _latest_materializations(
                instance, parent, parent_keys.expensively_compute_partition_keys()
            )
            for parent_key, (run_id, timestamp) in latest.items():
                window = parent_def.time_window_for_partition_key(parent_key)
                child = definition.get_partition_key_for_timestamp(window.start.timestamp())
                reader = consumed.get(child)
                if reader is not None and run_id != reader[0] and timestamp > reader[1]:
                    del consumed[child]
        true_subset = candidates.compute_intersection_with_partition_keys(set(consumed) & keys)
        return dg.AutomationResult(context, true_subset=true_subset)


_requested = (
    dg.AutomationCondition.newly_requested() | dg.AutomationCondition.initial_evaluation()
).with_label("requested")
_consumed = (dg.AutomationCondition.newly_updated() & WrittenAfterItsInputs()).with_label(
    "written after its inputs"
)
_updated = dg.AutomationCondition.any_deps_updated().since(_requested | _consumed)
_quiet = ~dg.AutomationCondition.any_deps_in_progress() & ~dg.AutomationCondition.in_progress()

FOLLOW_ANY_SOURCE = (_updated & _quiet).with_label("any source landed")

WHEN_THE_DAY_IS_COMPLETE = (
    _updated & ~dg.AutomationCondition.any_deps_missing() & _quiet
).with_label("whole day landed")


def automation_condition_sensor(name: str, **kwargs) -> dg.AutomationConditionSensorDefinition:
    """The sensor evaluating the assets' automation conditions in the code location's process,
    where the platform's own condition classes live (`use_user_code_server`, a beta parameter
    of Dagster's: its notice is silenced here, once)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Parameter `use_user_code_server`", category=dg.BetaWarning
        )
        return dg.AutomationConditionSensorDefinition(name, use_user_code_server=True, **kwargs)
