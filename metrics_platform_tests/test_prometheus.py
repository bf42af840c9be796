"""The Prometheus source: settings validation, the pure normalizer, the HTTP client's error
handling and chunking, exact values from a real Prometheus server, the demo's sample server, and
materialization through to the metric store."""

import base64
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from itertools import pairwise

import dagster as dg
import pandas as pd
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.metrics.assets import build_hourly_values
from metrics_platform.defs.sources import prometheus
from metrics_platform.defs.sources.product_db.assets import ROW_COUNTS_KEY, product_db_row_counts
from metrics_platform.defs.sources.product_db.resource import CountedTable, ProductDatabase
from metrics_platform.defs.sources.prometheus.assets import SERIES_KEY, build_prometheus_series
from metrics_platform.defs.sources.prometheus.normalize import (
    matrix_result,
    naming_query,
    normalize_matrix,
)
from metrics_platform.defs.sources.prometheus.resource import Prometheus, evaluation_chunks
from metrics_platform.demo.prometheus_sample_server import SAMPLE_QUERIES, start_sample_server
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.embedded_postgres import free_port
from metrics_platform.lib.errors import ConfigurationError, SourceError
from metrics_platform.lib.postgres_io import PostgresPandasIOManager
from metrics_platform_tests.conftest import RANGE_TAGS, SOURCE_HOURS, query
from metrics_platform_tests.prometheus_server import (
    COUNTERS,
    HOURS,
    NAN_HOUR,
    QUEUES,
    PrometheusServer,
    increment,
    queue_depth,
    running_prometheus,
)
from metrics_platform_tests.strategies import json_values
from metrics_platform_tests.stubs import RecordingProxy

ONE_HOUR = timedelta(hours=1)
START = datetime(2026, 3, 10, tzinfo=timezone.utc)
END = START + 3 * ONE_HOUR
TS = int(START.timestamp())

REQUESTS = {
    "query": "sum by (job) (increase(http_requests_total[1h]))",
    "metric": "http.requests.{job}",
    "aggregation": "sum",
    "unit": "requests",
    "description": "HTTP requests per hour by job.",
}
QUEUE_DEPTH = {
    "query": "last_over_time(queue_depth[1h])",
    "metric": "queue.depth.{queue}",
    "aggregation": "last",
    "unit": "jobs",
    "description": "Jobs waiting at the end of the hour.",
}
CACHE_HIT_RATIO = {
    "query": "last_over_time(cache_hit_ratio[1h])",
    "metric": "cache.hit_ratio.{cache}",
    "aggregation": "last",
    "description": "Cache hit ratio at the end of the hour.",
}
QUERIES = [REQUESTS, QUEUE_DEPTH, CACHE_HIT_RATIO]


def answer(*series: dict, result_type: str = "matrix") -> dict:
    return {"status": "success", "data": {"resultType": result_type, "result": list(series)}}


def series(labels: dict, *values: str, first: int = TS + 3600) -> dict:
    return {"metric": labels, "values": [[first + 3600 * i, v] for i, v in enumerate(values)]}


def as_dict(frame: pd.DataFrame) -> dict:
    return {(m, h): v for h, m, v in frame.itertuples(index=False)}


def hour(index: int) -> pd.Timestamp:
    return pd.Timestamp(START + index * ONE_HOUR)


# --- settings -------------------------------------------------------------------------------

URL_ENV = {prometheus.URL_ENV: "http://prometheus:9090"}


def test_a_configured_source_is_enabled_with_its_queries():
    source = prometheus.build_source({"queries": QUERIES}, URL_ENV)
    assert source.enabled and source.key == SERIES_KEY
    resource = source.resources["prometheus"]
    assert [q.metric for q in resource.queries] == [q["metric"] for q in QUERIES]
    assert resource.token is None


@pytest.mark.parametrize(
    "section, env, reason",
    [
        ({}, URL_ENV, "no queries listed under `prometheus.queries`"),
        ({"queries": []}, URL_ENV, "no queries listed"),
        ({"queries": QUERIES}, {}, "METRICS_PLATFORM_PROMETHEUS_URL is not set"),
        ({"queries": QUERIES, "url_env": "PROM_URL"}, URL_ENV, "PROM_URL is not set"),
    ],
)
def test_without_queries_or_url_the_source_is_disabled_with_a_reason(section, env, reason):
    source = prometheus.build_source(section, env)
    assert not source.enabled
    assert reason in source.disabled_reason


