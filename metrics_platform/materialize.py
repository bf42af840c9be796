"""`metrics-platform materialize`: a selection over a range, run the way the automation runs it.

The command turns what the operator typed into a **plan** of runs, each one run over a range of
partitions of one partitions definition (single-run backfills):

1. the hourly sources, in one run: a failing source fails only its own asset;
2. what is computed from them each hour (hourly values, KPIs), in a second run, whatever the
   sources did: the hours of the sources that landed are written, and the completeness check
   flags them incomplete for the one that failed;
3. the same two steps for days (the sources' own daily assets, then daily values and KPIs).

Ranges are given as partition keys (`A...B`, as the UI writes them; hourly keys are written in
the business time zone), as UTC times (`2026-10-23T00:00Z..2026-10-27T00:00Z`, half-open) or as
business days (`2026-10-23..2026-10-26`, both included), and converted to each step's keys.
Anything that cannot work (a selection that matches nothing, a key of the wrong kind, an hour
range for days) is refused before any run starts, with one line saying what to type instead.

A step's outcome can ask for more steps: `execute_plan` runs every `FollowUp` after each step
and queues what it returns right after that step (e.g. "then recompute these later partitions"):

    def later_hours(outcome: Outcome) -> list[Step]:
        if outcome.step.name != "hourly sources" or not outcome.success:
            return []
        return [Step("later hours", outcome.step.keys, outcome.step.kind, next_range)]

    FOLLOW_UPS.append(later_hours)
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from typing import TypeVar
from zoneinfo import ZoneInfo

import dagster as dg

from metrics_platform.defs.sources.registry import DISABLED_TAG
from metrics_platform.lib.errors import MetricsPlatformError
from metrics_platform.lib.in_process import materialize_in_process
from metrics_platform.lib.run_launcher import worker_tags

# Dagster's tag pair that makes one run cover a range of partitions.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# Every run of one `materialize` command carries the same value: an interrupted command ends
# the runs it started.
INVOCATION_TAG = "metrics_platform/cli_invocation"
HOUR_KEY_FORMAT = "%Y-%m-%d-%H:%M"
DAY_KEY_FORMAT = "%Y-%m-%d"
IN_KEYS = ("rows_read", "rows_in", "hours_in")
OUT_KEYS = ("rows_written", "rows_out", "dagster/partition_row_count")

T = TypeVar("T")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_HOUR_KEY = re.compile(r"\d{4}-\d{2}-\d{2}-\d{2}:\d{2}(?:[+-]\d{4})?")
_ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}(?::\d{2}(?::\d{2})?)?(?:Z|[+-]\d{2}:?\d{2})?")


class UsageError(MetricsPlatformError):
    """What the operator typed cannot be run; the message says what to type instead."""


# --- the range the operator asked for -------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """Hours or days: a partitions definition and how the operator names its partitions."""

    name: str  # "hourly" / "daily"
    unit: str  # "hour" / "day"
    partitions_def: dg.TimeWindowPartitionsDefinition

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.partitions_def.timezone)


@dataclass(frozen=True)
class Requested:
    """What `--partitions` said, before it meets a kind of partition."""

    text: str
    form: str  # "keys", "utc" or "days"
    first: object
    last: object


def parse_partitions(text: str) -> Requested:
    """Recognize one of the three forms, or a single key, day or UTC hour."""
    text = text.strip()
    if "..." in text:
        first, _, last = text.partition("...")
        return Requested(text, "keys", first.strip(), last.strip())
    first, sep, last = text.partition("..")
    first, last = first.strip(), (last.strip() if sep else first.strip())
    if _DATE.fullmatch(first) and _DATE.fullmatch(last):
        start, end = date.fromisoformat(first), date.fromisoformat(last)
        if end < start:
            raise UsageError(f"--partitions {text}: the last day is before the first")
        return Requested(
            text, "days" if sep else "keys", start if sep else first, end if sep else last
        )
    if sep and _ISO_TIME.fullmatch(first) and _ISO_TIME.fullmatch(last):
        start, end = _utc_time(first, text), _utc_time(last, text)
        if end <= start:
            raise UsageError(f"--partitions {text}: the end must be after the start")
        return Requested(text, "utc", start, end)
    if not sep and _ISO_TIME.fullmatch(first):
        start = _utc_time(first, text)
        return Requested(text, "utc", start, start + timedelta(hours=1))  # that one hour
    if not sep:
        return Requested(text, "keys", first, first)
    raise UsageError(
        f"--partitions {text}: not a range; type UTC times "
        "(2026-10-23T00:00Z..2026-10-27T00:00Z), business days (2026-10-23..2026-10-26) or "
        "partition keys (2026-10-23-00:00...2026-10-26-23:00)"
    )


def _utc_time(value: str, text: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise UsageError(
            f"--partitions {text}: {value} has no time zone; write UTC times with a Z "
            f"({value}Z), or give business days (YYYY-MM-DD..YYYY-MM-DD)"
        )
    if moment.minute or moment.second or moment.microsecond:
        raise UsageError(f"--partitions {text}: {value} is not on the hour")
    return moment.astimezone(timezone.utc)


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def key_range(requested: Requested, kind: Kind) -> dg.PartitionKeyRange:
    """The partition keys of `kind` that the request covers; refused when it does not fit."""
    definition = kind.partitions_def
    if requested.form == "keys":
        for key in (requested.first, requested.last):
            _check_key(str(key), kind, requested)
        keys = dg.PartitionKeyRange(str(requested.first), str(requested.last))
        if definition.less_than(keys.end, keys.start):
            raise UsageError(f"--partitions {requested.text}: the last key is before the first")
        return keys
    if requested.form == "days":
        start = datetime.combine(requested.first, datetime.min.time(), kind.zone)
        end = datetime.combine(requested.last + timedelta(days=1), datetime.min.time(), kind.zone)
    else:
        start, end = requested.first, requested.last
        if kind.unit == "day":
            for moment in (start, end):
                if moment.astimezone(kind.zone).time() != datetime.min.time():
                    first = start.astimezone(kind.zone).date()
                    raise UsageError(
                        f"--partitions {requested.text}: daily assets take business days "
                        f"({kind.partitions_def.timezone}); type e.g. --partitions "
                        f"{first}..{first + timedelta(days=1)}"
                    )
    return _window_keys(start, end, kind, requested)


def _window_keys(
    start: datetime, end: datetime, kind: Kind, requested: Requested
) -> dg.PartitionKeyRange:
    definition = kind.partitions_def
    first_window = definition.get_first_partition_window()
    last_window = definition.get_last_partition_window()
    if first_window is None or last_window is None:
        raise UsageError(f"no {kind.unit} has closed yet since the history start")
    if start < first_window.start:
        raise UsageError(
            f"--partitions {requested.text}: starts before the history start "
            f"{_utc(first_window.start)} (METRICS_PLATFORM_HISTORY_START)"
        )
    if end > last_window.end:
        raise UsageError(
            f"--partitions {requested.text}: ends after the last closed {kind.unit} "
            f"(ending {_utc(last_window.end)})"
        )
    keys = definition.get_partition_key_range_for_time_window(dg.TimeWindow(start, end))
    return keys


def _check_key(key: str, kind: Kind, requested: Requested) -> None:
    definition = kind.partitions_def
    if kind.unit == "hour" and _DATE.fullmatch(key):
        raise UsageError(
            f"--partitions {requested.text}: {key} is a day; hourly assets take hours: type "
            f"--partitions {key}..{key} for the hours of that business day, or UTC times "
            f"({key}T00:00Z..{date.fromisoformat(key) + timedelta(days=1)}T00:00Z)"
        )
    if kind.unit == "day" and _HOUR_KEY.fullmatch(key):
        raise UsageError(
            f"--partitions {requested.text}: {key} is an hour; daily assets take business "
            f"days: type --partitions {key[:10]}"
        )
    try:
        definition.time_window_for_partition_key(key)
    except Exception:  # noqa: BLE001 - Dagster raises ValueError or its own errors
        example = "2026-10-23-00:00" if kind.unit == "hour" else "2026-10-23"
        raise UsageError(
            f"--partitions {requested.text}: {key} is not a {kind.unit} key (like {example}); "
            "or type UTC times (2026-10-23T00:00Z..2026-10-27T00:00Z) or business days "
            "(2026-10-23..2026-10-26)"
        ) from None
    if not definition.has_partition_key(key):
        raise UsageError(
            f"--partitions {requested.text}: {key} is not a partition: {kind.unit}s go from "
            f"{definition.get_first_partition_key()} to the last closed one, "
            f"{definition.get_last_partition_key()}"
        )


def describe(keys: dg.PartitionKeyRange, kind: Kind) -> str:
    """`A...B (N hours, UTC x..y)`: the keys and what they are in UTC."""
    definition = kind.partitions_def
    count = len(definition.get_partition_keys_in_range(keys))
    start = definition.time_window_for_partition_key(keys.start).start
    end = definition.time_window_for_partition_key(keys.end).end
    label = keys.start if keys.start == keys.end else f"{keys.start}...{keys.end}"
    return (
        f"{label} ({count} {kind.unit}{'s' if count != 1 else ''}, UTC {_utc(start)}..{_utc(end)})"
    )


# --- the plan ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One run: assets of one kind over one range of their partitions, with its run's tags."""

    name: str
    keys: tuple[dg.AssetKey, ...]
    kind: Kind
    partitions: dg.PartitionKeyRange
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Failure:
    asset: str
    reason: str
    details: str


