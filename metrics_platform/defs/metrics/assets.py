"""Hourly values from every raw source, and their daily rollups."""

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone

import dagster as dg
import numpy as np
import pandas as pd

from metrics_platform.defs.automation.conditions import (
    FOLLOW_ANY_SOURCE,
    WHEN_THE_DAY_IS_COMPLETE,
)
from metrics_platform.defs.metadata import value_table_metadata, window_metadata
from metrics_platform.defs.metric_store import MetricStore, value_frame
from metrics_platform.defs.metrics.rollup import rollup_daily
from metrics_platform.defs.partitions import (
    BUSINESS_TIMEZONE,
    daily_partitions,
    hourly_partitions,
    single_run,
    utc_window,
)
from metrics_platform.lib.chunks import piece_hours, sub_windows
from metrics_platform.lib.errors import MetricsPlatformError
from metrics_platform.lib.metric_rows import window_hours
from metrics_platform.lib.postgres_io.kept_values import allows_fewer_values
from metrics_platform.lib.postgres_io.pieces import (
    StoredWindow,
    as_stored_window,
    output_in_pieces,
)
from metrics_platform.lib.store import MetricSpec

HOURLY_VALUES_KEY = dg.AssetKey(["metrics", "hourly_values"])
COMPLETE = "every_expected_metric_present"
COUNTERS_NON_NEGATIVE = "counters_non_negative"
LATEST_HOUR_LANDED = "latest_hour_landed"
DAILY_VALUES_KEY = dg.AssetKey(["metrics", "daily_values"])
GROUP = "metrics"
DAY_COMPLETE_CHECK = "every_hour_of_the_day_complete"
# The platform's own metrics of completeness, stored beside the values (source `platform`).
PLATFORM_SOURCE = "platform"
HOUR_COMPLETE = "platform.hour_complete"
SOURCES_MISSING = "platform.sources_missing"
DAY_COMPLETE = "platform.day_complete"
COMPLETENESS_SPECS = (
    MetricSpec(
        HOUR_COMPLETE,
        "sum",
        PLATFORM_SOURCE,
        "hours",
        "1 when every enabled source landed values for the hour, else 0 (a day's value: its "
        "complete hours).",
    ),
    MetricSpec(
        SOURCES_MISSING,
        "sum",
        PLATFORM_SOURCE,
        "sources",
        "Enabled sources that landed nothing for the hour (a day's value: source-hours missing).",
    ),
    MetricSpec(
        DAY_COMPLETE,
        "recomputed",
        PLATFORM_SOURCE,
        "days",
        "1 when every hour of the business day is in and complete, else 0.",
    ),
)


def _window_metadata(context: dg.AssetExecutionContext) -> dict[str, dg.MetadataValue]:
    return window_metadata(*utc_window(context))


class _MetricIds:
    """Catalog ids by metric name for one run: each name looked up once, not once per piece."""

    def __init__(self, metric_store: MetricStore):
        self._metric_store = metric_store
        self._known: dict[str, int] = {}

    def of(self, names: Iterable[str]) -> dict[str, int]:
        """The ids of those of `names` the catalog has."""
        names = set(names)
        unknown = names - self._known.keys()
        if unknown:
            self._known.update(self._metric_store.metric_ids(unknown))
        return {name: self._known[name] for name in names if name in self._known}


def _with_ids(rows: pd.DataFrame, ids: dict[str, int]) -> pd.DataFrame:
    """(hour, metric, value) rows -> (metric_id, hour, value), refusing a name not in `ids`."""
    codes, names = pd.factorize(rows["metric"])
    unknown = sorted(name for name in names if name not in ids)
    if unknown:
        raise MetricsPlatformError(
            f"metric {unknown[0]!r} is not in the catalog; its source must register it"
        )
    return pd.DataFrame(
        {
            "metric_id": np.array([ids[name] for name in names], dtype="int64")[codes],
            "hour": rows["hour"].array,
            "value": rows["value"].to_numpy(dtype="float64"),
        }
    )


