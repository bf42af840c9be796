"""Sources that would hang a run or exhaust its memory, as hostile loopback servers: a body sent
one byte at a time (slowloris), headers sent the same way, a GA4 API whose paging never ends
(the same page again and again, a lying `rowCount`), and answers far larger than any report.

Every source call is bounded: it ends, before a generous deadline, with an error that names the
source and the cause, retried only when that can help, and reads no more than its size limit
(the peak of the memory it allocates is measured with tracemalloc)."""

from __future__ import annotations

import json
import time
import tracemalloc
from datetime import datetime, timedelta, timezone

import dagster as dg
import pytest

from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.sources.ga4.assets import ga4_report
from metrics_platform.defs.sources.ga4.resource import GoogleAnalytics
from metrics_platform.defs.sources.prometheus.assets import build_prometheus_series
from metrics_platform.defs.sources.prometheus.resource import Prometheus, PrometheusQuery
from metrics_platform.demo.ga4_sample_server import Reply, SampleGA4Server
from metrics_platform.lib.http import HttpFailure, MiB, request
from metrics_platform.lib.postgres_io import PostgresPandasIOManager
from metrics_platform_tests.stubs import HostileServer, PrometheusStub

UTC = timezone.utc
START = datetime(2026, 3, 10, tzinfo=UTC)
END = START + timedelta(hours=3)
# Generous bounds for "it ended": far above what the bounded calls take, far below "forever".
PATIENCE = 60
QUERY = PrometheusQuery(query="up", metric="up.{job}", aggregation="last")
MATRIX = json.dumps(
    PrometheusStub.matrix({"start": START.timestamp() + 3600, "end": END.timestamp(), "step": 3600})
).encode()


# A page of ten rows that says the report has a billion, whatever the offset asked for.
SAME_PAGE = {
    "dimensionHeaders": [{"name": "dateHour"}],
    "metricHeaders": [{"name": "sessions", "type": "TYPE_INTEGER"}],
    "rows": [
        {"dimensionValues": [{"value": f"20260310{h:02d}"}], "metricValues": [{"value": "143"}]}
        for h in range(10)
    ],
    "rowCount": 10**9,
    "metadata": {"timeZone": "Europe/Paris"},
}


def answering(body, status: int = 200, headers: dict | None = None):
    return lambda request: (status, dict(headers or {}), body)


def megabytes(count: int):
    """A body of `count` MiB, made as it is sent (the server holds one MiB at a time)."""
    chunk = b" " * MiB
    return lambda request: (200, {}, (chunk for _ in range(count)))


