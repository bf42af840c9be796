"""The raw crawler-status asset."""

import dagster as dg

from metrics_platform.defs.automation.late_data import later_hours_stale, stale_metadata
from metrics_platform.defs.metadata import window_metadata
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.partitions import utc_window
from metrics_platform.defs.sources.crawlers import SOURCE
from metrics_platform.defs.sources.crawlers.normalize import METRICS, normalize_status
from metrics_platform.defs.sources.crawlers.resource import CrawlerStatus
from metrics_platform.defs.sources.failures import source_failures
from metrics_platform.defs.sources.raw import raw_asset
from metrics_platform.lib.store import MetricSpec

STATUS_KEY = dg.AssetKey(["raw", "crawler_status"])
EVERY_HOUR_REPORTED = "every_hour_reported"
_DESCRIPTIONS = {
    "spider.total": "{counted} existing at the end of the period.",
    "spider.active": "{counted} working on a stage at the end of the period.",
    "spider.idle": "{counted} with no current stage at the end of the period.",
}


def metric_specs(reader: CrawlerStatus) -> list[MetricSpec]:
    """The three gauges, counting crawlers or their workers (`crawlers.model`). A late status
    change holds until the next one, so it changes every later hour too; a late snapshot
    changes the hour ends within its age (`reader.propagation`)."""
    return [
        MetricSpec(
            name,
            "last",
            SOURCE,
            reader.counted,
            _DESCRIPTIONS[name].format(counted=reader.counted.capitalize()),
            reader.propagation,
        )
        for name in METRICS
    ]


@raw_asset(
    STATUS_KEY,
    source=SOURCE,
    kinds={"postgres", "pandas"},
    checks=[(EVERY_HOUR_REPORTED, "Total, active and idle crawlers for every hour.")],
)
def crawler_status(
    context: dg.AssetExecutionContext, crawler_registry: CrawlerStatus, metric_store: MetricStore
):
    """Crawlers (or their workers) existing, active and idle at the end of every UTC hour, from
    the product database."""
    start, end = utc_window(context)
    with source_failures(context):
        rows = crawler_registry.status_counts(start, end)
        frame = normalize_status(rows)
    specs = metric_specs(crawler_registry)
    metric_store.register_metrics(specs)
    hours = int((end - start).total_seconds() // 3600)
    stale = later_hours_stale(metric_store, STATUS_KEY, frame, specs, end)
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