def combine_sources(frames: dict[str, pd.DataFrame], ids: dict[str, int]) -> pd.DataFrame:
    """Raw long frames by source -> (metric_id, hour, value), refusing ambiguity.

    Every metric must be in the catalog, and no two sources may report the same metric.
    """
    parts = {name: frame for name, frame in frames.items() if len(frame)}
    if not parts:
        return pd.DataFrame(
            {
                "metric_id": pd.Series([], dtype="int64"),
                "hour": pd.Series([], dtype="datetime64[ns, UTC]"),
                "value": pd.Series([], dtype="float64"),
            }
        )
    # Each source's rows become ids on their own: the names are never joined into one column
    # over the whole window, and each distinct name is looked up once.
    combined = pd.concat([_with_ids(frame, ids) for frame in parts.values()], ignore_index=True)
    combined = combined.sort_values(["hour", "metric_id"], ignore_index=True)
    # Sorted, two rows of one (metric, hour) are neighbours: no hash table over the window.
    hour, metric_id = combined["hour"].array.asi8, combined["metric_id"].to_numpy()
    repeated = np.flatnonzero((hour[1:] == hour[:-1]) & (metric_id[1:] == metric_id[:-1]))
    if len(repeated):
        metric = next(name for name, i in ids.items() if i == metric_id[repeated[0]])
        sources = sorted(name for name, frame in parts.items() if (frame["metric"] == metric).any())
        raise MetricsPlatformError(
            f"metric {metric!r} is reported by more than one source: {', '.join(sources)}"
        )
    return combined