@pytest.mark.parametrize(
    "template",
    [
        "http.requests.{job!r}",
        "http.requests.{job:>5}",
        "http.{0}",
        "http.{}",
        "http.{job.name}",
        "http.{job[0]}",
        "http requests {job}",
        "http.{job",
        "http.}",
        "http.{jöb}",
        "http.{job:{x}}",
    ],
)
def test_a_bad_metric_template_is_refused_at_load_naming_the_key(template):
    queries = [REQUESTS, {**REQUESTS, "metric": template}]
    with pytest.raises(ConfigurationError, match=r"^prometheus\.queries\[1\]\.metric: "):
        prometheus.build_source({"queries": queries}, URL_ENV)


@pytest.mark.parametrize(
    "entry, key",
    [
        ({**REQUESTS, "aggregation": "max"}, r"prometheus\.queries\[0\]\.aggregation"),
        (
            {k: v for k, v in REQUESTS.items() if k != "metric"},
            r"prometheus\.queries\[0\]\.metric: missing",
        ),
        ({**REQUESTS, "metrc": "x"}, r"prometheus\.queries\[0\]\.metrc: unknown setting"),
        ({**REQUESTS, "query": " "}, r"prometheus\.queries\[0\]\.query: the query is empty"),
        ("up", r"prometheus\.queries\[0\]: must be a mapping"),
    ],
)
def test_a_bad_query_entry_is_refused_at_load_naming_the_key(entry, key):
    with pytest.raises(ConfigurationError, match=key):
        prometheus.build_source({"queries": [entry]}, URL_ENV)


def test_bad_sections_are_refused_at_load():
    with pytest.raises(ConfigurationError, match=r"prometheus\.queries: must be a list"):
        prometheus.build_source({"queries": {"query": "up"}}, URL_ENV)
    with pytest.raises(ConfigurationError, match=r"prometheus\.url_env"):
        prometheus.build_source({"queries": QUERIES, "url_env": "not a name"}, URL_ENV)
    with pytest.raises(ConfigurationError, match=r"prometheus\.query: unknown setting"):
        prometheus.build_source({"query": "up"}, URL_ENV)


# --- the pure normalizer --------------------------------------------------------------------


def test_each_sample_becomes_the_value_of_the_hour_before_its_evaluation_time():
    payload = answer(
        series({"job": "api"}, "60", "120", "1e+03"),
        series({"job": "web"}, "0.5", first=TS + 3 * 3600),
    )
    frame, rejected = normalize_matrix(payload, "http.requests.{job}", START, END)
    assert rejected == 0
    assert list(frame.columns) == ["hour", "metric", "value"]
    assert as_dict(frame) == {
        ("http.requests.api", hour(0)): 60.0,
        ("http.requests.api", hour(1)): 120.0,
        ("http.requests.api", hour(2)): 1000.0,
        ("http.requests.web", hour(2)): 0.5,
    }


def test_nan_samples_are_dropped_and_counted_never_stored():
    payload = answer(series({"cache": "sessions"}, "0.5", "NaN", "0.75"))
    frame, rejected = normalize_matrix(payload, "cache.hit_ratio.{cache}", START, END)
    assert rejected == 1
    assert as_dict(frame) == {
        ("cache.hit_ratio.sessions", hour(0)): 0.5,
        ("cache.hit_ratio.sessions", hour(2)): 0.75,
    }


@pytest.mark.parametrize("infinity", ["+Inf", "-Inf"])
def test_an_infinite_value_fails_the_answer(infinity):
    payload = answer(series({"job": "api"}, "1", infinity))
    cause = rf"source 'prometheus': http.requests.api: value \{infinity} is infinite"
    with pytest.raises(SourceError, match=cause):
        normalize_matrix(payload, "http.requests.{job}", START, END)


def test_no_series_means_no_rows():
    frame, rejected = normalize_matrix(answer(), "http.requests.{job}", START, END)
    assert frame.empty and rejected == 0
    assert list(frame.columns) == ["hour", "metric", "value"]


@pytest.mark.parametrize(
    "error_type, transient",
    [
        ("bad_data", False),
        ("execution", False),
        ("internal", False),
        ("timeout", True),
        ("unavailable", True),
    ],
)
def test_an_error_status_names_prometheus_error(error_type, transient):
    payload = {"status": "error", "errorType": error_type, "error": "something specific"}
    cause = f"Prometheus answered {error_type}: something specific"
    with pytest.raises(SourceError, match=cause) as caught:
        normalize_matrix(payload, "x", START, END)
    assert caught.value.transient is transient


