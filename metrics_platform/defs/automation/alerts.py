"""Alerts: a short message to a chat webhook when a run fails or a check does not pass.

Messages use Slack's incoming-webhook format (`{"text": ...}` with `<url|label>` links), which
Slack, Mattermost, Rocket.Chat and Microsoft Teams' Slack-compatible connectors accept. The
webhook URL is a secret: it comes from `METRICS_PLATFORM_ALERT_WEBHOOK_URL`, and appears in no
log, metadata or error message. Without it, the sensors skip with that reason. Every message is
redacted before it is sent (`metrics_platform.lib.redaction`): a failure's text that quotes a
secret in use reaches the chat without it.
"""

import dagster as dg
import requests
from pydantic import Field

from metrics_platform.lib import redaction
from metrics_platform.lib.alert_rules import METRIC_ALERT_METADATA

WEBHOOK_ENV = "METRICS_PLATFORM_ALERT_WEBHOOK_URL"
UI_URL_ENV = "METRICS_PLATFORM_UI_URL"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


class AlertWebhook(dg.ConfigurableResource):
    """Where alerts go: a Slack-format incoming webhook, and the UI the links point at."""

    url: str = Field(default="", description=f"Incoming webhook URL ({WEBHOOK_ENV}); empty = off.")
    ui_url: str = Field(
        default="http://127.0.0.1:3000", description=f"Base URL of the Dagster UI ({UI_URL_ENV})."
    )
    timeout_seconds: float = Field(default=10.0, gt=0)

    @property
    def enabled(self) -> bool:
        return bool(self.url.strip())

    def run_link(self, run_id: str) -> str:
        return f"<{self.ui_url.rstrip('/')}/runs/{run_id}|open the run>"

    def post(self, text: str) -> None:
        """Send one message, redacted; a failure raises an error that does not reveal the URL."""
        redaction.register(self.url.strip(), *redaction.webhook_secrets(self.url.strip()))
        text = redaction.redact(text)
        try:
            response = requests.post(self.url, json={"text": text}, timeout=self.timeout_seconds)
        except requests.RequestException as exc:
            raise RuntimeError(f"alert webhook unreachable ({type(exc).__name__})") from None
        if response.status_code >= 300:
            raise RuntimeError(f"alert webhook answered HTTP {response.status_code}")


def partition_of(run: dg.DagsterRun) -> str:
    tags = run.tags
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    if all(tag in tags for tag in RANGE_TAGS):
        return f"{tags[RANGE_TAGS[0]]} … {tags[RANGE_TAGS[1]]}"
    return "no partition"


def failure_message(run: dg.DagsterRun, reason: str, webhook: AlertWebhook) -> str:
    first_line = redaction.redact((reason or "no reason given").strip()).splitlines()[0][:300]
    return (
        f":red_circle: *{run.job_name}* failed for {partition_of(run)}: {first_line} "
        f"({webhook.run_link(run.run_id)})"
    )


def failed_checks_message(
    run: dg.DagsterRun, failures: list[tuple[str, str, str]], webhook: AlertWebhook
) -> str:
    lines = [f"• {asset} `{check}` ({severity})" for asset, check, severity in failures]
    return (
        f":warning: {len(failures)} check(s) did not pass in *{run.job_name}* for "
        f"{partition_of(run)} ({webhook.run_link(run.run_id)}):\n" + "\n".join(lines)
    )


@dg.run_failure_sensor(
    name="run_failure_alerts",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts to the alert webhook when a run fails: what, which partition, a link.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook):
    if not alert_webhook.enabled:
        return dg.SkipReason(f"{WEBHOOK_ENV} is not set")
    reason = context.failure_event.message if context.failure_event else ""
    alert_webhook.post(failure_message(context.dagster_run, reason, alert_webhook))


@dg.run_status_sensor(
    name="check_failure_alerts",
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts to the alert webhook when a run succeeded but some checks did not pass.",
)
def check_failure_alerts(context: dg.RunStatusSensorContext, alert_webhook: AlertWebhook):
    if not alert_webhook.enabled:
        return dg.SkipReason(f"{WEBHOOK_ENV} is not set")
    records = context.instance.all_logs(
        context.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
    )
    failures = []
    for record in records:
        evaluation = record.dagster_event.event_specific_data
        if METRIC_ALERT_METADATA in evaluation.metadata:  # posted once per episode by itself
            continue
        if not evaluation.passed:
            failures.append(
                (
                    evaluation.asset_key.to_user_string(),
                    evaluation.check_name,
                    evaluation.severity.value,
                )
            )
    if not failures:
        return dg.SkipReason("every check passed")
    alert_webhook.post(failed_checks_message(context.dagster_run, failures, alert_webhook))