def completeness(
    frame: pd.DataFrame,
    expected: Sequence[str],
    start,
    end,
    names: Mapping[int, str] | None = None,
) -> tuple[bool, list[str]]:
    """Whether every expected metric has a value for every hour of [start, end). The rows name
    their metric in a `metric` column, or by catalog id in `metric_id` with `names` naming the
    ids (rows of other ids are not counted)."""
    hours = int((end - start).total_seconds() // 3600)
    counts = metric_hours(frame, names)
    incomplete = sorted(m for m in expected if counts.get(m, 0) < hours)
    return not incomplete, incomplete


def metric_hours(frame: pd.DataFrame, names: Mapping[int, str] | None = None) -> dict[str, int]:
    """The distinct hours each metric has rows for, by name: rows name their metric in a
    `metric` column, or by catalog id in `metric_id` with `names` naming the ids (rows of other
    ids are not counted)."""
    key = "metric" if names is None else "metric_id"
    counts = frame.groupby(key)["hour"].nunique() if len(frame) else pd.Series(dtype=int)
    if names is None:
        return {name: int(n) for name, n in counts.items()}
    return {names[i]: int(n) for i, n in counts.items() if i in names}


def hours_missing_sources(
    frames: Mapping[str, pd.DataFrame], start: datetime, end: datetime
) -> pd.DataFrame:
    """For every hour of [start, end): the sources (by name) that landed nothing for it.

    A source that was read for an hour lands a value for each metric it knows (0 when nothing
    happened), so an hour without any row of a source is an hour the source did not measure,
    whatever its metric names look like. Returns (hour, missing) with `missing` a sorted tuple,
    empty for a complete hour."""
    hours = window_hours(start, end)
    landed = {
        name: set(frame["hour"].unique()) if len(frame) else set() for name, frame in frames.items()
    }
    missing = [tuple(sorted(n for n, seen in landed.items() if hour not in seen)) for hour in hours]
    return pd.DataFrame({"hour": hours, "missing": missing})


def completeness_rows(missing: pd.DataFrame) -> pd.DataFrame:
    """The platform's own hourly metrics of completeness, in the raw rows' shape:
    `platform.hour_complete` (1 or 0) and `platform.sources_missing` (how many enabled sources
    landed nothing for the hour)."""
    counts = missing["missing"].map(len).astype("float64")
    return pd.concat(
        [
            pd.DataFrame(
                {"hour": missing["hour"], "metric": HOUR_COMPLETE, "value": (counts == 0) * 1.0}
            ),
            pd.DataFrame({"hour": missing["hour"], "metric": SOURCES_MISSING, "value": counts}),
        ],
        ignore_index=True,
    )


def describe_gaps(gaps: Sequence[tuple[object, Sequence[str]]], limit: int = 10) -> str:
    """`2026-03-10T05:00Z: events, ga4` lines for the first `limit` incomplete periods."""
    lines = [
        f"{period:%Y-%m-%dT%H:%MZ}: {', '.join(what)}"
        if isinstance(period, (datetime, pd.Timestamp))
        else f"{period}: {', '.join(what)}"
        for period, what in gaps[:limit]
    ]
    if len(gaps) > limit:
        lines.append(f"... and {len(gaps) - limit} more")
    return "\n".join(lines) or "none"


def keep_unread_sources(
    context: dg.AssetExecutionContext,
    metric_store: MetricStore,
    table: str,
    start: datetime | date,
    end: datetime | date,
    read: set[str] | None,
    new: pd.DataFrame,
) -> pd.DataFrame:
    """The stored values of the window whose source this run does not read (a disabled source,
    or one no longer configured), to be written back unchanged: recomputing a window from the
    enabled sources must not delete what the others landed. A run with the operator's
    permission to store fewer values (`--allow-fewer-values`) drops them instead. `read` is
    None when the asset was built without naming its sources (nothing is kept); a metric the
    `new` rows hold is read, whatever its catalog says."""
    if read is None or allows_fewer_values(context.run.tags):
        return value_frame(table)
    kept = metric_store.values_of_unread_sources(table, start, end, read)
    return kept[~kept["metric_id"].isin(new["metric_id"].unique())]


class _HourlyTotals:
    """What the hourly values' metadata and checks say about a window, added up piece by piece."""

    def __init__(self, inputs: Mapping[str, object], expected: Sequence[str]):
        self.rows_in = dict.fromkeys(inputs, 0)
        self.expected = list(expected)
        self.rows_out = self.rows_kept = self.hours = self.negative = 0
        self.metric_ids: set[int] = set()
        self.gaps: list[tuple[object, Sequence[str]]] = []
        self.hours_by_metric: dict[str, int] = dict.fromkeys(self.expected, 0)
        self._counters: dict[int, bool] = {}  # catalog id -> whether it is a counter

    def add(self, frames, values, kept, missing, ids, metric_store: MetricStore) -> None:
        for name in self.rows_in:
            self.rows_in[name] += len(frames[name])
        self.rows_out += len(values)
        self.rows_kept += len(kept)
        self.hours += len(missing)
        self.gaps += [(h, m) for h, m in zip(missing["hour"], missing["missing"]) if m]
        present = values["metric_id"].unique().tolist()
        self.metric_ids.update(present)
        names_by_id = {i: n for n, i in ids.items()}
        for name, hours in metric_hours(values, names_by_id).items():
            if name in self.hours_by_metric:
                self.hours_by_metric[name] += hours
        new = [i for i in present if i not in self._counters]
        if new:
            catalog = metric_store.catalog(new)
            self._counters.update({i: catalog[i].aggregation == "sum" for i in new if i in catalog})
        counters = [i for i in present if self._counters.get(i)]
        self.negative += int((values["metric_id"].isin(counters) & (values["value"] < 0)).sum())

    def metadata(self) -> dict[str, dg.MetadataValue]:
        return {
            **{f"rows_in/{name}": dg.MetadataValue.int(n) for name, n in self.rows_in.items()},
            "rows_out": dg.MetadataValue.int(self.rows_out),
            "rows_kept/unread_sources": dg.MetadataValue.int(self.rows_kept),
            "metrics": dg.MetadataValue.int(len(self.metric_ids)),
            "incomplete_hours": dg.MetadataValue.int(len(self.gaps)),
        }

    def checks(self, sources: Sequence[str]):
        incomplete = sorted(m for m in self.expected if self.hours_by_metric[m] < self.hours)
        yield dg.AssetCheckResult(
            check_name=COMPLETE,
            passed=not self.gaps and not incomplete,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "incomplete_hours": dg.MetadataValue.int(len(self.gaps)),
                "hours": dg.MetadataValue.int(self.hours),
                "sources_missing": dg.MetadataValue.text(describe_gaps(self.gaps)),
                "incomplete": dg.MetadataValue.text(", ".join(incomplete) or "none"),
                "expected": dg.MetadataValue.int(len(self.expected)),
                "sources": dg.MetadataValue.text(", ".join(sources) or "none"),
            },
        )
        yield dg.AssetCheckResult(
            check_name=COUNTERS_NON_NEGATIVE,
            passed=self.negative == 0,
            metadata={"negative_rows": dg.MetadataValue.int(self.negative)},
        )