def peak_of(call) -> tuple[float, BaseException | None]:
    """The peak of memory allocated while `call` runs, in MiB, and what it raised."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    raised = None
    try:
        call()
    except Exception as exc:
        raised = exc
    finally:
        peak = tracemalloc.get_traced_memory()[1] / MiB
        tracemalloc.stop()
    return peak, raised


# --- The bounded transport ------------------------------------------------------------------


@pytest.mark.parametrize("phase", ["body", "headers"])
def test_a_server_trickling_its_answer_is_cut_off_at_the_deadline(phase):
    with HostileServer(answering(MATRIX)) as server:
        setattr(server, "trickle" if phase == "body" else "trickle_headers", 0.5)
        started = time.monotonic()
        with pytest.raises(HttpFailure) as caught:
            request("GET", f"{server.url}/x", timeout=3, deadline=2, max_bytes=MiB)
        assert time.monotonic() - started < PATIENCE
    assert caught.value.kind == "deadline" and caught.value.transient
    assert "no complete answer within the 2 s deadline" in str(caught.value)


def test_an_answer_over_the_size_limit_is_refused_while_reading_in_bounded_memory():
    with HostileServer(megabytes(250)) as server:
        peak, raised = peak_of(
            lambda: request("GET", server.url, timeout=10, deadline=PATIENCE, max_bytes=64 * MiB)
        )
    assert isinstance(raised, HttpFailure) and raised.kind == "too_large", raised
    assert not raised.transient
    assert "larger than the limit of 67108864 bytes" in str(raised)
    assert peak < 100, f"{peak:.0f} MiB allocated to refuse a 250 MiB answer"


def test_an_announced_length_over_the_limit_is_refused_before_reading():
    with HostileServer(megabytes(250)) as server:
        server.answer = lambda request: (
            200,
            {"Content-Length": str(250 * MiB)},
            (b" " * MiB for _ in range(250)),
        )
        peak, raised = peak_of(
            lambda: request("GET", server.url, timeout=10, deadline=PATIENCE, max_bytes=64 * MiB)
        )
    assert isinstance(raised, HttpFailure) and "it announces 262144000 bytes" in str(raised)
    assert peak < 5


# --- Prometheus -------------------------------------------------------------------------------


def prometheus(url: str, **settings) -> Prometheus:
    return Prometheus(
        base_url=url, queries=[QUERY], **{"retry_backoff": 0.0, "max_retries": 1, **settings}
    )


def test_a_slowloris_prometheus_fails_at_the_deadline_as_transient_and_is_retried():
    with HostileServer(answering(MATRIX)) as server:
        server.trickle = 1.0
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            prometheus(server.url, timeout=3, deadline_seconds=2).query_range("up", START, END)
        assert time.monotonic() - started < PATIENCE
    message = str(caught.value)
    assert message.startswith("source 'prometheus': "), message
    assert "within the 2 s deadline" in message and "(attempts: 2)" in message
    assert caught.value.transient
    assert len(server.requests) == 2


def test_an_oversized_prometheus_answer_fails_at_once_in_bounded_memory():
    with HostileServer(megabytes(250)) as server:
        peak, raised = peak_of(
            lambda: prometheus(server.url).query_range("up", START, END, sleep=pytest.fail)
        )
        requests = len(server.requests)
    message = str(raised)
    assert message.startswith("source 'prometheus': the answer from http://127.0.0.1:"), message
    assert "over prometheus.max_response_bytes" in message and not raised.transient
    assert requests == 1  # not retried: the same answer would come back
    assert peak < 100, f"{peak:.0f} MiB allocated to refuse a 250 MiB answer"


def test_the_size_limit_is_a_setting():
    from metrics_platform.defs.sources import prometheus as source

    built = source.build_source(
        {"queries": [QUERY.model_dump()], "max_response_bytes": 1000, "deadline_seconds": 5},
        {source.URL_ENV: "http://127.0.0.1:9"},
    )
    resource = built.resources["prometheus"]
    assert (resource.max_response_bytes, resource.deadline_seconds) == (1000, 5)
    with PrometheusStub() as stub:
        with pytest.raises(Exception, match="over prometheus.max_response_bytes"):
            prometheus(stub.url, max_response_bytes=100).query_range("up", START, END)


# --- GA4, through the real Google API client --------------------------------------------------


def ga4(url: str, **settings) -> GoogleAnalytics:
    return GoogleAnalytics(
        property_id="123456789",
        metrics={"sessions": "ga.sessions"},
        endpoint=url,
        **{"backoff_seconds": 0.0, "max_retries": 1, "timeout_seconds": 5.0, **settings},
    )


def test_a_ga4_api_answering_the_same_page_with_a_lying_row_count_stops_at_once():
    """The finding: the same page again and again, `rowCount` far beyond it; the client used to
    ask tens of thousands of times a minute, forever."""
    with SampleGA4Server() as server:
        server.fallback = Reply(body=SAME_PAGE)
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            ga4(server.url, page_size=10).run_report(START, END, sleep=pytest.fail)
        assert time.monotonic() - started < PATIENCE
        asked = len(server.requests)
    message = str(caught.value)
    assert message.startswith("source 'ga4': page 2 (offset 10) repeats page 1"), message
    assert not caught.value.transient
    assert asked == 2


def test_a_ga4_api_whose_pages_never_end_is_bounded_by_max_pages():
    """Every page new, `rowCount` always beyond: the report stops at `ga4.max_pages`."""
    with SampleGA4Server() as server:

        def endless(report):
            offset = server.requests[-1]["offset"]
            row = report["rows"][0]
            hour = (datetime(2026, 3, 9) + timedelta(hours=offset)).strftime("%Y%m%d%H")
            rows = [{**row, "dimensionValues": [{"value": hour}]}]
            return {**report, "rows": rows, "rowCount": 10**9}

        server.fallback = Reply(edit=endless)
        with pytest.raises(Exception) as caught:
            ga4(server.url, page_size=1, max_pages=5).run_report(START, END, sleep=pytest.fail)
        asked = len(server.requests)
    assert "needs more than ga4.max_pages (5) pages" in str(caught.value)
    assert not caught.value.transient and asked == 5


def test_a_ga4_row_count_that_changes_between_pages_fails_as_transient():
    with SampleGA4Server() as server:
        counts = iter([96, 97])
        server.fallback = Reply(edit=lambda report: {**report, "rowCount": next(counts, 98)})
        with pytest.raises(Exception, match="says rowCount 97, the first page said 96") as caught:
            ga4(server.url, page_size=25).run_report(START, END, sleep=pytest.fail)
    assert caught.value.transient


def test_a_slowloris_ga4_api_fails_at_the_deadline_as_transient():
    body = json.dumps({"rowCount": 0, "metadata": {"timeZone": "UTC"}}).encode()
    with HostileServer(answering(body)) as server:
        server.trickle = 1.0
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            ga4(f"{server.url}/", deadline_seconds=2).run_report(START, END, sleep=lambda _: None)
        assert time.monotonic() - started < PATIENCE
    message = str(caught.value)
    assert message.startswith("source 'ga4': the GA4 Data API did not answer in time: "), message
    assert "2 s deadline" in message and "(2 tries)" in message and caught.value.transient
    assert len(server.requests) == 2


def test_an_oversized_ga4_answer_fails_at_once_in_bounded_memory():
    with HostileServer(megabytes(250)) as server:
        peak, raised = peak_of(
            lambda: ga4(f"{server.url}/", max_response_bytes=64 * MiB).run_report(
                START, END, sleep=pytest.fail
            )
        )
        requests = len(server.requests)
    assert "over ga4.max_response_bytes" in str(raised) and not raised.transient, raised
    assert requests == 1
    assert peak < 100, f"{peak:.0f} MiB allocated to refuse a 250 MiB answer"


def test_a_slow_token_endpoint_is_bounded_too(tmp_path):
    """The service account's token exchange goes through the same bounded transport."""
    from metrics_platform_tests.test_security import service_account_key

    with HostileServer(answering(b'{"access_token": "t", "expires_in": 3600}')) as server:
        server.trickle = 1.0
        key = tmp_path / "key.json"
        service_account_key(key, f"{server.url}/token")
        with pytest.raises(Exception) as caught:
            ga4(f"{server.url}/", credentials_file=str(key), deadline_seconds=2).run_report(
                START, END, sleep=lambda _: None
            )
    assert "2 s deadline" in str(caught.value) and caught.value.transient