@dataclass
class Outcome:
    """What a step's run did: its run, rows in/out per asset, and each failed asset's cause."""

    step: Step
    run_id: str
    success: bool
    rows: list[tuple[str, int | None, int | None]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    materialized: list[str] = field(default_factory=list)
    # Per asset: the later partitions its run left stale (a cumulative source re-read for a
    # past window whose last value changed; see defs/automation/late_data.py).
    stale: dict[dg.AssetKey, dg.PartitionKeyRange] = field(default_factory=dict)


FollowUp = Callable[[Outcome], Sequence[Step]]


def kinds() -> dict[str, Kind]:
    """The platform's two kinds of partition (defs/partitions.py)."""
    from metrics_platform.defs.partitions import daily_partitions, hourly_partitions

    return {
        "hourly": Kind("hourly", "hour", hourly_partitions),
        "daily": Kind("daily", "day", daily_partitions),
    }


def disabled_sources(defs: dg.Definitions) -> dict[str, tuple[str, list[str]]]:
    """Source (group) -> why it is disabled and its assets, for every disabled source."""
    graph = defs.resolve_asset_graph()
    found: dict[str, tuple[str, list[str]]] = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        if node.tags.get(DISABLED_TAG) == "disabled":
            reason = node.metadata.get("disabled_reason")
            entry = found.setdefault(node.group_name, (getattr(reason, "value", reason), []))
            entry[1].append(key.to_user_string())
    return found


def resolve_selection(defs: dg.Definitions, text: str) -> list[dg.AssetKey]:
    """The materializable assets a selection names; refused when it names none."""
    graph = defs.resolve_asset_graph()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.BetaWarning)
            selection = dg.AssetSelection.from_string(text)
            keys = selection.resolve(graph)
    except Exception as exc:  # noqa: BLE001 - Dagster's parser raises several types
        raise UsageError(
            f"--select {text!r}: {str(exc).splitlines()[0]}; examples: "
            "'group:crawlers', 'key:raw/*', 'key:metrics/hourly_values'"
        ) from None
    groups = sorted({graph.get(k).group_name for k in graph.get_all_asset_keys()})
    materializable = sorted(k for k in keys if graph.get(k).is_materializable)
    if not keys:
        raise UsageError(
            f"--select {text!r} matches no asset; groups: {', '.join(groups)}; "
            "keys look like 'key:raw/crawler_status' or 'key:metrics/*'"
        )
    if not materializable:
        names = ", ".join(sorted(k.to_user_string() for k in keys))
        raise UsageError(f"--select {text!r} matches only disabled assets ({names})")
    return materializable