def build_hourly_values(
    raw_keys: Sequence[dg.AssetKey],
    expected_metrics: Sequence[str] = (),
    source_names: Mapping[dg.AssetKey, str] | None = None,
) -> dg.AssetsDefinition:
    """The hourly values asset over the given raw source assets (each an enabled source, named
    by `source_names`, by default by its key); `expected_metrics` are the metrics every hour
    must have. An hour is complete when every source landed values for it and every expected
    metric is there: the completeness check says which hours are not, and the platform's own
    metrics (`platform.hour_complete`, `platform.sources_missing`) store it for dashboards."""
    # Each source's window is read a piece at a time (`StoredWindow`), and written so.
    ins = {
        key.to_python_identifier(): dg.AssetIn(key=key, dagster_type=StoredWindow)
        for key in raw_keys
    }
    names_by_input = {
        key.to_python_identifier(): (source_names or {}).get(key, key.to_user_string())
        for key in raw_keys
    }
    # With the sources named, the values of every other source are kept as stored.
    read_sources = None if source_names is None else {*source_names.values(), PLATFORM_SOURCE}

    @dg.asset(
        key=HOURLY_VALUES_KEY,
        group_name=GROUP,
        kinds={"postgres", "pandas"},
        ins=ins,
        partitions_def=hourly_partitions,
        backfill_policy=single_run,
        metadata=value_table_metadata("hour"),
        automation_condition=FOLLOW_ANY_SOURCE,
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=3), warn_window=timedelta(hours=2)
        ),
        check_specs=[
            dg.AssetCheckSpec(
                COMPLETE,
                asset=HOURLY_VALUES_KEY,
                description="Every enabled source landed values for every hour written, with "
                "every metric it must report.",
            ),
            dg.AssetCheckSpec(
                COUNTERS_NON_NEGATIVE,
                asset=HOURLY_VALUES_KEY,
                description="No counter (a `sum` metric) is negative.",
            ),
        ],
    )
    def hourly_values(
        context: dg.AssetExecutionContext, metric_store: MetricStore, **raw: StoredWindow
    ):
        """Every source's metrics for each UTC hour, keyed by catalog id (`metrics.hourly_values`),
        with the platform's record of which sources landed each hour."""
        start, end = utc_window(context)
        windows = {name: as_stored_window(w, "hour", start, end) for name, w in raw.items()}
        metric_store.register_metrics(COMPLETENESS_SPECS)
        totals = _HourlyTotals(raw, expected_metrics)
        known_ids = _MetricIds(metric_store)

        def piece(piece_start: datetime, piece_end: datetime) -> pd.DataFrame:
            frames = {name: window.read(piece_start, piece_end) for name, window in windows.items()}
            by_source = {names_by_input[name]: frame for name, frame in frames.items()}
            missing = hours_missing_sources(by_source, piece_start, piece_end)
            frames[PLATFORM_SOURCE] = completeness_rows(missing)
            names = set()
            for frame in frames.values():
                names.update(frame["metric"].unique() if len(frame) else ())
            ids = known_ids.of(names)
            values = combine_sources(frames, ids)
            kept = keep_unread_sources(
                context, metric_store, "hourly_values", piece_start, piece_end, read_sources, values
            )
            values = pd.concat([values, kept], ignore_index=True) if len(kept) else values
            totals.add(frames, values, kept, missing, ids, metric_store)
            return values

        # A long range: one piece of hours in memory at a time.
        pieces = sub_windows(start, end, piece_hours(metric_store.metric_count()))
        yield output_in_pieces(pieces, piece, totals.metadata, _window_metadata(context))
        yield from totals.checks(sorted(by_name for by_name in names_by_input.values()))

    return hourly_values


def build_freshness_check(delay_minutes: int) -> dg.AssetChecksDefinition:
    """A check that the latest closed hour has landed, `delay_minutes` after it closed."""

    @dg.asset_check(
        asset=HOURLY_VALUES_KEY,
        name=LATEST_HOUR_LANDED,
        description=f"The hour that closed more than {delay_minutes} minutes ago has values.",
    )
    def latest_hour_landed(metric_store: MetricStore) -> dg.AssetCheckResult:
        latest = metric_store.latest_hour()
        now = datetime.now(timezone.utc)
        required = (now - timedelta(minutes=delay_minutes)).replace(
            minute=0, second=0, microsecond=0
        ) - timedelta(hours=1)
        return dg.AssetCheckResult(
            passed=latest is not None and latest >= required,
            metadata={
                "latest_hour": dg.MetadataValue.text(latest.isoformat() if latest else "none"),
                "required_hour": dg.MetadataValue.text(required.isoformat()),
            },
        )

    return latest_hour_landed