# --- A run ends, and says why ------------------------------------------------------------------


def test_a_run_against_hostile_sources_ends_and_names_source_partition_and_cause(
    store_url, monkeypatch
):
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda policy, attempt: 0)
    with HostileServer(answering(MATRIX)) as slow, SampleGA4Server() as pager:
        slow.trickle = 1.0
        pager.fallback = Reply(body=SAME_PAGE)
        resources = {
            "io_manager": PostgresPandasIOManager(url=store_url),
            "metric_store": MetricStore(url=store_url),
            "prometheus": prometheus(slow.url, deadline_seconds=2, max_retries=0),
            "ga4": ga4(pager.url, page_size=10),
        }
        started = time.monotonic()
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [build_prometheus_series(), ga4_report],
                instance=instance,
                resources=resources,
                partition_key="2026-03-10-05:00",
                raise_on_error=False,
            )
        assert time.monotonic() - started < 4 * PATIENCE
    failures = {
        e.step_key: e.event_specific_data.user_failure_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    }
    prometheus_failure = failures["raw__prometheus_series"].description
    assert prometheus_failure.startswith("source 'prometheus': query 'up': ")
    assert "2 s deadline" in prometheus_failure and "2026-03-10-05:00" in prometheus_failure
    ga4_failure = failures["raw__ga4_report"].description
    assert ga4_failure.startswith("source 'ga4': page 2 (offset 10) repeats page 1")
    assert "2026-03-10-05:00" in ga4_failure
    # The slow source was retried by the asset's policy (twice), the endless pager never.
    retried = [
        e.step_key
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
    ]
    assert sorted(retried) == ["raw__prometheus_series"] * 2
    assert len(pager.requests) == 2
