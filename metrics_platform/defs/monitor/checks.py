"""The metric alert checks: one asset check per rule, on the asset that stores its metric.

A rule on a source's metric is checked on `metrics/hourly_values` or `metrics/daily_values`, a
rule on a KPI on `metrics/hourly_kpis` or `metrics/daily_kpis`, whatever its grain says. The
checks of one asset are one multi-asset check (one step, one connection), each with an
automation condition: the `metrics_automation` sensor (target `AssetSelection.all()`, which
includes asset checks) requests them whenever their asset lands or re-lands any partition, in
the run that writes it when both are requested on one tick; jobs that select the asset run
them too. A check evaluates its rule on the metric's latest periods, opens or closes the
episode and posts the message (`episodes.py`); it fails, as a warning, while the rule is
breached, with the reason and the expected range in its metadata.
"""

from collections.abc import Iterable, Sequence

import dagster as dg

from metrics_platform.defs.automation.alerts import AlertWebhook
from metrics_platform.defs.automation.conditions import FOLLOW_ANY_SOURCE
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.metrics.assets import DAILY_VALUES_KEY, HOURLY_VALUES_KEY
from metrics_platform.defs.metrics.kpis import DAILY_KPIS_KEY, HOURLY_KPIS_KEY
from metrics_platform.defs.monitor.episodes import (
    Links,
    evaluate,
    record_business_timezone,
    update_episode,
)
from metrics_platform.defs.partitions import BUSINESS_TIMEZONE
from metrics_platform.lib import store
from metrics_platform.lib.alert_rules import METRIC_ALERT_METADATA, AlertRule

WHEN_VALUES_LAND = FOLLOW_ANY_SOURCE.with_label("values landed")


def check_name(rule: AlertRule) -> str:
    return f"alert_{rule.name}"


def target_asset(rule: AlertRule, kpi_names: Iterable[str]) -> dg.AssetKey:
    if rule.metric in set(kpi_names):
        return HOURLY_KPIS_KEY if rule.grain == "hour" else DAILY_KPIS_KEY
    return HOURLY_VALUES_KEY if rule.grain == "hour" else DAILY_VALUES_KEY


def _result(rule: AlertRule, evaluation, state: str, asset: dg.AssetKey) -> dg.AssetCheckResult:
    def number(value):
        return (
            dg.MetadataValue.float(float(value)) if value is not None else dg.MetadataValue.null()
        )

    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check_name(rule),
        passed=not evaluation.breached,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            METRIC_ALERT_METADATA: dg.MetadataValue.text(rule.name),
            "metric": dg.MetadataValue.text(rule.metric),
            "grain": dg.MetadataValue.text(rule.grain),
            "period": dg.MetadataValue.text(evaluation.period_label()),
            "value": number(evaluation.value),
            "expected_low": number(evaluation.low),
            "expected_high": number(evaluation.high),
            "expected_range": dg.MetadataValue.text(evaluation.expected()),
            "volume": number(evaluation.volume),
            "reason": dg.MetadataValue.text(rule.reason()),
            "episode": dg.MetadataValue.text(state),
        },
    )


def _asset_checks(
    asset: dg.AssetKey, rules: Sequence[AlertRule], grafana_url: str
) -> dg.AssetChecksDefinition:
    by_name = {check_name(rule): rule for rule in rules}
    links = Links(grafana_url)

    @dg.multi_asset_check(
        name=f"metric_alerts_{asset.path[-1]}",
        specs=[
            dg.AssetCheckSpec(
                check_name(rule),
                asset=asset,
                description=rule.description or rule.reason(),
                automation_condition=WHEN_VALUES_LAND,
            )
            for rule in rules
        ],
        can_subset=True,
        description=f"Metric alerts on {asset.to_user_string()}.",
    )
    def metric_alerts(
        context: dg.AssetCheckExecutionContext,
        metric_store: MetricStore,
        alert_webhook: AlertWebhook,
    ):
        post = alert_webhook.post if alert_webhook.enabled else None
        with metric_store.connection() as conn:
            store.migrate(conn)
            record_business_timezone(conn, BUSINESS_TIMEZONE)
            for key in sorted(context.selected_asset_check_keys, key=lambda k: k.name):
                rule = by_name[key.name]
                evaluation = evaluate(conn, rule)
                state = update_episode(
                    conn, evaluation, zone=BUSINESS_TIMEZONE, links=links, post=post
                )
                if state in ("fired", "resolved"):
                    context.log.info(
                        f"metric alert {rule.name}: {state} at {evaluation.period_label()}"
                    )
                yield _result(rule, evaluation, state, asset)

    return metric_alerts


def build_alert_checks(
    rules: Sequence[AlertRule], kpi_names: Iterable[str], grafana_url: str
) -> list[dg.AssetChecksDefinition]:
    """The metric alert checks, one multi-asset check per asset that stores a rule's metric."""
    kpi_names = list(kpi_names)
    by_asset: dict[dg.AssetKey, list[AlertRule]] = {}
    for rule in rules:
        by_asset.setdefault(target_asset(rule, kpi_names), []).append(rule)
    return [_asset_checks(asset, members, grafana_url) for asset, members in by_asset.items()]