def combine_daily(
    rolled_up: pd.DataFrame, computed: dict[str, pd.DataFrame], ids: dict[str, int]
) -> pd.DataFrame:
    """Rolled-up daily values plus the days sources computed themselves from raw data."""
    parts = [rolled_up]
    for name, frame in computed.items():
        if not len(frame):
            continue
        unknown = sorted(set(frame["metric"]) - set(ids))
        if unknown:
            raise MetricsPlatformError(f"{name}: metric {unknown[0]!r} is not in the catalog")
        parts.append(
            pd.DataFrame(
                {
                    "metric_id": frame["metric"].map(ids).astype("int64"),
                    "day": frame["day"],
                    "value": frame["value"],
                }
            )
        )
    daily = pd.concat(parts, ignore_index=True)
    clash = daily.duplicated(["metric_id", "day"])
    if clash.any():
        raise MetricsPlatformError(
            f"metric id {daily.loc[clash, 'metric_id'].iloc[0]} has two daily values for one day"
        )
    return daily.sort_values(["metric_id", "day"], ignore_index=True)


def day_completeness(
    hourly: pd.DataFrame, complete_id: int | None, start: datetime, end: datetime, timezone: str
) -> pd.DataFrame:
    """For every business day of [start, end): its hours, how many of them are in and
    complete (`platform.hour_complete` is 1), and whether the whole day is. A day of 23 or 25
    hours (daylight saving changes) needs 23 or 25."""
    hours = window_hours(start, end)
    days = pd.Series(hours.tz_convert(timezone).date, index=hours)
    expected = days.groupby(days).size()
    if complete_id is None or not len(hourly):
        done = pd.Series(0, index=expected.index)
    else:
        flags = hourly[(hourly["metric_id"] == complete_id) & (hourly["value"] == 1)]
        local = flags["hour"].dt.tz_convert(timezone).dt.date
        done = local.groupby(local).size().reindex(expected.index, fill_value=0)
    return pd.DataFrame(
        {
            "day": pd.Series(list(expected.index), dtype=object),
            "hours": expected.to_numpy(),
            "complete_hours": done.to_numpy(),
            "complete": (done.to_numpy() == expected.to_numpy()),
        }
    )


class _DailyTotals:
    """What the daily values' metadata and check say about a window, added up piece by piece."""

    def __init__(self, computed: Mapping[str, object]):
        self.rows_in_by_input = dict.fromkeys(computed, 0)
        self.hours_in = self.rows_in = self.rows_out = self.rows_kept = self.days = 0
        self.gaps: list[tuple[object, Sequence[str]]] = []

    def add(self, hourly, frames, daily, kept, days) -> None:
        self.hours_in += hourly["hour"].nunique() if len(hourly) else 0
        self.rows_in += len(hourly)
        for name in self.rows_in_by_input:
            self.rows_in_by_input[name] += len(frames[name])
        self.rows_out += len(daily)
        self.rows_kept += len(kept)
        self.days += len(days)
        self.gaps += [
            (day, [f"{done} of {hours} hours complete"])
            for day, hours, done, ok in days.itertuples(index=False)
            if not ok
        ]

    def metadata(self) -> dict[str, dg.MetadataValue]:
        return {
            "hours_in": dg.MetadataValue.int(int(self.hours_in)),
            "rows_in": dg.MetadataValue.int(self.rows_in),
            **{
                f"rows_in/{name}": dg.MetadataValue.int(n)
                for name, n in self.rows_in_by_input.items()
            },
            "rows_out": dg.MetadataValue.int(self.rows_out),
            "rows_kept/unread_sources": dg.MetadataValue.int(self.rows_kept),
            "incomplete_days": dg.MetadataValue.int(len(self.gaps)),
        }

    def check(self) -> dg.AssetCheckResult:
        return dg.AssetCheckResult(
            check_name=DAY_COMPLETE_CHECK,
            passed=not self.gaps,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "incomplete_days": dg.MetadataValue.int(len(self.gaps)),
                "days": dg.MetadataValue.int(self.days),
                "days_incomplete": dg.MetadataValue.text(describe_gaps(self.gaps)),
            },
        )