def plan(defs: dg.Definitions, select: str, partitions: str) -> list[Step]:
    """The runs that materialize `select` over `partitions`, in the order they must run."""
    requested = parse_partitions(partitions)
    keys = resolve_selection(defs, select)
    graph = defs.resolve_asset_graph()
    known = kinds()
    by_kind: dict[str, list[dg.AssetKey]] = {}
    for key in keys:
        definition = graph.get(key).partitions_def
        kind = next((k for k in known.values() if k.partitions_def == definition), None)
        if kind is None:
            raise UsageError(f"{key.to_user_string()} is not partitioned by hour or by day")
        by_kind.setdefault(kind.name, []).append(key)
    ranges = {}
    for name in by_kind:
        try:
            ranges[name] = key_range(requested, known[name])
        except UsageError:
            if len(by_kind) == 1:
                raise
            ranges = None
            break
    if ranges is None or (len(by_kind) > 1 and requested.form == "keys"):
        hourly = ", ".join(k.to_user_string() for k in by_kind["hourly"])
        daily = ", ".join(k.to_user_string() for k in by_kind["daily"])
        first, last = str(requested.first)[:10], str(requested.last)[:10]
        if not (_DATE.fullmatch(first) and _DATE.fullmatch(last)):
            first, last = "2026-10-23", "2026-10-26"
        raise UsageError(
            f"--select {select!r} mixes hourly assets ({hourly}) and daily assets ({daily}): "
            f"give business days (--partitions {first}..{last}) to run both, "
            "or select one kind"
        )
    steps = []
    for name in ("hourly", "daily"):
        if name not in by_kind:
            continue
        kind = known[name]
        selected = set(by_kind[name])
        # A source of this kind has no parent of the same kind: it is read from outside.
        sources = tuple(
            sorted(
                k
                for k in selected
                if not any(
                    graph.get(p).partitions_def == kind.partitions_def
                    for p in graph.get(k).parent_keys
                )
            )
        )
        derived = tuple(sorted(selected - set(sources)))
        keys_of_kind = ranges[name]
        if sources:
            steps.append(Step(f"{name} sources", sources, kind, keys_of_kind))
        if derived:
            steps.append(Step(f"{name} values", derived, kind, keys_of_kind))
    return steps


