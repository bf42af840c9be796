"""The raw Prometheus series asset, and its checks."""

import dagster as dg

from metrics_platform.defs.metadata import window_metadata
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.partitions import utc_window
from metrics_platform.defs.sources.failures import source_failures
from metrics_platform.defs.sources.prometheus import SOURCE
from metrics_platform.defs.sources.prometheus.normalize import (
    combine_frames,
    naming_query,
    normalize_matrix,
)
from metrics_platform.defs.sources.prometheus.resource import (
    Prometheus,
    PrometheusQuery,
    evaluation_chunks,
)
from metrics_platform.defs.sources.raw import RETRY_POLICY, raw_asset
from metrics_platform.lib.store import MetricSpec

SERIES_KEY = dg.AssetKey(["raw", "prometheus_series"])
SUMS_NON_NEGATIVE = "sums_non_negative"
EVERY_QUERY_ANSWERED = "every_query_returned_series"


def metric_specs(query: PrometheusQuery, names) -> list[MetricSpec]:
    return [
        MetricSpec(
            name=name,
            aggregation=query.aggregation,
            source=SOURCE,
            unit=query.unit,
            description=query.description,
        )
        for name in sorted(set(names))
    ]


def build_prometheus_series(retry_policy: dg.RetryPolicy = RETRY_POLICY) -> dg.AssetsDefinition:
    """The asset, with the given step retry policy (the platform's by default)."""

    @raw_asset(
        SERIES_KEY,
        source=SOURCE,
        kinds={"prometheus", "pandas"},
        retry_policy=retry_policy,
        checks=[
            (SUMS_NON_NEGATIVE, "No value of a query aggregated by sum is negative."),
            (EVERY_QUERY_ANSWERED, "Every configured query returned at least one series."),
        ],
    )
    def prometheus_series(
        context: dg.AssetExecutionContext, prometheus: Prometheus, metric_store: MetricStore
    ):
        """Each configured Prometheus query at the end of every UTC hour, one metric per series."""
        start, end = utc_window(context)
        results, rejected = [], 0
        with source_failures(context):
            for query in prometheus.queries:
                with naming_query(query.query):
                    answer = prometheus.query_range(query.query, start, end)
                    frame, dropped = normalize_matrix(answer, query.metric, start, end)
                results.append((query, frame, len(answer["data"]["result"])))
                rejected += dropped
            rows = combine_frames(frame for _, frame, _ in results)
        metric_store.register_metrics(
            spec for query, frame, _ in results for spec in metric_specs(query, frame["metric"])
        )

        requests = len(prometheus.queries) * len(evaluation_chunks(start, end))
        yield dg.Output(
            rows,
            metadata=window_metadata(
                start,
                end,
                queries=len(prometheus.queries),
                requests=requests,
                rows_read=len(rows) + rejected,
                rows_written=len(rows),
                rows_rejected=rejected,
            ),
        )
        sums = {
            name
            for query, frame, _ in results
            if query.aggregation == "sum"
            for name in frame["metric"]
        }
        negative = sorted(set(rows.loc[rows["metric"].isin(sums) & (rows["value"] < 0), "metric"]))
        yield dg.AssetCheckResult(
            check_name=SUMS_NON_NEGATIVE,
            passed=not negative,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"negative_metrics": dg.MetadataValue.text(", ".join(negative) or "none")},
        )
        silent = [query.query for query, _, series in results if not series]
        yield dg.AssetCheckResult(
            check_name=EVERY_QUERY_ANSWERED,
            passed=not silent,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"queries_without_series": dg.MetadataValue.text("\n".join(silent) or "none")},
        )

    return prometheus_series


prometheus_series = build_prometheus_series()
