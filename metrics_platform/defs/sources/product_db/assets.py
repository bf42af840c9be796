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
from metrics_platform.defs.sources.raw import RawTotals, raw_asset
from metrics_platform.lib.chunks import piece_hours, sub_windows
from metrics_platform.lib.postgres_io.pieces import output_in_pieces
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
    now = datetime.now(timezone.utc)
    specs = metric_specs(product_db)
    metric_store.register_metrics(specs)
    # A table without a creation column can only be counted as it is now: the counts it had in
    # the window's other hours were taken then, and are kept as they were.
    snapshots = [t.metric_name for t in product_db.tables if not t.created_at_column]
    totals = RawTotals()
    stale = None

    def piece(piece_start: datetime, piece_end: datetime) -> pd.DataFrame:
        nonlocal stale
        with source_failures(context):
            counts = product_db.count_rows(piece_start, piece_end, now=now)
            frame = normalize_row_counts({table.metric_name: series for table, series in counts})
        kept = metric_store.stored_raw_rows(ROW_COUNTS_KEY, snapshots, piece_start, piece_end)
        if len(kept):
            counted = pd.MultiIndex.from_frame(frame[["hour", "metric"]])
            kept = kept[~pd.MultiIndex.from_frame(kept[["hour", "metric"]]).isin(counted)]
        if len(kept):
            frame = pd.concat([frame, kept], ignore_index=True).sort_values(
                ["hour", "metric"], ignore_index=True
            )
        if piece_end == end:  # the window's last hour is in the last piece
            stale = later_hours_stale(metric_store, ROW_COUNTS_KEY, frame, specs, end)
        return totals.add(frame)

    def metadata() -> dict[str, dg.MetadataValue]:
        snapshot_only = [t.table for t in product_db.tables if not t.created_at_column]
        return {
            **stale_metadata(stale),
            **window_metadata(
                start,
                end,
                tables=len(product_db.tables),
                rows_read=totals.read,
                rows_written=totals.written,
                rows_rejected=0,
            ),
            "snapshot_only_tables": dg.MetadataValue.text(", ".join(snapshot_only) or "none"),
        }

    # A long range: one piece of hours in memory at a time.
    windows = sub_windows(start, end, piece_hours(len(product_db.tables)))
    yield output_in_pieces(windows, piece, metadata)
    yield totals.non_negative(COUNTS_NON_NEGATIVE)
    hours = int((end - start).total_seconds() // 3600)
    expected = {t.metric_name for t in product_db.tables if t.created_at_column}
    incomplete = sorted(name for name in expected if totals.periods.get(name, 0) != hours)
    yield dg.AssetCheckResult(
        check_name=EVERY_TABLE_COUNTED,
        passed=not incomplete,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"incomplete_metrics": dg.MetadataValue.text(", ".join(incomplete) or "none")},
    )
