"""The raw crawler-status asset."""

import dagster as dg

from metrics_platform.defs.automation.late_data import (
    LATER_HOURS,
    later_hours_stale,
    stale_metadata,
)
from metrics_platform.defs.metadata import window_metadata
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.partitions import utc_window
from metrics_platform.defs.sources.crawlers import SOURCE
from metrics_platform.defs.sources.crawlers.normalize import METRICS, normalize_status
from metrics_platform.defs.sources.crawlers.resource import CrawlerRegistry
from metrics_platform.defs.sources.failures import source_failures
from metrics_platform.defs.sources.raw import raw_asset
from metrics_platform.lib.store import MetricSpec

STATUS_KEY = dg.AssetKey(["raw", "crawler_status"])
EVERY_HOUR_REPORTED = "every_hour_reported"
# A status change that arrives late changes every hour from its own until the next change.
SPECS = [
    MetricSpec(
        "spider.total",
        "last",
        SOURCE,
        "crawlers",
        "Crawlers existing at the end of the period.",
        LATER_HOURS,
    ),
    MetricSpec(
        "spider.active",
        "last",
        SOURCE,
        "crawlers",
        "Crawlers working on a stage at the end of the period.",
        LATER_HOURS,
    ),
    MetricSpec(
        "spider.idle",
        "last",
        SOURCE,
        "crawlers",
        "Crawlers with no current stage at the end of the period.",
        LATER_HOURS,
    ),
]


@raw_asset(
    STATUS_KEY,
    source=SOURCE,
    kinds={"postgres", "pandas"},
    checks=[(EVERY_HOUR_REPORTED, "Total, active and idle crawlers for every hour.")],
)
def crawler_status(
    context: dg.AssetExecutionContext, crawler_registry: CrawlerRegistry, metric_store: MetricStore
):
    """Crawlers existing, active and idle at the end of every UTC hour, from the product database."""
    start, end = utc_window(context)
    with source_failures(context):
        rows = crawler_registry.status_counts(start, end)
        frame = normalize_status(rows)
    metric_store.register_metrics(SPECS)
    hours = int((end - start).total_seconds() // 3600)
    stale = later_hours_stale(metric_store, STATUS_KEY, frame, SPECS, end)
    yield dg.Output(
        frame,
        metadata={
            **window_metadata(
                start, end, rows_read=len(rows), rows_written=len(frame), rows_rejected=0
            ),
            **stale_metadata(stale),
        },
    )
    yield dg.AssetCheckResult(
        check_name=EVERY_HOUR_REPORTED,
        passed=len(frame) == hours * len(METRICS),
        metadata={"rows": len(frame), "expected": hours * len(METRICS)},
    )
