"""Hourly values from every raw source, and their daily rollups."""

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd

from metrics_platform.defs.automation.conditions import (
    FOLLOW_ANY_SOURCE,
    WHEN_THE_DAY_IS_COMPLETE,
)
from metrics_platform.defs.metadata import value_table_schema, window_metadata
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.metrics.rollup import rollup_daily
from metrics_platform.defs.partitions import (
    BUSINESS_TIMEZONE,
    daily_partitions,
    hourly_partitions,
    single_run,
    utc_window,
)
from metrics_platform.lib.errors import MetricsPlatformError

HOURLY_VALUES_KEY = dg.AssetKey(["metrics", "hourly_values"])
COMPLETE = "every_expected_metric_present"
COUNTERS_NON_NEGATIVE = "counters_non_negative"
LATEST_HOUR_LANDED = "latest_hour_landed"
DAILY_VALUES_KEY = dg.AssetKey(["metrics", "daily_values"])
GROUP = "metrics"


def _window_metadata(context: dg.AssetExecutionContext) -> dict[str, dg.MetadataValue]:
    return window_metadata(*utc_window(context))


def combine_sources(frames: dict[str, pd.DataFrame], ids: dict[str, int]) -> pd.DataFrame:
    """Raw long frames by source -> (metric_id, hour, value), refusing ambiguity.

    Every metric must be in the catalog, and no two sources may report the same metric.
    """
    parts = [frame.assign(source=name) for name, frame in frames.items() if len(frame)]
    if not parts:
        return pd.DataFrame(
            {
                "metric_id": pd.Series([], dtype="int64"),
                "hour": pd.Series([], dtype="datetime64[ns, UTC]"),
                "value": pd.Series([], dtype="float64"),
            }
        )
    rows = pd.concat(parts, ignore_index=True)
    unknown = sorted(set(rows["metric"]) - set(ids))
    if unknown:
        raise MetricsPlatformError(
            f"metric {unknown[0]!r} is not in the catalog; its source must register it"
        )
    clash = rows.duplicated(["metric", "hour"], keep=False)
    if clash.any():
        row = rows[clash].iloc[0]
        sources = sorted(rows.loc[clash & (rows["metric"] == row["metric"]), "source"].unique())
        raise MetricsPlatformError(
            f"metric {row['metric']!r} is reported by more than one source: {', '.join(sources)}"
        )
    combined = pd.DataFrame(
        {
            "metric_id": rows["metric"].map(ids).astype("int64"),
            "hour": rows["hour"],
            "value": rows["value"].astype("float64"),
        }
    )
    return combined.sort_values(["hour", "metric_id"], ignore_index=True)


