"""Late data: a change in the past reaches exactly the values it changes.

Every metric declares how a change in the past propagates (`MetricSpec.propagation`, stored in
the catalog): a per-hour value (`own_hour`, e.g. the events of an hour) changes only its own
hour; a cumulative one (`later_hours`, e.g. the rows that existed at each hour's end, or a
gauge read from a history of changes) changes its hour and every later one. A row that arrives
late for hour H therefore leaves every later hour of a cumulative metric stale, and every day
from H's on.

Every path that recomputes a past hour takes care of it, in range runs:

- The late-rows sensor of a source (e.g. `product_db_late_rows`) asks for one run over the late
  hours; for a cumulative source, from the first late hour to the latest hour the source has
  landed (`recompute_requests`).
- A source re-run by hand for a past window (the UI, `metrics-platform materialize`) compares,
  for its cumulative metrics, the new value of the window's last hour with the stored one
  (`later_hours_stale`). If it changed, every later hour the store holds is stale: the
  materialization says so in its metadata (`later_hours_stale_from` / `_to`, partition keys),
  and `later_hours_follow` requests one run of the source over them.
- The values above follow by their automation conditions, for exactly the partitions whose
  sources landed: the hourly values and KPIs of those hours, the daily values and KPIs of the
  days they fall in (in range runs: the automation sensor emits backfills).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd

from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.partitions import hourly_partitions
from metrics_platform.lib.store import MetricSpec

ONE_HOUR = timedelta(hours=1)
LATER_HOURS = "later_hours"
STALE_FROM = "later_hours_stale_from"
STALE_TO = "later_hours_stale_to"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
SOURCE_TAG = "metrics_platform/source"  # as the sources' own jobs carry it
# Materializations read per asset and tick: a range run records one per partition.
RECORDS_PER_TICK = 10_000


def partition_key(hour: datetime) -> str:
    return hourly_partitions.get_partition_key_for_timestamp(hour.timestamp())


def utc_label(hour: datetime) -> str:
    return f"{hour.astimezone(timezone.utc):%Y-%m-%dT%H:%MZ}"


def contiguous_ranges(hours: Sequence[datetime]) -> list[tuple[datetime, datetime]]:
    """Sorted distinct hours as runs of consecutive hours: [(first, last), ...]."""
    ranges: list[tuple[datetime, datetime]] = []
    for hour in sorted(set(hours)):
        if ranges and hour - ranges[-1][1] == ONE_HOUR:
            ranges[-1] = (ranges[-1][0], hour)
        else:
            ranges.append((hour, hour))
    return ranges


def recompute_windows(
    late_hours: Sequence[datetime], propagation: str, latest_landed: datetime | None
) -> list[tuple[datetime, datetime]]:
    """The (first, last) hours to recompute for rows that arrived late for `late_hours`.

    For a cumulative source: one window, from the first late hour to the latest hour it has
    landed (nothing when it has landed none of them yet: its schedule will count them). For a
    per-hour source: each run of consecutive late hours, once."""
    if not late_hours:
        return []
    if propagation != LATER_HOURS:
        return contiguous_ranges(late_hours)
    first = min(late_hours)
    if latest_landed is None or latest_landed < first:
        return []
    return [(first, latest_landed)]


def range_request(
    run_key: str, first: datetime, last: datetime, tags: dict | None = None, **kwargs
) -> dg.RunRequest:
    """One run over the hours first..last (one partition, or a range)."""
    start, end = partition_key(first), partition_key(last)
    if start == end:
        return dg.RunRequest(run_key=run_key, partition_key=start, tags=tags or {}, **kwargs)
    return dg.RunRequest(
        run_key=run_key, tags={**(tags or {}), RANGE_TAGS[0]: start, RANGE_TAGS[1]: end}, **kwargs
    )


def later_hours_stale(
    metric_store: MetricStore,
    key: dg.AssetKey,
    frame: pd.DataFrame,
    specs: Sequence[MetricSpec],
    end: datetime,
) -> tuple[datetime, datetime] | None:
    """The stored later hours a re-run of a window ending at `end` leaves stale, or None.

    Compares, for the cumulative metrics of `specs`, the new values of the window's last hour
    (in `frame`) with the values the store holds for it: a change there changes every later
    hour. Returns (first, last) of the later hours the store holds for the changed metrics."""
    cumulative = [spec.name for spec in specs if spec.propagation == LATER_HOURS]
    if not cumulative or not len(frame):
        return None
    last_hour = pd.Timestamp(end - ONE_HOUR)
    new = frame[(frame["hour"] == last_hour) & frame["metric"].isin(cumulative)]
    new_values = dict(zip(new["metric"], new["value"]))
    stored = metric_store.stored_raw_rows(key, cumulative, end - ONE_HOUR, end)
    changed = [
        metric
        for metric, value in zip(stored["metric"], stored["value"])
        if metric in new_values and new_values[metric] != value
    ]
    if not changed:
        return None
    latest = metric_store.latest_raw_hour(key, changed, after=end)
    return (end, latest) if latest is not None else None


def stale_metadata(stale: tuple[datetime, datetime] | None) -> dict[str, dg.MetadataValue]:
    """What a materialization says of the later hours it left stale (nothing when none)."""
    if stale is None:
        return {}
    first, last = stale
    return {
        STALE_FROM: dg.MetadataValue.text(partition_key(first)),
        STALE_TO: dg.MetadataValue.text(partition_key(last)),
        "later_hours_stale": dg.MetadataValue.text(
            f"{utc_label(first)}..{utc_label(last + ONE_HOUR)}: a cumulative value of the "
            "window's last hour changed, so these stored hours are recomputed next"
        ),
    }


def stale_window(metadata: Mapping[str, dg.MetadataValue]) -> tuple[str, str] | None:
    """The (first, last) hourly partition keys a materialization's `stale_metadata` names, or
    None when it left nothing stale."""
    if STALE_FROM not in metadata:
        return None
    return metadata[STALE_FROM].value, metadata[STALE_TO].value


def build_later_hours_sensor(sources: Sequence[tuple[str, dg.AssetKey]]) -> dg.SensorDefinition:
    """`later_hours_follow`: a range run of a cumulative source over the later hours one of its
    materializations left stale. `sources` are (source name, raw asset key)."""
    keys = {key.to_user_string(): (name, key) for name, key in sources}

    @dg.sensor(
        name="later_hours_follow",
        target=dg.AssetSelection.assets(*(key for _, key in sources)),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Recomputes the later hours of a cumulative source (row counts, crawler "
        "status) that a re-run of a past hour changed.",
    )
    def later_hours_follow(context: dg.SensorEvaluationContext):
        cursor = json.loads(context.cursor) if context.cursor else {}
        requests, seen = [], set()
        for label, (name, key) in keys.items():
            after = cursor.get(label)
            if after is None:  # first look: only what comes from now on
                records = context.instance.fetch_materializations(key, limit=1).records
                cursor[label] = records[0].storage_id if records else 0
                continue
            result = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=after),
                limit=RECORDS_PER_TICK,
                ascending=True,
            )
            for record in result.records:
                cursor[label] = max(cursor[label], record.storage_id)
                window = stale_window(record.asset_materialization.metadata)
                if window is None:
                    continue
                if (label, window) in seen:  # every partition of a range run says the same
                    continue
                seen.add((label, window))
                first, last = (
                    hourly_partitions.time_window_for_partition_key(k).start for k in window
                )
                requests.append(
                    range_request(
                        f"later-hours:{label}:{window[0]}...{window[1]}:{record.storage_id}",
                        first,
                        last,
                        tags={SOURCE_TAG: name},
                        asset_selection=[key],
                    )
                )
        new_cursor = json.dumps(cursor, sort_keys=True)
        if not requests:
            return dg.SensorResult(skip_reason="no stale later hours", cursor=new_cursor)
        return dg.SensorResult(run_requests=requests, cursor=new_cursor)

    return later_hours_follow