# --- running it -------------------------------------------------------------------------------


def root_cause(event: dg.DagsterEvent) -> tuple[str, str]:
    """A step failure's cause in one line (the `dg.Failure` description when there is one,
    else the innermost error), and the full error for `--verbose`."""
    data = event.event_specific_data
    error = data.error
    details = data.error_display_string if error else ""
    if data.user_failure_data and data.user_failure_data.description:
        return data.user_failure_data.description.strip(), details
    while error is not None and error.cause is not None:
        error = error.cause
    if error is None:
        return "failed", details
    message = error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name
    return message, details


def summary_rows(result) -> list[tuple[str, int | None, int | None]]:
    """(asset, rows in, rows out) for every asset the run materialized (a range run records one
    materialization per partition with the range's figures: the first one tells)."""
    rows, seen = [], set()
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key in seen:
            continue
        seen.add(materialization.asset_key)
        metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        rows_in = next((metadata[k] for k in IN_KEYS if k in metadata), None)
        if rows_in is None:
            rows_in = sum(v for k, v in metadata.items() if k.startswith("rows_in/")) or None
        rows_out = next((metadata[k] for k in OUT_KEYS if k in metadata), None)
        rows.append((materialization.asset_key.to_user_string(), rows_in, rows_out))
    return rows


def allowing_fewer_values(step: Step) -> Step:
    """The step with the operator's permission to store fewer values than its window holds."""
    from metrics_platform.lib.postgres_io.kept_values import ALLOW_FEWER_VALUES_TAG

    return replace(step, tags={**step.tags, ALLOW_FEWER_VALUES_TAG: "true"})


