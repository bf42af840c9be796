"""The raw row-count asset of the product database, and its checks."""

from datetime import datetime, timezone

import dagster as dg
import pandas as pd

from metrics_platform.defs.automation.late_data import later_hours_stale, stale_metadata
from metrics_platform.defs.metadata import window_metadata
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.partitions import utc_window
from metrics_platform.defs.sources.failures import source_failures
from metrics_platform.defs.sources.product_db.normalize import (
    SOURCE,
    normalize_row_counts,
)
from metrics_platform.defs.sources.product_db.resource import ProductDatabase
from metrics_platform.defs.sources.raw import raw_asset
from metrics_platform.lib.store import MetricSpec

ROW_COUNTS_KEY = dg.AssetKey(["raw", "product_db_row_counts"])
COUNTS_NON_NEGATIVE = "counts_non_negative"
EVERY_TABLE_COUNTED = "every_table_counted"


def metric_specs(product_db: ProductDatabase) -> list[MetricSpec]:
    return [
        MetricSpec(
            name=table.metric_name,
            aggregation="last",
            source=SOURCE,
            unit="rows",
            description=f"Rows in the product database's {table.table} table at the end of the period.",
            propagation="later_hours",  # a late row counts in its hour and every later one
        )
        for table in product_db.tables
    ]


@raw_asset(
    ROW_COUNTS_KEY,
    source=SOURCE,
    kinds={"postgres", "pandas"},
    checks=[
        (COUNTS_NON_NEGATIVE, "No row count is negative."),
        (EVERY_TABLE_COUNTED, "Every table with a creation column has a count for every hour."),
    ],
)
def product_db_row_counts(
    context: dg.AssetExecutionContext, product_db: ProductDatabase, metric_store: MetricStore
):
    """Rows in each configured table of the product database at the end of every UTC hour."""
    start, end = utc_window(context)
    with source_failures(context):
        counts = product_db.count_rows(start, end, now=datetime.now(timezone.utc))
        frame = normalize_row_counts({table.metric_name: series for table, series in counts})
    metric_store.register_metrics(metric_specs(product_db))
    # A table without a creation column can only be counted as it is now: the counts it had in
    # the window's other hours were taken then, and are kept as they were.
    snapshots = [t.metric_name for t in product_db.tables if not t.created_at_column]
    kept = metric_store.stored_raw_rows(ROW_COUNTS_KEY, snapshots, start, end)
    if len(kept):
        counted = pd.MultiIndex.from_frame(frame[["hour", "metric"]])
        kept = kept[~pd.MultiIndex.from_frame(kept[["hour", "metric"]]).isin(counted)]
    if len(kept):
        frame = pd.concat([frame, kept], ignore_index=True).sort_values(
            ["hour", "metric"], ignore_index=True
        )

    hours = int((end - start).total_seconds() // 3600)
    snapshot_only = [t.table for t in product_db.tables if not t.created_at_column]
    stale = later_hours_stale(metric_store, ROW_COUNTS_KEY, frame, metric_specs(product_db), end)
    yield dg.Output(
        frame,
        metadata={
            **stale_metadata(stale),
            **window_metadata(
                start,
                end,
                tables=len(product_db.tables),
                rows_read=len(frame),
                rows_written=len(frame),
                rows_rejected=0,
            ),
            "snapshot_only_tables": dg.MetadataValue.text(", ".join(snapshot_only) or "none"),
        },
    )
    yield dg.AssetCheckResult(
        check_name=COUNTS_NON_NEGATIVE,
        passed=bool((frame["value"] >= 0).all()),
        metadata={"min": float(frame["value"].min()) if len(frame) else 0.0},
    )
    expected = {t.metric_name for t in product_db.tables if t.created_at_column}
    present = frame.groupby("metric")["hour"].nunique() if len(frame) else pd.Series(dtype=int)
    incomplete = sorted(name for name in expected if present.get(name, 0) != hours)
    yield dg.AssetCheckResult(
        check_name=EVERY_TABLE_COUNTED,
        passed=not incomplete,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"incomplete_metrics": dg.MetadataValue.text(", ".join(incomplete) or "none")},
    )