def build_daily_values(
    computed_keys: Sequence[dg.AssetKey], source_names: Sequence[str] | None = None
) -> dg.AssetsDefinition:
    """The daily values asset over the hourly values and the sources' own daily assets;
    `source_names` are the enabled sources (the days of the others are kept as stored)."""
    read_sources = None if source_names is None else {*source_names, PLATFORM_SOURCE}
    # Every input is read a piece of days at a time (`StoredWindow`), and the days written so.
    ins = {
        "hourly_values": dg.AssetIn(key=HOURLY_VALUES_KEY, dagster_type=StoredWindow),
        **{
            key.to_python_identifier(): dg.AssetIn(key=key, dagster_type=StoredWindow)
            for key in computed_keys
        },
    }

    @dg.asset(
        key=DAILY_VALUES_KEY,
        group_name=GROUP,
        kinds={"postgres", "pandas"},
        ins=ins,
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        metadata=value_table_metadata("day"),
        automation_condition=WHEN_THE_DAY_IS_COMPLETE,
        check_specs=[
            dg.AssetCheckSpec(
                DAY_COMPLETE_CHECK,
                asset=DAILY_VALUES_KEY,
                description="Every day was rolled up from all of its hours, each of them "
                "complete (every enabled source landed it).",
            )
        ],
    )
    def daily_values(
        context: dg.AssetExecutionContext,
        metric_store: MetricStore,
        hourly_values: StoredWindow,
        **computed: StoredWindow,
    ):
        """Each metric per business day: counters summed, gauges at their end-of-day value,
        percentiles recomputed from the day's raw data; `platform.day_complete` says whether the
        day was rolled up from all of its hours, each complete."""
        window = context.partition_time_window
        start, end = utc_window(context)
        hourly = as_stored_window(hourly_values, "hour", start, end)
        own_days = {
            name: as_stored_window(w, "day", window.start.date(), window.end.date())
            for name, w in computed.items()
        }
        ids = metric_store.register_metrics(COMPLETENESS_SPECS)
        totals = _DailyTotals(computed)
        aggregations: dict[int, str] = {}
        known_ids = _MetricIds(metric_store)

        def piece(first: datetime, last: datetime) -> pd.DataFrame:
            """The days of [first, last), local midnights of the business time zone."""
            utc_first, utc_last = first.astimezone(timezone.utc), last.astimezone(timezone.utc)
            values = hourly.read(utc_first, utc_last)
            frames = {name: w.read(first.date(), last.date()) for name, w in own_days.items()}
            new = [i for i in values["metric_id"].unique().tolist() if i not in aggregations]
            if new:
                aggregations.update(
                    {i: entry.aggregation for i, entry in metric_store.catalog(new).items()}
                )
            rolled_up = rollup_daily(values, aggregations, timezone=BUSINESS_TIMEZONE)
            days = day_completeness(
                values, ids[HOUR_COMPLETE], utc_first, utc_last, timezone=BUSINESS_TIMEZONE
            )
            own = pd.DataFrame(
                {"day": days["day"], "metric": DAY_COMPLETE, "value": days["complete"] * 1.0}
            )
            names = {DAY_COMPLETE}
            for frame in frames.values():
                names |= set(frame["metric"]) if len(frame) else set()
            daily = combine_daily(rolled_up, {**frames, PLATFORM_SOURCE: own}, known_ids.of(names))
            # A disabled source's own days (not rolled up from its kept hours) stay as stored.
            kept = keep_unread_sources(
                context,
                metric_store,
                "daily_values",
                first.date(),
                last.date(),
                read_sources,
                daily,
            )
            if len(kept):
                daily = pd.concat([daily, kept], ignore_index=True).sort_values(
                    ["metric_id", "day"], ignore_index=True
                )
            totals.add(values, frames, daily, kept, days)
            return daily

        # A long range: one piece of days in memory at a time.
        pieces = sub_windows(window.start, window.end, piece_hours(metric_store.metric_count()))
        yield output_in_pieces(pieces, piece, totals.metadata, _window_metadata(context), days=True)
        yield totals.check()

    return daily_values