def stale_ranges(result) -> dict[dg.AssetKey, dg.PartitionKeyRange]:
    """The later partitions each materialized asset said it left stale (every partition of a
    range run says the same)."""
    from metrics_platform.defs.automation.late_data import stale_window

    stale = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        window = stale_window(materialization.metadata)
        if window is not None and materialization.asset_key not in stale:
            stale[materialization.asset_key] = dg.PartitionKeyRange(*window)
    return stale


def later_hours_follow_up(defs: dg.Definitions) -> FollowUp:
    """Late data, as the automation carries it: when a cumulative source re-read for a past
    window changed its last hour, the later hours it left stale are recomputed next, in one
    run per source, then the hourly values and KPIs from the window's start to the last of
    those hours, then every closed day they fall in."""
    graph = defs.resolve_asset_graph()
    known = kinds()
    hourly, daily = known["hourly"], known["daily"]

    def of_kind(kind: Kind, keys) -> tuple[dg.AssetKey, ...]:
        return tuple(sorted(k for k in keys if graph.get(k).partitions_def == kind.partitions_def))

    def follow(outcome: Outcome) -> list[Step]:
        if outcome.step.kind.name != "hourly" or not outcome.stale:
            return []
        # From the window just read: its own hours are stale above too, and the days below
        # need every changed hour in before they roll up.
        window = hourly.partitions_def.time_window_for_partition_key
        first = window(outcome.step.partitions.start).start
        steps, downstream, last = [], set(), None
        for key, stale in sorted(outcome.stale.items(), key=lambda item: item[0].path):
            steps.append(Step(f"later hours of {key.to_user_string()}", (key,), hourly, stale))
            downstream |= (
                dg.AssetSelection.assets(key).downstream(include_self=False).resolve(graph)
            )
            last = max(filter(None, (last, window(stale.end).end)))
        derived_hours = of_kind(hourly, downstream)
        if derived_hours:
            keys = dg.PartitionKeyRange(
                hourly.partitions_def.get_partition_key_for_timestamp(first.timestamp()),
                hourly.partitions_def.get_partition_key_for_timestamp(
                    (last - timedelta(hours=1)).timestamp()
                ),
            )
            steps.append(
                Step("hourly values of the window and its later hours", derived_hours, hourly, keys)
            )
        days = closed_days(daily, first, last)
        derived_days = of_kind(daily, downstream)
        if days is not None and derived_days:
            steps.append(Step("days of the later hours", derived_days, daily, days))
        return steps

    return follow


def closed_days(daily: Kind, first: datetime, last: datetime) -> dg.PartitionKeyRange | None:
    """The day partitions (closed ones) that the UTC window [first, last) touches."""
    definition = daily.partitions_def
    start = definition.get_partition_key_for_timestamp(first.timestamp())
    existing = definition.get_last_partition_key()
    if existing is None or start > existing:
        return None
    end_key = definition.get_partition_key_for_timestamp((last - timedelta(seconds=1)).timestamp())
    return dg.PartitionKeyRange(start, min(end_key, existing))


def quiet_config(verbose: bool) -> dict:
    # Dagster's console logger prints every failure with its stack trace; the command prints
    # each failure's cause itself, and the traces only when asked.
    level = "WARNING" if verbose else "CRITICAL"
    return {"loggers": {"console": {"config": {"log_level": level}}}}