def completeness(
    named: pd.DataFrame, expected: Sequence[str], start, end
) -> tuple[bool, list[str]]:
    """Whether every expected metric has a value for every hour of [start, end)."""
    hours = int((end - start).total_seconds() // 3600)
    counts = named.groupby("metric")["hour"].nunique() if len(named) else pd.Series(dtype=int)
    incomplete = sorted(m for m in expected if counts.get(m, 0) < hours)
    return not incomplete, incomplete


def build_hourly_values(
    raw_keys: Sequence[dg.AssetKey], expected_metrics: Sequence[str] = ()
) -> dg.AssetsDefinition:
    """The hourly values asset over the given raw source assets; `expected_metrics` are the
    metrics every hour must have (the completeness check)."""
    ins = {key.to_python_identifier(): dg.AssetIn(key=key) for key in raw_keys}

    @dg.asset(
        key=HOURLY_VALUES_KEY,
        group_name=GROUP,
        kinds={"postgres", "pandas"},
        ins=ins,
        partitions_def=hourly_partitions,
        backfill_policy=single_run,
        metadata={"partition_expr": "hour", "dagster/column_schema": value_table_schema("hour")},
        automation_condition=FOLLOW_ANY_SOURCE,
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=3), warn_window=timedelta(hours=2)
        ),
        check_specs=[
            dg.AssetCheckSpec(
                COMPLETE,
                asset=HOURLY_VALUES_KEY,
                description="Every expected metric of every enabled source has a "
                "value for every hour written.",
            ),
            dg.AssetCheckSpec(
                COUNTERS_NON_NEGATIVE,
                asset=HOURLY_VALUES_KEY,
                description="No counter (a `sum` metric) is negative.",
            ),
        ],
    )
    def hourly_values(
        context: dg.AssetExecutionContext, metric_store: MetricStore, **raw: pd.DataFrame
    ):
        """Every source's metrics for each UTC hour, keyed by catalog id (`metrics.hourly_values`)."""
        names = set()
        for frame in raw.values():
            names |= set(frame["metric"]) if len(frame) else set()
        ids = metric_store.metric_ids(names)
        values = combine_sources(raw, ids)
        yield dg.Output(
            values,
            metadata={
                **_window_metadata(context),
                **{
                    f"rows_in/{name}": dg.MetadataValue.int(len(frame))
                    for name, frame in raw.items()
                },
                "rows_out": dg.MetadataValue.int(len(values)),
                "metrics": dg.MetadataValue.int(values["metric_id"].nunique()),
            },
        )

        names_by_id = {i: n for n, i in ids.items()}
        named = values.assign(metric=values["metric_id"].map(names_by_id))
        passed, incomplete = completeness(named, expected_metrics, *utc_window(context))
        yield dg.AssetCheckResult(
            check_name=COMPLETE,
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "incomplete": dg.MetadataValue.text(", ".join(incomplete) or "none"),
                "expected": dg.MetadataValue.int(len(expected_metrics)),
            },
        )
        catalog = metric_store.catalog(values["metric_id"].unique().tolist()) if len(values) else {}
        counters = [i for i, entry in catalog.items() if entry.aggregation == "sum"]
        negative = values[values["metric_id"].isin(counters) & (values["value"] < 0)]
        yield dg.AssetCheckResult(
            check_name=COUNTERS_NON_NEGATIVE,
            passed=negative.empty,
            metadata={"negative_rows": dg.MetadataValue.int(len(negative))},
        )

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


def build_daily_values(computed_keys: Sequence[dg.AssetKey]) -> dg.AssetsDefinition:
    """The daily values asset over the hourly values and the sources' own daily assets."""
    ins = {
        "hourly_values": dg.AssetIn(key=HOURLY_VALUES_KEY),
        **{key.to_python_identifier(): dg.AssetIn(key=key) for key in computed_keys},
    }

    @dg.asset(
        key=DAILY_VALUES_KEY,
        group_name=GROUP,
        kinds={"postgres", "pandas"},
        ins=ins,
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        metadata={"partition_expr": "day", "dagster/column_schema": value_table_schema("day")},
        automation_condition=WHEN_THE_DAY_IS_COMPLETE,
    )
    def daily_values(
        context: dg.AssetExecutionContext,
        metric_store: MetricStore,
        hourly_values: pd.DataFrame,
        **computed: pd.DataFrame,
    ) -> pd.DataFrame:
        """Each metric per business day: counters summed, gauges at their end-of-day value,
        percentiles recomputed from the day's raw data."""
        catalog = metric_store.catalog(hourly_values["metric_id"].unique().tolist())
        rolled_up = rollup_daily(
            hourly_values,
            {i: entry.aggregation for i, entry in catalog.items()},
            timezone=BUSINESS_TIMEZONE,
        )
        names = set()
        for frame in computed.values():
            names |= set(frame["metric"]) if len(frame) else set()
        daily = combine_daily(rolled_up, computed, metric_store.metric_ids(names))
        context.add_output_metadata(
            {
                **_window_metadata(context),
                "hours_in": dg.MetadataValue.int(
                    hourly_values["hour"].nunique() if len(hourly_values) else 0
                ),
                "rows_in": dg.MetadataValue.int(len(hourly_values)),
                **{f"rows_in/{n}": dg.MetadataValue.int(len(f)) for n, f in computed.items()},
                "rows_out": dg.MetadataValue.int(len(daily)),
            }
        )
        return daily

    return daily_values
