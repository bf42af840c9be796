"""What every raw source asset shares: its decorator settings, and what its metadata and checks
count of a window made piece by piece."""

from collections import Counter
from collections.abc import Sequence

import dagster as dg
import pandas as pd

from metrics_platform.defs.automation.conditions import WHEN_THE_DAY_IS_COMPLETE
from metrics_platform.defs.metadata import raw_table_schema
from metrics_platform.defs.partitions import daily_partitions, hourly_partitions, single_run
from metrics_platform.lib.postgres_io.kept_values import SOURCE_METADATA_KEY

# Transient causes (a source down or slow) are retried twice, 10 s then 20 s later; a payload
# the source got wrong fails at once (see `source_failures`).
RETRY_POLICY = dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL)


def raw_asset(
    key: dg.AssetKey,
    *,
    source: str,
    kinds: set[str],
    checks: Sequence[tuple[str, str]] = (),
    partitions_def: dg.PartitionsDefinition = hourly_partitions,
    period: str = "hour",
    retry_policy: dg.RetryPolicy = RETRY_POLICY,
    **kwargs,
):
    """`@dg.asset` for a raw source table `raw.<name>` of (period, metric, value) rows: in its
    source's group, partitioned, backfilled in one run, with its
    checks (name, description) declared beside it. Keyed by (period, metric): the key's index
    serves every slice a run writes or reads, whatever the table's span."""
    return dg.asset(
        key=key,
        group_name=source,
        kinds=kinds,
        partitions_def=partitions_def,
        backfill_policy=single_run,
        retry_policy=retry_policy,
        metadata={
            "partition_expr": period,
            # The period first: every write and read of a raw table is a window of periods
            # (a partition, a range, a piece), which this key's index serves directly.
            "primary_key": [period, "metric"],
            SOURCE_METADATA_KEY: source,
            "dagster/column_schema": raw_table_schema(period),
        },
        check_specs=[
            dg.AssetCheckSpec(name, asset=key, description=description)
            for name, description in checks
        ],
        **kwargs,
    )


def daily_raw_asset(key: dg.AssetKey, *, hourly: dg.AssetKey, **kwargs):
    """`raw_asset` for a source's daily table `raw.<name>` of (day, metric, value) rows, for
    metrics a day cannot be rolled up from its hours (`recomputed`): partitioned by business
    day, computed once the day's hours of `hourly` are in, and again whenever one re-lands."""
    return raw_asset(
        key,
        partitions_def=daily_partitions,
        period="day",
        deps=[hourly],
        automation_condition=WHEN_THE_DAY_IS_COMPLETE,
        **kwargs,
    )


class RawTotals:
    """What a raw asset's metadata and checks say of its window (`rows_read`, `rows_written`,
    the smallest value, the periods of each metric), added up over the pieces the window is
    made of: the same figures whether it was made at once or piece by piece."""

    def __init__(self) -> None:
        self.read = 0
        self.written = 0
        self.minimum: float | None = None
        self.periods: Counter[str] = Counter()

    def add(self, frame: pd.DataFrame, read: int | None = None) -> pd.DataFrame:
        """Count one piece's frame (`read` source rows, by default its rows); returns it."""
        self.read += len(frame) if read is None else read
        self.written += len(frame)
        if len(frame):
            smallest = float(frame["value"].min())
            self.minimum = smallest if self.minimum is None else min(self.minimum, smallest)
            # (period, metric) is unique in a raw frame: a metric's rows are its periods.
            self.periods.update(frame["metric"].value_counts().to_dict())
        return frame

    @property
    def metrics(self) -> int:
        return len(self.periods)

    def non_negative(self, check_name: str) -> dg.AssetCheckResult:
        """The check that no value of the window is negative."""
        minimum = 0.0 if self.minimum is None else self.minimum
        return dg.AssetCheckResult(
            check_name=check_name, passed=minimum >= 0, metadata={"min": minimum}
        )