def run_step(
    defs: dg.Definitions,
    step: Step,
    instance: dg.DagsterInstance,
    *,
    invocation: str,
    verbose: bool = False,
) -> Outcome:
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        result = materialize_in_process(
            assets,
            selection=list(step.keys),
            instance=instance,
            resources=defs.resources,
            tags={
                **step.tags,
                RANGE_START_TAG: step.partitions.start,
                RANGE_END_TAG: step.partitions.end,
                INVOCATION_TAG: invocation,
                # Run monitoring fails the run if this process dies under it.
                **worker_tags(),
            },
            raise_on_error=False,
            run_config=quiet_config(verbose),
        )
    outcome = Outcome(
        step, result.run_id, result.success, rows=summary_rows(result), stale=stale_ranges(result)
    )
    for event in result.get_step_failure_events():
        reason, details = root_cause(event)
        outcome.failures.append(Failure(event.step_key.replace("__", "/"), reason, details))
    outcome.materialized = sorted({k for k, *_ in outcome.rows})
    return outcome


def execute_plan(
    steps: Sequence[Step],
    run: Callable[[Step], Outcome],
    follow_ups: Sequence[FollowUp] = (),
    report: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Run the steps in order; after each one, every follow-up may add steps, which run next."""
    queue = list(steps)
    outcomes = []
    while queue:
        outcome = run(queue.pop(0))
        outcomes.append(outcome)
        report(outcome)
        added = [step for follow_up in follow_ups for step in follow_up(outcome)]
        queue[:0] = added
    return outcomes


def print_outcome(outcome: Outcome, verbose: bool = False) -> None:
    step = outcome.step
    status = "succeeded" if outcome.success else "FAILED"
    print(f"\n{step.name}, {describe(step.partitions, step.kind)}")
    print(f"run {outcome.run_id}: {status}")
    if outcome.rows:
        print(f"{'asset':<36} {'in':>9} {'out':>9}")
        for asset, rows_in, rows_out in outcome.rows:
            print(
                f"{asset:<36} {rows_in if rows_in is not None else '-':>9} "
                f"{rows_out if rows_out is not None else '-':>9}"
            )
    for failure in outcome.failures:
        print(f"failed: {failure.asset}: {failure.reason}")
        if verbose and failure.details:
            print(failure.details)


# --- interruption -----------------------------------------------------------------------------


def run_until_signal(
    work: Callable[[], T],
    instance: dg.DagsterInstance,
    invocation: str,
    on_interrupt: Callable[[], None] | None = None,
) -> T:
    """`work()` (which runs this command's runs), ended cleanly by SIGINT or SIGTERM.

    Dagster's in-process execution swallows both signals until the run ends, however long it
    takes, so the runs execute in a worker thread and this (main) thread keeps the signals:
    on one, it marks every unfinished run of the command canceled in the instance, calls
    `on_interrupt` and exits (status 128 + the signal). A write under way is a transaction of the store's that the exit
    aborts, so the store keeps its previous state (the IO manager's guarantee)."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc

    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        worker = threading.Thread(target=target, name="metrics-platform-runs", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            if received:
                name = signal.Signals(received[0]).name
                ended = end_interrupted_runs(instance, invocation, f"interrupted by {name}")
                print(
                    f"\ninterrupted by {name}: "
                    + (
                        f"run {', '.join(ended)} marked canceled" if ended else "no run was started"
                    ),
                    flush=True,
                )
                sys.stderr.flush()
                if on_interrupt is not None:
                    on_interrupt()
                os._exit(128 + received[0])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def end_interrupted_runs(instance: dg.DagsterInstance, invocation: str, why: str) -> list[str]:
    """Mark this command's runs that had not ended as canceled; returns their ids."""
    ended = []
    runs = instance.get_runs(filters=dg.RunsFilter(tags={INVOCATION_TAG: invocation}))
    for run in runs:
        if not run.is_finished:
            instance.report_run_canceled(run, message=f"metrics-platform: {why}")
            ended.append(run.run_id)
    return ended


def new_invocation() -> str:
    return uuid.uuid4().hex


# Steps to add after a step ran (see `execute_plan`); empty unless a follow-up is registered.
FOLLOW_UPS: list[FollowUp] = []