def test_a_series_without_a_label_the_template_needs_fails_naming_query_and_label():
    payload = answer(series({"job": "api"}, "1"), series({"instance": "a"}, "2"))
    with pytest.raises(SourceError) as caught, naming_query("sum by (instance) (up)"):
        normalize_matrix(payload, "http.requests.{job}", START, END)
    assert "query 'sum by (instance) (up)'" in str(caught.value)
    assert "no label 'job'" in str(caught.value)


def test_two_series_with_the_same_metric_name_for_an_hour_fail():
    payload = answer(
        series({"job": "api", "instance": "a"}, "1"), series({"job": "api", "instance": "b"}, "2")
    )
    with pytest.raises(SourceError, match="'http.requests.api' reported twice"):
        normalize_matrix(payload, "http.requests.{job}", START, END)


@pytest.mark.parametrize("result_type", ["vector", "scalar", "string", None])
def test_anything_but_a_matrix_fails(result_type):
    with pytest.raises(SourceError, match="expected a matrix result"):
        normalize_matrix(answer(result_type=result_type), "x", START, END)


@pytest.mark.parametrize(
    "payload, cause",
    [
        (None, "not a JSON object"),
        ("<html>", "not a JSON object"),
        ({}, "status None"),
        ({"status": "success"}, "expected a matrix"),
        ({"status": "success", "data": {"resultType": "matrix"}}, "not a list"),
        (answer({"metric": {"job": 1}, "values": []}), "malformed series"),
        (answer({"metric": {"job": "api"}}), "malformed series"),
        (answer(series({"job": "api"}, 1.0)), "is not a number"),
        (answer(series({"job": "api"}, "many")), "is not a number"),
        (answer({"metric": {"job": "api"}, "values": [[TS + 3600]]}), "malformed sample"),
        (answer(series({"job": "api"}, "1", first=TS)), "not the end of an hour"),
        (answer(series({"job": "api"}, "1", first=TS + 1800)), "not the end of an hour"),
        (answer(series({"job": "api"}, "1", first=TS + 4 * 3600)), "not the end of an hour"),
        (answer({"metric": {"job": "api"}, "values": [["soon", "1"]]}), "not the end of an hour"),
    ],
)
def test_a_malformed_answer_fails_with_a_source_error(payload, cause):
    with pytest.raises(SourceError, match=cause):
        normalize_matrix(payload, "http.requests.{job}", START, END)


samples = st.lists(
    st.tuples(
        st.integers(-2, 5).map(lambda i: TS + 3600 * i) | json_values,
        st.sampled_from(["1", "NaN", "+Inf", "-3.5", "x"]) | json_values,
    ).map(list)
    | json_values,
    max_size=4,
)
near_answers = st.builds(
    lambda labels, values: answer({"metric": labels, "values": values}),
    st.dictionaries(
        st.sampled_from(["job", "instance"]), st.sampled_from(["api", "web", "a b"]) | json_values
    ),
    samples,
)


@settings(max_examples=300, deadline=None)
@given(json_values | near_answers)
def test_any_json_answer_either_normalizes_or_raises_a_source_error(payload):
    try:
        frame, rejected = normalize_matrix(payload, "http.requests.{job}", START, END)
    except SourceError as exc:
        assert exc.source == "prometheus"
    else:
        assert rejected >= 0
        assert frame["hour"].between(hour(0), hour(2)).all()


# --- the HTTP client ------------------------------------------------------------------------


def client(url="http://prometheus.invalid", **kwargs) -> Prometheus:
    return Prometheus(base_url=url, queries=QUERIES, **{"retry_backoff": 0.0, **kwargs})


def replies(*answers):
    """A stub `reply` giving these (status, body) answers in turn, then the default one."""
    pending = list(answers)
    return lambda params: pending.pop(0) if pending else None


EMPTY = {"status": "success", "data": {"resultType": "matrix", "result": []}}


