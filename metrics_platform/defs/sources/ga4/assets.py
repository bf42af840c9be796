"""The raw Google Analytics 4 report assets, hourly and daily, and their checks."""

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import dagster as dg
import pandas as pd

from metrics_platform.defs.metadata import window_metadata
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.partitions import BUSINESS_TIMEZONE, utc_window
from metrics_platform.defs.sources.failures import source_failures
from metrics_platform.defs.sources.ga4 import SOURCE
from metrics_platform.defs.sources.ga4.normalize import (
    Report,
    ReportedMetric,
    read_daily_report,
    read_report,
)
from metrics_platform.defs.sources.ga4.resource import RECOMPUTED, GoogleAnalytics
from metrics_platform.defs.sources.raw import daily_raw_asset, raw_asset
from metrics_platform.lib.metric_rows import fill_zeros, window_hours
from metrics_platform.lib.store import MetricSpec

GA4_REPORT_KEY = dg.AssetKey(["raw", "ga4_report"])
GA4_DAILY_REPORT_KEY = dg.AssetKey(["raw", "ga4_daily_report"])
VALUES_NON_NEGATIVE = "values_non_negative"
EVERY_METRIC_REPORTED = "every_metric_reported"


def metric_specs(ga4: GoogleAnalytics, reported: Mapping[str, ReportedMetric]) -> list[MetricSpec]:
    # The hourly and the daily asset register a `recomputed` metric alike.
    return [
        MetricSpec(
            name=name,
            aggregation=ga4.aggregations.get(metric.ga_metric, "sum"),
            source=SOURCE,
            unit=metric.unit,
            description=(
                f"Google Analytics 4 `{metric.ga_metric}` of property {ga4.property_id} in the hour"
                + (
                    "; in the day, as GA4's daily report counts it."
                    if ga4.aggregations.get(metric.ga_metric) == RECOMPUTED
                    else "."
                )
            ),
        )
        for name, metric in reported.items()
    ]


def zero_when_quiet(
    ga4: GoogleAnalytics, metric_names: Mapping[str, str], registered: Iterable[str]
) -> list[str]:
    """The metrics of `metric_names` (GA4 name -> platform name) that are 0 in a period GA4
    reports no row for (GA4 leaves periods without traffic out of a report): counts and
    distinct users, not gauges (`last`). With extra dimensions, a metric per dimension value
    is known once registered (`registered`: the names in the catalog)."""
    bases = [
        name for ga_name, name in metric_names.items() if ga4.aggregations.get(ga_name) != "last"
    ]
    if not ga4.dimensions:
        return bases
    return [name for name in registered if any(name.startswith(f"{b}.") for b in bases)]


def _metadata(start: datetime, end: datetime, pages: list, report: Report) -> dict:
    return {
        **window_metadata(
            start,
            end,
            pages=len(pages),
            rows_read=report.rows_read,
            rows_written=len(report.frame),
            rows_rejected=0,
        ),
        "property_time_zone": dg.MetadataValue.text(report.time_zone or "unknown"),
    }


def _non_negative(frame: pd.DataFrame) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=VALUES_NON_NEGATIVE,
        passed=bool((frame["value"] >= 0).all()),
        metadata={"min": float(frame["value"].min()) if len(frame) else 0.0},
    )


@raw_asset(
    GA4_REPORT_KEY,
    source=SOURCE,
    # Dagster's UI has an icon for "google", none for Google Analytics itself.
    kinds={"google", "pandas"},
    checks=[
        (VALUES_NON_NEGATIVE, "No Google Analytics value is negative."),
        (EVERY_METRIC_REPORTED, "Every configured GA4 metric has a value in the window."),
    ],
)
def ga4_report(context: dg.AssetExecutionContext, ga4: GoogleAnalytics, metric_store: MetricStore):
    """Google Analytics 4 metrics of the configured property for every UTC hour."""
    start, end = utc_window(context)
    with source_failures(context):
        pages = ga4.run_report(start, end)
        report = read_report(pages, ga4.metrics, start, end)
    metric_store.register_metrics(metric_specs(ga4, report.metrics))
    quiet = zero_when_quiet(ga4, ga4.metrics, metric_store.source_metrics(SOURCE))
    frame = fill_zeros(report.frame, quiet, window_hours(start, end))
    yield dg.Output(frame, metadata=_metadata(start, end, pages, report))
    yield _non_negative(frame)
    # GA4 leaves hours without traffic out of a report: a metric with no value at all in the
    # window may be a quiet property rather than a fault, hence a warning.
    present = {report.metrics[name].ga_metric for name in report.frame["metric"].unique()}
    missing = sorted(set(ga4.metrics) - present)
    yield dg.AssetCheckResult(
        check_name=EVERY_METRIC_REPORTED,
        passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"missing_metrics": dg.MetadataValue.text(", ".join(missing) or "none")},
    )


@daily_raw_asset(
    GA4_DAILY_REPORT_KEY,
    hourly=GA4_REPORT_KEY,  # read again whenever an hour of its day re-lands (GA4 revises)
    source=SOURCE,
    kinds={"google", "pandas"},
    checks=[(VALUES_NON_NEGATIVE, "No daily Google Analytics value is negative.")],
)
def ga4_daily_report(
    context: dg.AssetExecutionContext, ga4: GoogleAnalytics, metric_store: MetricStore
):
    """Google Analytics 4 metrics of the configured property marked `recomputed` (distinct
    users), for every business day, from GA4's own report by date."""
    start, end = utc_window(context)
    window = context.partition_time_window  # midnights of the business time zone
    first, last = window.start.date(), window.end.date() - timedelta(days=1)
    with source_failures(context):
        pages = ga4.run_daily_report(first, last)
        report = read_daily_report(
            pages, ga4.recomputed_metrics, first, last, business_time_zone=BUSINESS_TIMEZONE
        )
    metric_store.register_metrics(metric_specs(ga4, report.metrics))
    quiet = zero_when_quiet(ga4, ga4.recomputed_metrics, metric_store.source_metrics(SOURCE))
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    frame = fill_zeros(report.frame, quiet, days, period="day")
    yield dg.Output(frame, metadata=_metadata(start, end, pages, report))
    yield _non_negative(frame)
