"""Strict parsing of what the sources send: numbers only as each API writes them, `-0` stored as
0, and a repeated row refused by every source with a message naming it (never summed).

The value parsers and normalizers are pure: plain pytest and hypothesis, and real response
samples; then one end-to-end case per source through the real client against a loopback
server."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics_platform.defs.sources.events.normalize import normalize_daily, normalize_hourly
from metrics_platform.defs.sources.ga4.normalize import (
    parse_decimal,
    parse_integer,
    read_daily_report,
    read_report,
)
from metrics_platform.defs.sources.ga4.resource import GoogleAnalytics
from metrics_platform.defs.sources.product_db.normalize import normalize_row_counts
from metrics_platform.defs.sources.prometheus.normalize import (
    merge_matrices,
    normalize_matrix,
    parse_sample_value,
)
from metrics_platform.defs.sources.prometheus.resource import Prometheus, PrometheusQuery
from metrics_platform.demo.ga4_sample_server import Reply, SampleGA4Server
from metrics_platform.lib.errors import SourceError

UTC = timezone.utc
START = datetime(2026, 3, 10, tzinfo=UTC)
END = START + timedelta(hours=3)
DAY_END = START + timedelta(hours=12)  # the GA4 pages' Paris hours are in the first half
TS = int(START.timestamp())
LAX_NUMBERS = [
    "1_000",
    " 7 ",
    "7 ",
    "\t7",
    "+7",
    "0x10",
    "1e",
    "",
    ".",
    "-",
    "١٢",  # Arabic-Indic digits, which float() reads
    "nan",
    "inf",
    "infinity",
    "Infinity",
    "1,5",
    "７",  # a full-width digit
]

# --- Prometheus sample values: Go's strconv.FormatFloat ---------------------------------------

GO_FLOATS = ["0", "12", "-0.5", "1e+21", "1e-07", "-1.2345e+300", "3.14", "NaN", "+Inf", "-Inf"]


@pytest.mark.parametrize("text", GO_FLOATS)
def test_prometheus_values_are_read_as_prometheus_writes_them(text):
    value = parse_sample_value(text)
    assert math.isnan(value) if text == "NaN" else value == float(text)


@pytest.mark.parametrize("text", LAX_NUMBERS)
def test_prometheus_values_in_any_other_spelling_are_refused(text):
    with pytest.raises(ValueError):
        parse_sample_value(text)


def go_format(value: float) -> str:
    """A float as Prometheus writes it (Go's 'f' format, 'e' beyond 1e21 or below 1e-6)."""
    if value != 0 and not 1e-6 <= abs(value) < 1e21:
        mantissa, exponent = f"{value:.17e}".split("e")
        mantissa = repr(float(mantissa)).rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent):+03d}"
    return repr(value) if "e" not in repr(value) else f"{value:.20f}".rstrip("0").rstrip(".")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_float_prometheus_writes_is_read_back_and_minus_zero_is_zero(value):
    parsed = parse_sample_value(go_format(value))
    assert parsed == pytest.approx(value, rel=1e-15)
    assert math.copysign(1.0, parsed) == (1.0 if value == 0 else math.copysign(1.0, value))


@given(st.text(max_size=12))
def test_whatever_prometheus_value_is_accepted_is_plain_and_finite_or_special(text):
    try:
        value = parse_sample_value(text)
    except ValueError:
        return
    assert text == text.strip() and "_" not in text and text.isascii()
    assert math.isnan(value) or math.isinf(value) == (text in ("+Inf", "-Inf"))


def test_minus_zero_from_prometheus_is_stored_as_zero():
    frame, _ = normalize_matrix(
        {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [{"metric": {"job": "api"}, "values": [[TS + 3600, "-0"]]}],
            },
        },
        "up.{job}",
        START,
        END,
    )
    (value,) = frame["value"]
    assert value == 0 and math.copysign(1.0, value) == 1.0


@pytest.mark.parametrize("text", ["1_000", " 7 "])
def test_a_lax_prometheus_number_fails_the_answer_naming_series_and_value(text):
    payload = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"job": "api"}, "values": [[TS + 3600, text]]}],
        },
    }
    with pytest.raises(SourceError, match=f"up.api: sample value {text!r} is not a number"):
        normalize_matrix(payload, "up.{job}", START, END)


def matrix(*series) -> dict:
    return {"status": "success", "data": {"resultType": "matrix", "result": list(series)}}


def test_a_series_twice_in_an_answer_is_refused_naming_it():
    series = {"metric": {"job": "api"}, "values": [[TS + 3600, "1"]]}
    later = {"metric": {"job": "api"}, "values": [[TS + 7200, "1"]]}
    for payload in (matrix(series, series), matrix(series, later)):
        with pytest.raises(SourceError, match=r"the series \{'job': 'api'\} is twice"):
            normalize_matrix(payload, "up.{job}", START, END)
        with pytest.raises(SourceError, match=r"the series \{'job': 'api'\} is twice"):
            merge_matrices([payload])