def test_evaluation_chunks_cover_the_window_in_at_most_11000_hours_each():
    start = START - 25_000 * ONE_HOUR
    chunks = evaluation_chunks(start, START)
    assert [(last - first) // ONE_HOUR + 1 for first, last in chunks] == [11_000, 11_000, 3_000]
    assert chunks[0][0] == start + ONE_HOUR and chunks[-1][1] == START
    assert all(a[1] + ONE_HOUR == b[0] for a, b in pairwise(chunks))
    assert evaluation_chunks(START, END) == [(START + ONE_HOUR, END)]


@pytest.mark.parametrize(
    "fault, cause",
    [
        ("refused", "cannot connect to http://127.0.0.1:{port}"),
        ("slow", "no answer from http://127.0.0.1:{port} within 0.2s"),
        ((502, b"<html>Bad Gateway</html>"), "HTTP 502 from the server"),
        (
            (503, {"status": "error", "errorType": "unavailable", "error": "wait"}),
            "Prometheus answered unavailable: wait",
        ),
    ],
)
def test_transient_failures_are_retried_with_backoff_then_fail(prometheus_stub, fault, cause):
    url = prometheus_stub.url
    if fault == "refused":
        url = f"http://127.0.0.1:{free_port()}"
    elif fault == "slow":
        prometheus_stub.delay = 5
    else:
        prometheus_stub.reply = lambda params: fault
    sleeps = []
    cause = cause.replace("{port}", url.rsplit(":", 1)[1])
    with pytest.raises(SourceError, match=f"{re.escape(cause)}.*attempts: 3") as caught:
        client(url, max_retries=2, retry_backoff=1.5, timeout=0.2).query_range(
            "up", START, END, sleep=sleeps.append
        )
    assert caught.value.transient
    assert sleeps == [1.5, 3.0]
    assert len(prometheus_stub.requests) == (0 if fault == "refused" else 3)


def test_a_transient_failure_then_an_answer_succeeds(prometheus_stub):
    prometheus_stub.reply = replies((502, b"bad gateway"), (200, EMPTY))
    assert client(prometheus_stub.url).query_range("up", START, END, sleep=lambda _: None) == (
        answer()
    )
    assert len(prometheus_stub.requests) == 2


@pytest.mark.parametrize(
    "response, cause",
    [
        ((401, b"Unauthorized"), "HTTP 401: 'Unauthorized'"),
        (
            (400, {"status": "error", "errorType": "bad_data", "error": "parse error"}),
            "Prometheus answered bad_data: parse error",
        ),
        ((200, b"<html>not prometheus</html>"), "the answer is not JSON"),
        (
            (200, {"status": "success", "data": {"resultType": "vector", "result": []}}),
            "expected a matrix result, got 'vector'",
        ),
    ],
)
def test_an_answer_that_asking_again_cannot_fix_fails_at_once(prometheus_stub, response, cause):
    prometheus_stub.reply = lambda params: response
    with pytest.raises(SourceError, match=cause) as caught:
        client(prometheus_stub.url).query_range("up", START, END, sleep=pytest.fail)
    assert not caught.value.transient
    assert len(prometheus_stub.requests) == 1


def test_the_token_is_sent_but_never_shown(prometheus_stub):
    """Sent as a bearer token, or from the URL's credentials as Basic authentication; an error
    body that echoes the header is quoted without it."""
    prometheus_stub.reply = lambda params: (403, b"forbidden: Bearer s3cr3t-token")
    netloc = prometheus_stub.url.split("//")[1]
    for url, token in (
        (prometheus_stub.url, "s3cr3t-token"),
        (f"http://user:pw-s3cr3t@{netloc}", None),
    ):
        with pytest.raises(SourceError) as caught:
            client(url=url, token=token, max_retries=0).query_range("up", START, END)
        assert "s3cr3t" not in str(caught.value), str(caught.value)
    assert prometheus_stub.requests[0]["authorization"] == "Bearer s3cr3t-token"
    basic = base64.b64encode(b"user:pw-s3cr3t").decode()
    assert prometheus_stub.requests[1]["authorization"] == f"Basic {basic}"
    assert "s3cr3t" not in repr(client(token="s3cr3t-token"))
    token_env = prometheus.TOKEN_ENV
    source = prometheus.build_source({"queries": QUERIES}, {**URL_ENV, token_env: "s3cr3t"})
    assert source.resources["prometheus"].token == dg.EnvVar(token_env)


# --- a real Prometheus server ---------------------------------------------------------------


@pytest.fixture(scope="session")
def prometheus_server() -> Iterator[PrometheusServer]:
    with running_prometheus() as server:
        yield server


def expected_values(server, hours: range) -> dict:
    """What the backfilled samples imply for each data hour.

    Increase: each hour holds 60 samples, 30 s in from either edge, so Prometheus sees 59
    increments between the first and the last one and extrapolates them to the whole hour
    (30 s < 1.1 scrape intervals): 59 * 3600/3540 = 60 increments per hour, restart or not,
    up to float rounding. Gauges: `last_over_time(x[1h])` at the hour's end is the sample at
    minute 59, exactly.
    """
    values = {}
    for h in hours:
        at = pd.Timestamp(server.hour(h))
        for job in {job for job, _ in COUNTERS}:
            values[(f"http.requests.{job}", at)] = float(
                sum(60 * increment(job, instance, h) for j, instance in COUNTERS if j == job)
            )
        for queue in QUEUES:
            values[(f"queue.depth.{queue}", at)] = float(queue_depth(queue, h, 59))
        if h != NAN_HOUR:
            values[("cache.hit_ratio.sessions", at)] = 0.5
    return values


def test_values_equal_what_the_backfilled_series_imply(prometheus_server):
    server = prometheus_server
    resource = client(server.url)
    # Two hours either side of the data: Prometheus has nothing there, so no rows.
    start, end = server.start - 2 * ONE_HOUR, server.end + 2 * ONE_HOUR
    got, rejected = {}, 0
    for q in QUERIES:
        payload = resource.query_range(q["query"], start, end)
        frame, dropped = normalize_matrix(payload, q["metric"], start, end)
        got |= as_dict(frame)
        rejected += dropped
    expected = expected_values(server, range(HOURS))
    assert got == pytest.approx(expected, rel=1e-12)
    assert rejected == 1  # the NaN at the end of NAN_HOUR


def test_a_window_over_11000_hours_is_read_in_chunks(prometheus_server):
    server = prometheus_server
    # The first chunk of 11,000 hours ends half way through the data.
    start = server.hour(HOURS // 2) - 11_000 * ONE_HOUR
    with RecordingProxy(server.url) as proxy:
        payload = client(proxy.url).query_range(QUEUE_DEPTH["query"], start, server.end)
    assert len(proxy.requests) == 2
    frame, _ = normalize_matrix(payload, QUEUE_DEPTH["metric"], start, server.end)
    expected = {
        k: v
        for k, v in expected_values(server, range(HOURS)).items()
        if k[0].startswith("queue.depth.")
    }
    assert as_dict(frame) == expected


def test_a_query_prometheus_refuses_fails_at_once_with_its_error(prometheus_server):
    with RecordingProxy(prometheus_server.url) as proxy:
        with pytest.raises(SourceError, match=r"Prometheus answered bad_data: .*parse error") as e:
            client(proxy.url).query_range("sum(", START, END, sleep=pytest.fail)
    assert not e.value.transient
    assert len(proxy.requests) == 1


# --- the demo's sample server ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sample_server():
    url, stop = start_sample_server()
    yield url
    stop()


def test_the_sample_server_answers_the_demo_queries_like_prometheus(sample_server):
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - ONE_HOUR
    start = end - 12_000 * ONE_HOUR
    names = set()
    with RecordingProxy(sample_server) as proxy:
        resource = Prometheus(base_url=proxy.url, queries=SAMPLE_QUERIES)
        for q in resource.queries:
            payload = resource.query_range(q.query, start, end)
            frame, rejected = normalize_matrix(payload, q.metric, start, end)
            assert rejected == 0 and len(frame) == 2 * 12_000
            names |= set(frame["metric"])
        assert resource.query_range("up", start, end) == answer()
    assert names == {
        "http.requests.api",
        "http.requests.web",
        "queue.depth.emails",
        "queue.depth.billing",
    }
    assert len(proxy.requests) == 6  # two chunks per query


def test_the_sample_server_refuses_too_many_points_like_prometheus(sample_server):
    params = {"query": "up", "start": 0, "end": 3600 * 11_001, "step": 3600}
    response = requests.get(f"{sample_server}/api/v1/query_range", params=params, timeout=10)
    assert response.status_code == 400
    assert "11,000 points" in response.json()["error"]


# --- materialization ------------------------------------------------------------------------


def materialize(assets, resources, first: datetime, last: datetime):
    tags = dict(zip(RANGE_TAGS, (hour.strftime("%Y-%m-%d-%H:%M") for hour in (first, last))))
    with dg.instance_for_test() as instance:
        return dg.materialize(
            assets, instance=instance, resources=resources, tags=tags, raise_on_error=False
        )


def test_a_range_of_hours_lands_in_the_metric_store(store_url, prometheus_server):
    server = prometheus_server
    resources = {
        "io_manager": PostgresPandasIOManager(url=store_url),
        "metric_store": MetricStore(url=store_url),
        "prometheus": client(server.url),
    }
    assets = [build_prometheus_series(), build_hourly_values([SERIES_KEY])]
    result = materialize(assets, resources, server.start, server.end - ONE_HOUR)
    assert result.success

    rows = query(store_url, "SELECT metric, time, value FROM " + SOURCE_HOURS)
    assert {(m, pd.Timestamp(t)): v for m, t, v in rows} == pytest.approx(
        expected_values(server, range(HOURS)), rel=1e-12
    )
    catalog = query(
        store_url,
        "SELECT name, aggregation, unit, source FROM metrics.metric "
        "WHERE source <> 'platform' ORDER BY name",
    )
    assert catalog == [
        ("cache.hit_ratio.sessions", "last", "", "prometheus"),
        ("http.requests.api", "sum", "requests", "prometheus"),
        ("http.requests.web", "sum", "requests", "prometheus"),
        ("queue.depth.billing", "last", "jobs", "prometheus"),
        ("queue.depth.emails", "last", "jobs", "prometheus"),
    ]
    metadata = result.asset_materializations_for_node("raw__prometheus_series")[0].metadata
    counts = ("rows_read", "rows_written", "rows_rejected", "queries", "requests")
    assert {name: metadata[name].value for name in counts} == {
        "rows_read": 5 * HOURS,
        "rows_written": 5 * HOURS - 1,
        "rows_rejected": 1,
        "queries": 3,
        "requests": 3,
    }
    checks = {
        c.check_name: c.passed
        for c in result.get_asset_check_evaluations()
        if c.asset_key == SERIES_KEY
    }
    assert checks == {"sums_non_negative": True, "every_query_returned_series": True}


def test_a_query_without_series_warns(store_url, prometheus_server):
    resources = {
        "io_manager": PostgresPandasIOManager(url=store_url),
        "metric_store": MetricStore(url=store_url),
        "prometheus": client(prometheus_server.url),
    }
    before = prometheus_server.start - 3 * ONE_HOUR
    result = materialize([build_prometheus_series()], resources, before, before)
    assert result.success
    evaluations = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert not evaluations["every_query_returned_series"].passed
    assert evaluations["every_query_returned_series"].severity == dg.AssetCheckSeverity.WARN
    assert evaluations["sums_non_negative"].passed


def test_a_prometheus_that_is_down_fails_only_its_own_asset(store_url, product_url):
    seed_product_database(product_url, now=START + 4 * ONE_HOUR, days=1, users=20)
    resources = {
        "io_manager": PostgresPandasIOManager(url=store_url),
        "metric_store": MetricStore(url=store_url),
        "product_db": ProductDatabase(
            url=product_url, tables=[CountedTable(table="users", created_at_column="created_at")]
        ),
        "prometheus": client(f"http://127.0.0.1:{free_port()}", max_retries=1),
    }
    assets = [
        build_prometheus_series(dg.RetryPolicy(max_retries=1)),
        product_db_row_counts,
        build_hourly_values([SERIES_KEY, ROW_COUNTS_KEY]),
    ]
    result = materialize(assets, resources, START, START + ONE_HOUR)
    assert not result.success
    failures = result.get_step_failure_events()
    assert [f.step_key for f in failures] == ["raw__prometheus_series"]
    failure = failures[0].event_specific_data.user_failure_data  # after the step's own retry
    assert failure.description.startswith("source 'prometheus': query ")
    assert "cannot connect to http://127.0.0.1" in failure.description
    assert failure.metadata["source"].value == "prometheus"
    assert result.asset_materializations_for_node("raw__product_db_row_counts")
    assert query(store_url, "SELECT count(*) FROM metrics.hourly_values") == [(0,)]


def test_label_values_are_made_safe_for_metric_names():
    frame, _ = normalize_matrix(
        answer(series({"job": "/api/v1 query"}, "1")), "http.requests.{job}", START, END
    )
    assert set(frame["metric"]) == {"http.requests.api_v1_query"}


def test_an_error_without_a_type_says_so_and_keeps_the_servers_words_short():
    # A proxy in front of Prometheus answering 503 with `{"status": "error", "error": ...}`.
    with pytest.raises(SourceError) as e:
        matrix_result({"status": "error", "error": "overloaded"})
    assert (
        str(e.value) == "source 'prometheus': Prometheus answered an error of no type: overloaded"
    )
    with pytest.raises(SourceError) as e:
        matrix_result({"status": "error", "errorType": "execution", "error": "x" * 10_000})
    assert len(str(e.value)) < 400
