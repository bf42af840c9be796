"""Google Analytics 4: hourly sessions, users and other metrics of one property, from its Data API,
and the daily values of its `recomputed` metrics (distinct users) from GA4's daily report."""

from collections.abc import Mapping

from metrics_platform.defs.sources.registry import SourceDefinition

SOURCE = "ga4"
CREDENTIALS_FILE_ENV = "METRICS_PLATFORM_GA4_CREDENTIALS_FILE"
ENDPOINT_ENV = "METRICS_PLATFORM_GA4_ENDPOINT"


def build_source(section: Mapping, env: Mapping[str, str]) -> SourceDefinition:
    from metrics_platform.defs.sources.ga4.assets import ga4_daily_report, ga4_report
    from metrics_platform.defs.sources.ga4.resource import RECOMPUTED, GoogleAnalytics

    if not section.get("property_id"):
        aggregations = section.get("aggregations")
        recomputed = isinstance(aggregations, Mapping) and RECOMPUTED in aggregations.values()
        return SourceDefinition(
            SOURCE,
            ga4_report,
            {},
            "no `ga4.property_id` in the settings file",
            daily_assets=[ga4_daily_report] if recomputed else [],
            metrics=list((section.get("metrics") or {}).values()),
        )
    resource = GoogleAnalytics.from_settings(
        section, credentials_file=env.get(CREDENTIALS_FILE_ENV), endpoint=env.get(ENDPOINT_ENV)
    )
    reason = None
    if not (resource.credentials_file or resource.endpoint):
        reason = f"neither {CREDENTIALS_FILE_ENV} nor {ENDPOINT_ENV} is set"
    names = list(resource.metrics.values())
    # With extra dimensions, each value of theirs makes a metric `<name>.<value>`.
    metrics = [f"{name}.*" for name in names] if resource.dimensions else names
    # Only the `recomputed` metrics need GA4's daily report.
    daily_assets = [ga4_daily_report] if resource.recomputed_metrics else []
    return SourceDefinition(
        SOURCE,
        ga4_report,
        {"ga4": resource},
        reason,
        daily_assets=daily_assets,
        metrics=metrics,
        expected=[],  # an hour without traffic has no GA4 row
    )