def test_a_sample_twice_in_a_series_is_refused_naming_series_and_hour():
    series = {"metric": {"job": "api"}, "values": [[TS + 3600, "1"], [TS + 3600, "1"]]}
    with pytest.raises(
        SourceError,
        match=r"metric 'up.api' reported twice for hour 2026-03-10T00:00:00\+00:00: two samples "
        r"in series \{'job': 'api'\}",
    ):
        normalize_matrix(matrix(series), "up.{job}", START, END)


# A real answer of Prometheus 2 to /api/v1/query_range (values as it writes them).
PROMETHEUS_SAMPLE = """{"status":"success","data":{"resultType":"matrix","result":[
{"metric":{"job":"api"},"values":[[1773104400,"60"],[1773108000,"-0"],[1773111600,"1e+21"]]},
{"metric":{"job":"web"},"values":[[1773104400,"NaN"],[1773108000,"0.5"],[1773111600,"1e-07"]]}
]}}"""


def test_a_real_prometheus_answer_is_read_exactly():
    frame, rejected = normalize_matrix(json.loads(PROMETHEUS_SAMPLE), "http.{job}", START, END)
    got = {(m, h.hour): v for h, m, v in frame.itertuples(index=False)}
    assert got == {
        ("http.api", 0): 60.0,
        ("http.api", 1): 0.0,
        ("http.api", 2): 1e21,
        ("http.web", 1): 0.5,
        ("http.web", 2): 1e-07,
    }
    assert rejected == 1


# --- GA4 metric values: strings of integers or decimals ---------------------------------------


@pytest.mark.parametrize("text", LAX_NUMBERS + ["1.5", "1e3"])
def test_ga4_integers_in_any_other_spelling_are_refused(text):
    with pytest.raises(ValueError):
        parse_integer(text)


@pytest.mark.parametrize("text", LAX_NUMBERS + ["NaN", "+Inf"])
def test_ga4_decimals_in_any_other_spelling_are_refused(text):
    with pytest.raises(ValueError):
        parse_decimal(text)


@given(st.integers(-(10**15), 10**15))
def test_any_ga4_integer_is_read_back(value):
    assert parse_integer(str(value)) == float(value)


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_any_ga4_decimal_is_read_back_and_minus_zero_is_zero(value):
    parsed = parse_decimal(repr(value))
    assert parsed == value and math.copysign(1.0, parsed) == (
        1.0 if value == 0 else math.copysign(1.0, value)
    )


@pytest.mark.parametrize("text", ["-0", "-0.0"])
def test_minus_zero_from_ga4_is_stored_as_zero(text):
    kind = "TYPE_INTEGER" if text == "-0" else "TYPE_FLOAT"
    report = read_report([ga4_page([("2026031006", text)], kind=kind)], SESSIONS, START, DAY_END)
    (value,) = report.frame["value"]
    assert value == 0 and math.copysign(1.0, value) == 1.0


SESSIONS = {"sessions": "ga.sessions"}


def ga4_page(rows, *, kind="TYPE_INTEGER", dimensions=("dateHour",), row_count=None) -> dict:
    return {
        "dimensionHeaders": [{"name": name} for name in dimensions],
        "metricHeaders": [{"name": "sessions", "type": kind}],
        "rows": [
            {
                "dimensionValues": [{"value": v} for v in dims],
                "metricValues": [{"value": value}],
            }
            for *dims, value in rows
        ],
        "rowCount": len(rows) if row_count is None else row_count,
        "metadata": {"timeZone": "Europe/Paris"},
    }


@pytest.mark.parametrize("text", ["1_000", " 7 ", "+7", "1.5"])
def test_a_lax_ga4_number_fails_the_report_naming_row_and_value(text):
    with pytest.raises(SourceError) as caught:
        read_report([ga4_page([("2026031006", text)])], SESSIONS, START, DAY_END)
    assert f"page 1 row 1: sessions value {text!r} is not a number" in str(caught.value)


def test_a_ga4_row_repeated_in_a_page_is_refused_naming_it_not_summed():
    """The finding: sessions 143 became 286."""
    page = ga4_page([("2026031006", "143"), ("2026031006", "143")])
    with pytest.raises(
        SourceError,
        match=r"page 1 row 2 repeats the row of page 1 row 1, dimension values \['2026031006'\]",
    ):
        read_report([page], SESSIONS, START, DAY_END)


