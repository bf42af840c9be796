"""Alerts to a Slack-format webhook, received by a real local HTTP server: failed runs and
failed checks, with the partition and a link to the run, and never the webhook's secret URL."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from metrics_platform.defs.automation.alerts import (
    AlertWebhook,
    check_failure_alerts,
    run_failure_alerts,
)


@pytest.fixture
def receiver():
    """A webhook receiver on loopback that records every JSON body posted to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append({"path": self.path, "json": json.loads(body)})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/s3cr3t-token", received
    server.shutdown()


@dg.asset(partitions_def=dg.HourlyPartitionsDefinition(start_date="2026-03-01-00:00"))
def flaky():
    raise RuntimeError("source 'ga4': HTTP 500 from the Data API")


@dg.asset(
    partitions_def=dg.HourlyPartitionsDefinition(start_date="2026-03-01-00:00"),
    check_specs=[dg.AssetCheckSpec("values_non_negative", asset="checked")],
)
def checked():
    yield dg.Output(1)
    yield dg.AssetCheckResult(check_name="values_non_negative", passed=False)


def run_and_context(asset, instance, status):
    result = dg.materialize(
        [asset], instance=instance, partition_key="2026-03-10-05:00", raise_on_error=False
    )
    run = instance.get_run_by_id(result.run_id)
    event_type = (
        dg.DagsterEventType.RUN_FAILURE if status == "failure" else dg.DagsterEventType.RUN_SUCCESS
    )
    event = instance.all_logs(result.run_id, of_type=event_type)[0].dagster_event
    return dg.build_run_status_sensor_context(
        sensor_name="alerts", dagster_event=event, dagster_instance=instance, dagster_run=run
    ), run


def test_a_failed_run_posts_what_failed_where_and_a_link(receiver):
    url, received = receiver
    webhook = AlertWebhook(url=url, ui_url="http://dagster.example:3000")
    with dg.instance_for_test() as instance:
        context, run = run_and_context(flaky, instance, "failure")
        run_failure_alerts(context.for_run_failure(), alert_webhook=webhook)
    assert len(received) == 1
    text = received[0]["json"]["text"]
    assert set(received[0]["json"]) == {"text"}
    assert "failed for 2026-03-10-05:00" in text
    assert f"<http://dagster.example:3000/runs/{run.run_id}|open the run>" in text


def test_failed_checks_post_each_check(receiver):
    url, received = receiver
    webhook = AlertWebhook(url=url)
    with dg.instance_for_test() as instance:
        context, _ = run_and_context(checked, instance, "success")
        check_failure_alerts(context, alert_webhook=webhook)
    text = received[0]["json"]["text"]
    assert "1 check(s) did not pass" in text and "checked `values_non_negative` (ERROR)" in text


def test_without_a_webhook_the_sensors_skip_and_say_why():
    with dg.instance_for_test() as instance:
        context, _ = run_and_context(flaky, instance, "failure")
        skip = run_failure_alerts(context.for_run_failure(), alert_webhook=AlertWebhook())
    assert isinstance(skip, dg.SkipReason)
    assert "METRICS_PLATFORM_ALERT_WEBHOOK_URL is not set" in skip.skip_message


def test_a_webhook_error_never_reveals_the_url():
    webhook = AlertWebhook(url="http://127.0.0.1:9/services/T000/B000/s3cr3t-token")
    with pytest.raises(RuntimeError) as caught:
        webhook.post("hello")
    assert "s3cr3t" not in str(caught.value) and "unreachable" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