def test_a_ga4_row_repeated_across_pages_or_in_the_daily_report_is_refused():
    first = ga4_page([("2026031006", "143")], row_count=2)
    with pytest.raises(SourceError, match=r"page 2 row 1 repeats the row of page 1 row 1"):
        read_report([first, first], SESSIONS, START, DAY_END)
    daily = ga4_page([("20260310", "5"), ("20260310", "5")], dimensions=("date",))
    daily["metadata"]["timeZone"] = "UTC"
    with pytest.raises(SourceError, match=r"dimension values \['20260310'\]"):
        read_daily_report([daily], SESSIONS, START.date(), START.date(), "UTC")


def test_distinct_ga4_rows_that_share_a_metric_name_are_still_summed():
    page = ga4_page(
        [("2026031006", "smart tv", "2"), ("2026031006", "smart/tv", "4")],
        dimensions=("dateHour", "deviceCategory"),
    )
    report = read_report([page], SESSIONS, START, DAY_END)
    assert report.frame["value"].tolist() == [6.0]


# A GA4 Data API runReport answer, as the API sends it (pretty-printed, zero fields left out).
GA4_SAMPLE = """{
  "dimensionHeaders": [{"name": "dateHour"}, {"name": "deviceCategory"}],
  "metricHeaders": [
    {"name": "sessions", "type": "TYPE_INTEGER"},
    {"name": "averageSessionDuration", "type": "TYPE_SECONDS"}
  ],
  "rows": [
    {"dimensionValues": [{"value": "2026031006"}, {"value": "desktop"}],
     "metricValues": [{"value": "143"}, {"value": "187.40201342281878"}]},
    {"dimensionValues": [{"value": "2026031006"}, {"value": "mobile"}],
     "metricValues": [{"value": "96"}, {"value": "0"}]},
    {"dimensionValues": [{"value": "2026031007"}, {"value": "desktop"}],
     "metricValues": [{"value": "12"}, {"value": "1.5E-4"}]}
  ],
  "rowCount": 3,
  "metadata": {"currencyCode": "USD", "timeZone": "Europe/Paris"},
  "kind": "analyticsData#runReport"
}"""


def test_a_real_ga4_answer_is_read_exactly():
    metrics = {"sessions": "ga.sessions", "averageSessionDuration": "ga.session_duration"}
    report = read_report([json.loads(GA4_SAMPLE)], metrics, START, DAY_END)
    got = {(m, h.hour): v for h, m, v in report.frame.itertuples(index=False)}
    assert got == {
        ("ga.sessions.desktop", 5): 143.0,
        ("ga.sessions.mobile", 5): 96.0,
        ("ga.sessions.desktop", 6): 12.0,
        ("ga.session_duration.desktop", 5): 187.40201342281878,
        ("ga.session_duration.mobile", 5): 0.0,
        ("ga.session_duration.desktop", 6): 1.5e-4,
    }


# --- The sources that read SQL: a repeated row is refused too ---------------------------------


def test_an_events_row_repeated_is_refused_naming_the_metric_and_hour():
    row = (START, "page_view", 3, 1, None)
    with pytest.raises(SourceError, match="'events.page_view.count' reported twice for hour"):
        normalize_hourly([row, row], [])
    with pytest.raises(SourceError, match="events.page_view.duration.p50"):
        normalize_daily([(START.date(), "page_view", 3, 1, [5.0])] * 2, [50])


def test_a_product_db_count_repeated_is_refused_naming_the_metric_and_hour():
    with pytest.raises(SourceError, match="'objects.users.count' reported twice for hour"):
        normalize_row_counts({"objects.users.count": [(START, 3), (START, 3)]})


# --- End to end, through the real clients -----------------------------------------------------


def test_a_ga4_report_with_a_repeated_row_fails_through_the_real_client():
    def repeat(report):
        return {**report, "rows": report["rows"] + report["rows"][:1]}

    with SampleGA4Server() as server:
        server.fallback = Reply(edit=repeat)
        resource = GoogleAnalytics(property_id="1", metrics=SESSIONS, endpoint=server.url)
        pages = resource.run_report(START, DAY_END)
    with pytest.raises(SourceError, match="repeats the row of page 1 row 1"):
        read_report(pages, SESSIONS, START, DAY_END)


def test_a_lax_prometheus_number_fails_through_the_real_client(prometheus_stub):
    from metrics_platform_tests.stubs import PrometheusStub

    prometheus_stub.reply = lambda params: (200, PrometheusStub.matrix(params, lambda at: "1_000"))
    resource = Prometheus(
        base_url=prometheus_stub.url,
        queries=[PrometheusQuery(query="up", metric="up.{job}", aggregation="last")],
    )
    answer = resource.query_range("up", START, END)
    with pytest.raises(SourceError, match="up.api: sample value '1_000' is not a number"):
        normalize_matrix(answer, "up.{job}", START, END)
