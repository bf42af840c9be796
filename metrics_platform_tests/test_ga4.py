"""The Google Analytics 4 source: settings, the hourly and daily report normalizers, the API
client against the loopback sample server, and materialization through to hourly and daily values
in Postgres (daily active users from GA4's daily report, not summed from hours)."""

import dataclasses
import json
from datetime import date, datetime, timedelta, timezone
from itertools import pairwise
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from metrics_platform.definitions import build_definitions
from metrics_platform.defs.automation.schedules import revisit_hours, revisited_hours
from metrics_platform.defs.jobs import DAILY_JOB
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.metrics.assets import (
    DAILY_VALUES_KEY,
    build_daily_values,
    build_hourly_values,
)
from metrics_platform.defs.partitions import BUSINESS_TIMEZONE, hourly_partitions
from metrics_platform.defs.sources import ga4
from metrics_platform.defs.sources.ga4.assets import (
    GA4_DAILY_REPORT_KEY,
    GA4_REPORT_KEY,
    ga4_daily_report,
    ga4_report,
)
from metrics_platform.defs.sources.ga4.normalize import (
    date_hour_to_utc,
    normalize_report,
    read_daily_report,
    read_report,
    same_clock,
)
from metrics_platform.defs.sources.ga4.resource import GoogleAnalytics
from metrics_platform.demo.ga4_sample_server import (
    Reply,
    SampleGA4Server,
    api_error,
    daily_values,
    sample_values,
)
from metrics_platform.lib.errors import ConfigurationError, SourceError
from metrics_platform.lib.postgres_io import PostgresPandasIOManager
from metrics_platform_tests.conftest import RANGE_TAGS, SOURCE_DAYS, SOURCE_HOURS, query

UTC = timezone.utc
PROPERTY = "123456789"
METRICS = {"sessions": "ga.sessions", "newUsers": "ga.new_users", "activeUsers": "ga.active_users"}
SESSIONS = {"sessions": "ga.sessions"}
ACTIVE_USERS = {"activeUsers": "ga.active_users"}
# A property zone that is not the business one (the test process's, from the environment).
OTHER_ZONE = "Asia/Tokyo" if BUSINESS_TIMEZONE != "Asia/Tokyo" else "UTC"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hours(start: str, count: int) -> list[pd.Timestamp]:
    return list(pd.date_range(start, periods=count, freq="h", tz="UTC"))


def page(
    rows,
    *,
    metrics=(("sessions", "TYPE_INTEGER"),),
    dimensions=("dateHour",),
    zone="Europe/Paris",
    row_count=None,
) -> dict:
    """A runReport response as the API sends it; `rows` holds (dimension values, metric values)."""
    return {
        "dimensionHeaders": [{"name": name} for name in dimensions],
        "metricHeaders": [{"name": name, "type": kind} for name, kind in metrics],
        "rows": [
            {
                "dimensionValues": [{"value": v} for v in dims],
                "metricValues": [{"value": v} for v in values],
            }
            for dims, values in rows
        ],
        "rowCount": len(rows) if row_count is None else row_count,
        "metadata": {"currencyCode": "EUR", "timeZone": zone},
        "kind": "analyticsData#runReport",
    }


def values_by_hour(frame: pd.DataFrame, metric: str = "ga.sessions") -> dict:
    rows = frame[frame["metric"] == metric]
    return dict(zip(rows["hour"], rows["value"]))


def sample_frame(hour_list, metrics=METRICS) -> dict:
    """What the sample server holds for these UTC hours, by (platform metric, hour)."""
    return {
        (metrics[m], hour): float(v)
        for hour in hour_list
        for m, v in sample_values(hour).items()
        if m in metrics
    }


# The normalizer ---------------------------------------------------------------------------


def test_the_spring_forward_day_in_paris_has_23_local_hours_on_23_utc_hours():
    local_hours = [h for h in range(24) if h != 2]
    rows = [((f"20250330{h:02d}",), (str(100 + h),)) for h in local_hours]
    frame = normalize_report([page(rows)], SESSIONS, utc(2025, 3, 29), utc(2025, 3, 31))
    got = values_by_hour(frame)
    assert list(got) == hours("2025-03-29 23:00", 23)
    assert got[pd.Timestamp("2025-03-30 00:00", tz="UTC")] == 101  # 01:00 CET
    assert got[pd.Timestamp("2025-03-30 01:00", tz="UTC")] == 103  # 03:00 CEST


def test_the_repeated_autumn_hour_in_paris_lands_on_its_first_utc_hour():
    # GA4 has one dateHour for both passes through 02:00 local: one row, the two hours combined.
    rows = [((f"20251026{h:02d}",), (str(100 + h),)) for h in range(24)]
    frame = normalize_report([page(rows)], SESSIONS, utc(2025, 10, 25), utc(2025, 10, 27))
    got = values_by_hour(frame)
    assert list(got) == hours("2025-10-25 22:00", 3) + hours("2025-10-26 02:00", 21)
    assert got[pd.Timestamp("2025-10-26 00:00", tz="UTC")] == 102  # 02:00 CEST, first pass
    assert pd.Timestamp("2025-10-26 01:00", tz="UTC") not in got  # 02:00 CET, second pass
    assert got[pd.Timestamp("2025-10-26 02:00", tz="UTC")] == 103  # 03:00 CET
    assert sum(got.values()) == sum(100 + h for h in range(24))


def test_a_row_for_the_skipped_spring_hour_is_refused():
    with pytest.raises(
        SourceError, match=r"source 'ga4': dateHour 2025033002 does not exist in Europe/Paris"
    ):
        normalize_report(
            [page([(("2025033002",), ("5",))])], SESSIONS, utc(2025, 3, 29), utc(2025, 3, 31)
        )


@given(
    hour=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31)),
    zone=st.sampled_from(
        ["Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Tokyo", "UTC"]
    ),
)
def test_every_local_date_hour_maps_back_to_the_utc_hour_it_starts_in(hour, zone):
    hour = hour.replace(minute=0, second=0, microsecond=0, tzinfo=UTC)
    local = hour.astimezone(ZoneInfo(zone))
    got = date_hour_to_utc(local.strftime("%Y%m%d%H"), ZoneInfo(zone))
    # The second pass through a repeated hour has the first's dateHour, and is reported with it.
    assert got == (hour - timedelta(hours=1) if local.fold else hour)


def test_a_half_hour_zone_stores_each_local_hour_on_the_utc_hour_it_starts_in():
    assert date_hour_to_utc("2025061012", ZoneInfo("Asia/Kolkata")) == utc(2025, 6, 10, 6)


@given(values=st.lists(st.integers(0, 10_000), min_size=1, max_size=60), data=st.data())
def test_paging_does_not_change_the_rows(values, data):
    first = datetime(2025, 6, 10)
    rows = [
        (((first + timedelta(hours=i)).strftime("%Y%m%d%H"),), (str(v),))
        for i, v in enumerate(values)
    ]
    cuts = sorted(
        data.draw(st.sets(st.integers(1, len(rows) - 1), max_size=5)) if len(rows) > 1 else []
    )
    bounds = [0, *cuts, len(rows)]
    pages = [page(rows[a:b], row_count=len(rows)) for a, b in pairwise(bounds)]
    window = (utc(2025, 6, 1), utc(2025, 7, 1))
    whole = normalize_report([page(rows)], SESSIONS, *window)
    pd.testing.assert_frame_equal(normalize_report(pages, SESSIONS, *window), whole)
    assert whole["value"].tolist() == [float(v) for v in values]


def test_only_the_hours_of_the_window_are_kept():
    rows = [((f"20250610{h:02d}",), ("1",)) for h in range(24)]  # CEST: 22:00Z the day before on
    frame = normalize_report([page(rows)], SESSIONS, utc(2025, 6, 10, 3), utc(2025, 6, 10, 5))
    assert list(frame["hour"]) == hours("2025-06-10 03:00", 2)


@pytest.mark.parametrize(
    "kind, text, value, unit",
    [
        ("TYPE_INTEGER", "42", 42.0, ""),
        ("TYPE_FLOAT", "0.25", 0.25, ""),
        ("TYPE_STANDARD", "7.5", 7.5, ""),
        ("TYPE_CURRENCY", "19.99", 19.99, "EUR"),
        ("TYPE_SECONDS", "90.5", 90.5, "s"),
        ("TYPE_MILLISECONDS", "1500", 1.5, "s"),
        ("TYPE_MINUTES", "2.5", 150.0, "s"),
        ("TYPE_HOURS", "0.5", 1800.0, "s"),
        ("TYPE_KILOMETERS", "3.25", 3.25, "km"),
    ],
)
def test_every_metric_type_is_read_in_its_unit(kind, text, value, unit):
    report = read_report(
        [page([(("2025061012",), (text,))], metrics=[("m", kind)])],
        {"m": "ga.m"},
        utc(2025, 6, 10),
        utc(2025, 6, 11),
    )
    assert report.frame["value"].tolist() == [value]
    assert report.metrics["ga.m"].unit == unit
    assert report.metrics["ga.m"].ga_metric == "m"


def test_extra_dimensions_are_appended_to_the_metric_name_and_colliding_rows_summed():
    rows = [
        ((device, "2025061012"), (str(n),))
        for device, n in [
            ("desktop", 5),
            ("mobile", 3),
            ("(not set)", 1),
            ("smart tv", 2),
            ("smart/tv", 4),
        ]
    ]
    report = read_report(
        [page(rows, dimensions=("deviceCategory", "dateHour"))],
        SESSIONS,
        utc(2025, 6, 10),
        utc(2025, 6, 11),
    )
    assert dict(zip(report.frame["metric"], report.frame["value"])) == {
        "ga.sessions.desktop": 5.0,
        "ga.sessions.mobile": 3.0,
        "ga.sessions.not_set": 1.0,
        "ga.sessions.smart_tv": 6.0,
    }
    assert set(report.metrics) == set(report.frame["metric"])


def _good_page() -> dict:
    return page([(("2025061012",), ("5",))])


DELETE = object()


def _edit(**changes):
    """The good page changed: each keyword is a path (keys joined by `__`) to a value or DELETE."""

    def mutate(body):
        for path, value in changes.items():
            *parents, last = [int(k) if k.isdigit() else k for k in path.split("__")]
            target = body
            for key in parents:
                target = target[key]
            if value is DELETE:
                del target[last]
            else:
                target[last] = value
        return [body]

    return mutate


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_edit(metadata__timeZone=DELETE), "timeZone"),
        (_edit(metadata__timeZone="Mars/Olympus_Mons"), "unknown time zone"),
        (_edit(metadata=DELETE), "metadata"),
        (_edit(metricHeaders=DELETE), "metricHeaders"),
        (_edit(metricHeaders__0__type="TYPE_LIGHTYEARS"), "unknown type 'TYPE_LIGHTYEARS'"),
        (_edit(metricHeaders__0__type="METRIC_TYPE_UNSPECIFIED"), "unknown type"),
        (_edit(metricHeaders__0__name="screenPageViews"), "was not asked for"),
        (_edit(dimensionHeaders__0__name="date"), "must name dateHour once"),
        (_edit(rows__0__metricValues__0__value="12abc"), "'12abc' is not a number"),
        (_edit(rows__0__metricValues__0__value="1.5"), "'1.5' is not a number"),  # TYPE_INTEGER
        (_edit(rows__0__metricValues__0__value=12), "not a string"),
        (
            _edit(metricHeaders__0__type="TYPE_FLOAT", rows__0__metricValues__0__value="NaN"),
            "non-finite",
        ),
        (_edit(rows__0__metricValues=[]), "0 metricValues for 1 headers"),
        (_edit(rows__0__metricValues=DELETE), "metricValues"),
        (_edit(rows__0__dimensionValues__0__value="2025-06-10"), "not YYYYMMDDHH"),
        (_edit(rows__0__dimensionValues__0__value="2025061024"), "not a date and hour"),
        (_edit(rows__0="a row"), "dimensionValues"),
        (_edit(rows={"0": {}}), "rows"),
        (lambda body: [body, page([(("2025061013",), ("5",))], zone="UTC")], "disagree"),
        (lambda body: [[body]], "page 1 is not a JSON object"),
        (lambda body: "not pages", "not a list of pages"),
    ],
)
def test_a_malformed_report_fails_naming_the_source_and_the_cause(mutate, message):
    with pytest.raises(SourceError, match=r"source 'ga4'") as caught:
        normalize_report(mutate(_good_page()), SESSIONS, utc(2025, 6, 10), utc(2025, 6, 11))
    assert message in str(caught.value)


def test_an_empty_report_is_an_empty_frame():
    frame = normalize_report([page([])], SESSIONS, utc(2025, 6, 10), utc(2025, 6, 11))
    assert frame.empty and list(frame.columns) == ["hour", "metric", "value"]


# The daily report's normalizer ---------------------------------------------------------------


def daily_page(rows, *, zone="UTC", dimensions=("date",), **kwargs) -> dict:
    """A daily runReport response: `rows` holds (dimension values, metric values)."""
    return page(
        rows, zone=zone, dimensions=dimensions, metrics=(("activeUsers", "TYPE_INTEGER"),), **kwargs
    )


def read_days(pages, first=date(2025, 6, 10), last=date(2025, 6, 11), zone="UTC"):
    return read_daily_report(pages, ACTIVE_USERS, first, last, zone)


def test_the_daily_report_gives_each_day_of_the_window_its_value():
    rows = [((day,), (value,)) for day, value in [("20250609", "7"), ("20250610", "250")]]
    rows.append((("20250611",), ("310",)))
    report = read_days([daily_page(rows, zone="Europe/Paris")], zone="Europe/Paris")
    assert report.frame.to_dict("list") == {
        "day": [date(2025, 6, 10), date(2025, 6, 11)],  # the day before the window is left out
        "metric": ["ga.active_users"] * 2,
        "value": [250.0, 310.0],
    }
    assert report.time_zone == "Europe/Paris" and report.rows_read == 3
    assert report.metrics["ga.active_users"].ga_metric == "activeUsers"


def test_the_daily_report_appends_extra_dimensions_to_the_metric_name():
    rows = [
        (("20250610", device), (str(n),))
        for device, n in [("desktop", 5), ("smart tv", 2), ("smart/tv", 4)]
    ]
    report = read_days([daily_page(rows, dimensions=("date", "deviceCategory"))])
    assert dict(zip(report.frame["metric"], report.frame["value"])) == {
        "ga.active_users.desktop": 5.0,
        "ga.active_users.smart_tv": 6.0,
    }


def test_a_property_outside_the_business_time_zone_is_refused_naming_both_zones():
    with pytest.raises(SourceError) as caught:
        read_days([daily_page([(("20250610",), ("5",))], zone="America/New_York")], zone="UTC")
    assert str(caught.value).startswith(
        "source 'ga4': the property's time zone is America/New_York and the business time zone "
        "is UTC"
    )
    assert not caught.value.transient


@pytest.mark.parametrize(
    "zone, other, same",
    [
        ("Etc/UTC", "UTC", True),
        ("Europe/Berlin", "Europe/Paris", True),  # the same clock since 1980
        ("Europe/London", "UTC", False),  # the same in winter, not in summer
        ("Asia/Tokyo", "UTC", False),
        ("Not/AZone", "UTC", False),
    ],
)
def test_zones_with_the_same_clock_have_the_same_days(zone, other, same):
    assert same_clock(zone, other, date(2025, 1, 1), date(2025, 12, 31)) is same
    if same:  # and such a property is read, not refused
        read_days([daily_page([(("20250610",), ("5",))], zone=zone)], zone=other)


@given(
    values=st.dictionaries(st.integers(0, 40), st.integers(0, 10_000), max_size=30),
    window=st.tuples(st.integers(0, 40), st.integers(0, 40)).map(sorted),
    data=st.data(),
)
def test_the_daily_report_keeps_exactly_the_days_of_the_window_whatever_the_paging(
    values, window, data
):
    start = date(2025, 12, 20)  # across a year end
    rows = [
        (((start + timedelta(days=d)).strftime("%Y%m%d"),), (str(v),))
        for d, v in sorted(values.items())
    ]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(rows) - 1), max_size=4)) if rows[1:] else [])
    pages = [daily_page(rows[a:b], row_count=len(rows)) for a, b in pairwise([0, *cuts, len(rows)])]
    first, last = (start + timedelta(days=d) for d in window)
    frame = read_days(pages or [daily_page([])], first, last).frame
    expected = {
        start + timedelta(days=d): float(v)
        for d, v in values.items()
        if window[0] <= d <= window[1]
    }
    assert dict(zip(frame["day"], frame["value"])) == expected
    assert list(frame["day"]) == sorted(expected)


def _good_daily_page() -> dict:
    return daily_page([(("20250610",), ("5",))])


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_edit(metadata__timeZone=DELETE), "timeZone"),
        (_edit(metadata__timeZone="Mars/Olympus_Mons"), "unknown time zone"),
        (_edit(metricHeaders__0__name="sessions"), "'sessions' was not asked for"),
        (_edit(dimensionHeaders__0__name="dateHour"), "must name date once"),
        (_edit(rows__0__dimensionValues__0__value="2025061012"), "'2025061012' is not YYYYMMDD"),
        (_edit(rows__0__dimensionValues__0__value="2025-06-10"), "not YYYYMMDD"),
        (_edit(rows__0__dimensionValues__0__value="20250231"), "'20250231' is not a date"),
        (_edit(rows__0__dimensionValues__0__value=20250610), "not a string"),
        (_edit(rows__0__metricValues__0__value="-"), "'-' is not a number"),
        (_edit(rows__0__metricValues=[]), "0 metricValues for 1 headers"),
        (
            lambda body: [body, daily_page([(("20250611",), ("5",))], zone="Asia/Tokyo")],
            "disagree",
        ),
        (lambda body: [[body]], "page 1 is not a JSON object"),
        (lambda body: b"not pages", "not a list of pages"),
    ],
)
def test_a_malformed_daily_report_fails_naming_the_source_and_the_cause(mutate, message):
    with pytest.raises(SourceError, match=r"source 'ga4'") as caught:
        read_days(mutate(_good_daily_page()))
    assert message in str(caught.value)


# The API client, against the loopback sample server ----------------------------------------


@pytest.fixture
def server():
    with SampleGA4Server() as running:
        yield running


def client(server: SampleGA4Server, **overrides) -> GoogleAnalytics:
    return GoogleAnalytics(
        **{
            "property_id": PROPERTY,
            "metrics": METRICS,
            "endpoint": server.url,
            "timeout_seconds": 10.0,
            **overrides,
        }
    )


WINDOW = (utc(2026, 3, 10), utc(2026, 3, 12))


def test_the_client_pages_until_every_row_of_row_count_is_read(server):
    pages = client(server, page_size=25).run_report(*WINDOW)
    # Paris dates 2026-03-09 to 03-12: four days of 24 local hours.
    assert [p["rowCount"] for p in pages] == [96] * 4
    assert sum(len(p["rows"]) for p in pages) == 96
    assert [r["offset"] for r in server.requests] == [0, 25, 50, 75]
    first = server.requests[0]
    assert first["dateRanges"] == [{"startDate": "2026-03-09", "endDate": "2026-03-12"}]
    assert first["dimensions"] == [{"name": "dateHour"}]
    assert first["metrics"] == [{"name": name} for name in METRICS]
    assert first["limit"] == 25 and first["keepEmptyRows"] is False
    assert server.authorizations == [None] * 4  # an endpoint override alone is anonymous

    frame = normalize_report(pages, METRICS, *WINDOW)
    got = {(m, h): v for h, m, v in frame.itertuples(index=False)}
    assert got == sample_frame(hours("2026-03-10", 48))


def test_a_429_and_a_503_are_retried_with_exponential_backoff(server):
    server.script.extend(
        [
            api_error(429, "Exhausted property tokens per hour."),
            api_error(503, "The service is unavailable."),
        ]
    )
    sleeps = []
    pages = client(server).run_report(*WINDOW, sleep=sleeps.append)
    assert sleeps == [2.0, 4.0]
    assert len(server.requests) == 3
    frame = normalize_report(pages, METRICS, *WINDOW)
    assert len(frame) == 3 * 48


def test_a_retry_after_longer_than_the_backoff_is_waited_for(server):
    server.script.append(
        dataclasses.replace(
            api_error(429, "Exhausted concurrent requests."), headers={"Retry-After": "7"}
        )
    )
    sleeps = []
    client(server).run_report(*WINDOW, sleep=sleeps.append)
    assert sleeps == [7.0]


def test_a_retry_after_too_long_for_the_run_fails_the_attempt_as_transient(server):
    server.script.append(
        dataclasses.replace(
            api_error(429, "Exhausted property tokens per hour."), headers={"Retry-After": "3600"}
        )
    )
    sleeps = []
    with pytest.raises(SourceError, match="asked to retry after 3600 s") as raised:
        client(server).run_report(*WINDOW, sleep=sleeps.append)
    assert raised.value.transient and sleeps == [] and len(server.requests) == 1


@pytest.mark.parametrize(
    "status, message",
    [
        (403, "User does not have sufficient permissions for this property."),
        (404, "Requested entity was not found."),
    ],
)
def test_a_refusal_fails_at_once_with_the_api_message(server, status, message):
    server.script.append(api_error(status, message))
    sleeps = []
    with pytest.raises(SourceError) as caught:
        client(server).run_report(*WINDOW, sleep=sleeps.append)
    assert str(caught.value) == f"source 'ga4': the GA4 Data API answered {status}: {message}"
    assert not caught.value.transient
    assert sleeps == [] and len(server.requests) == 1


def test_a_bad_request_fails_at_once_with_the_api_message(server):
    sleeps = []
    with pytest.raises(
        SourceError, match=r"answered 400: Field bogusMetric is not a valid metric\."
    ) as caught:
        client(server, metrics={"bogusMetric": "ga.bogus"}).run_report(*WINDOW, sleep=sleeps.append)
    assert not caught.value.transient and sleeps == []


def test_a_page_that_ends_early_fails(server):
    server.script.extend([Reply(), Reply(edit=lambda report: {**report, "rows": []})])
    with pytest.raises(SourceError, match="GA page ended early: 25 of 96 rows read") as caught:
        client(server, page_size=25).run_report(*WINDOW)
    assert not caught.value.transient


@pytest.mark.parametrize("body", [b"<html>Bad gateway</html>", b"\xff\xfe\x00", b"[1, 2]"])
def test_an_answer_that_is_not_a_json_object_fails(server, body):
    server.script.append(Reply(body=body))
    with pytest.raises(SourceError, match="source 'ga4': .* not a JSON object") as caught:
        client(server).run_report(*WINDOW)
    assert not caught.value.transient


def test_a_server_slower_than_the_timeout_fails_as_transient(server):
    server.fallback = Reply(delay=30)
    sleeps = []
    with pytest.raises(
        SourceError, match="could not be reached: TimeoutError \\(2 tries\\)"
    ) as caught:
        client(server, timeout_seconds=0.2, max_retries=1).run_report(*WINDOW, sleep=sleeps.append)
    assert caught.value.transient and sleeps == [2.0]


def test_a_server_error_that_lasts_fails_as_transient_after_every_retry(server):
    server.fallback = api_error(500, "Internal error encountered.")
    sleeps = []
    with pytest.raises(
        SourceError, match=r"answered 500: Internal error encountered\. \(5 tries\)"
    ) as caught:
        client(server).run_report(*WINDOW, sleep=sleeps.append)
    assert caught.value.transient
    assert sleeps == [2.0, 4.0, 8.0, 16.0]


def test_the_autumn_change_reaches_the_client_as_ga4_reports_it(server):
    start, end = utc(2025, 10, 25, 22), utc(2025, 10, 26, 3)
    pages = client(server, metrics=SESSIONS).run_report(start, end)
    served = [sample_values(h)["sessions"] for h in hours("2025-10-25 22:00", 5)]
    # 00:00 and 01:00 UTC are both 02:00 in Paris: served as one row, stored on 00:00 UTC.
    at = hours("2025-10-25 22:00", 5)
    assert values_by_hour(normalize_report(pages, SESSIONS, start, end)) == {
        at[0]: served[0],
        at[1]: served[1],
        at[2]: served[2] + served[3],
        at[4]: served[4],
    }


def test_the_daily_report_asks_for_the_recomputed_metrics_by_date_with_the_same_paging():
    with SampleGA4Server(time_zone="UTC") as server:
        resource = client(
            server, aggregations={"activeUsers": "recomputed", "newUsers": "last"}, page_size=2
        )
        pages = resource.run_daily_report(date(2026, 3, 10), date(2026, 3, 14))
    assert [len(p["rows"]) for p in pages] == [2, 2, 1]
    assert [r["offset"] for r in server.requests] == [0, 2, 4]
    first = server.requests[0]
    assert first["dateRanges"] == [{"startDate": "2026-03-10", "endDate": "2026-03-14"}]
    assert first["dimensions"] == [{"name": "date"}]
    assert first["metrics"] == [{"name": "activeUsers"}]
    assert first["orderBys"] == [{"dimension": {"dimensionName": "date"}}]
    frame = read_daily_report(
        pages, resource.recomputed_metrics, date(2026, 3, 10), date(2026, 3, 14), "UTC"
    ).frame
    day = hours("2026-03-12", 24)
    assert (
        frame.loc[frame["day"] == date(2026, 3, 12), "value"].item()
        == daily_values([sample_values(h) for h in day])["activeUsers"]
    )


def test_the_daily_report_is_retried_like_the_hourly_one():
    with SampleGA4Server(time_zone="UTC") as server:
        server.script.append(api_error(503, "The service is unavailable."))
        sleeps = []
        resource = client(server, aggregations={"activeUsers": "recomputed"})
        resource.run_daily_report(date(2026, 3, 10), date(2026, 3, 10), sleep=sleeps.append)
    assert sleeps == [2.0] and len(server.requests) == 2


def test_the_sample_servers_daily_active_users_are_distinct_users_not_a_sum():
    hourly = [sample_values(h) for h in hours("2026-03-10", 24)]
    day = daily_values(hourly)
    assert day["sessions"] == sum(h["sessions"] for h in hourly)
    assert day["newUsers"] == sum(h["newUsers"] for h in hourly)
    busiest = max(h["activeUsers"] for h in hourly)
    assert busiest < day["activeUsers"] < sum(h["activeUsers"] for h in hourly) / 2
    assert daily_values([{"activeUsers": 4}]) == {"activeUsers": 4}  # never more than the sum


def service_account_file(tmp_path, token_uri: str):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "ga4-key.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "sample",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "reader@sample.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )
    return path, pem


def test_a_service_account_key_signs_the_requests(server, tmp_path):
    path, _ = service_account_file(tmp_path, f"{server.url}token")
    client(server, credentials_file=str(path)).run_report(*WINDOW)
    assert server.authorizations == ["Bearer sample-token"]


def test_a_refused_key_fails_without_showing_any_secret(server, tmp_path):
    path, pem = service_account_file(tmp_path, f"{server.url}token")
    server.token_reply = Reply(
        400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
    )
    with pytest.raises(SourceError, match=f"{ga4.CREDENTIALS_FILE_ENV} was refused") as caught:
        client(server, credentials_file=str(path)).run_report(*WINDOW)
    assert "PRIVATE KEY" not in str(caught.value) and pem[40:80] not in str(caught.value)


def test_a_file_that_is_not_a_key_fails_without_showing_its_contents(server, tmp_path):
    path = tmp_path / "key.json"
    path.write_text('{"secret": "hunter2"}')
    with pytest.raises(SourceError, match="does not name a readable service-account key") as caught:
        client(server, credentials_file=str(path)).run_report(*WINDOW)
    assert "hunter2" not in str(caught.value)


# Settings ------------------------------------------------------------------------------------

SECTION = {"property_id": PROPERTY, "metrics": METRICS}


@pytest.mark.parametrize(
    "section, env, reason",
    [
        ({}, {ga4.ENDPOINT_ENV: "http://127.0.0.1:1/"}, "no `ga4.property_id`"),
        ({"metrics": METRICS}, {ga4.ENDPOINT_ENV: "http://127.0.0.1:1/"}, "no `ga4.property_id`"),
        (SECTION, {}, f"neither {ga4.CREDENTIALS_FILE_ENV} nor {ga4.ENDPOINT_ENV} is set"),
        (SECTION, {ga4.ENDPOINT_ENV: ""}, "neither"),
    ],
)
def test_the_source_is_disabled_with_a_reason_when_unconfigured(section, env, reason):
    source = ga4.build_source(section, env)
    assert not source.enabled and reason in source.disabled_reason


def test_an_endpoint_override_enables_the_source_without_credentials():
    source = ga4.build_source(
        {**SECTION, "property_id": 123456789}, {ga4.ENDPOINT_ENV: "http://127.0.0.1:1"}
    )
    assert source.enabled and source.key == GA4_REPORT_KEY
    resource = source.resources["ga4"]
    assert resource.property_id == PROPERTY and resource.credentials_file is None


def test_a_disabled_source_is_shown_in_its_group_with_its_reason():
    (spec,) = ga4.build_source(SECTION, {}).for_definitions()
    assert isinstance(spec, dg.AssetSpec) and spec.key == GA4_REPORT_KEY
    assert spec.group_name == "ga4" and spec.kinds == {"google", "pandas"}
    assert spec.description.startswith(f"Disabled: neither {ga4.CREDENTIALS_FILE_ENV}")


@pytest.mark.parametrize(
    "section, message",
    [
        (
            {"property_id": "UA-1234", "metrics": METRICS},
            "ga4.property_id: 'UA-1234' is not a numeric",
        ),
        (
            {**SECTION, "metrics": {"sessions": "bad name!"}},
            "ga4.metrics.sessions: 'bad name!' is not a valid metric name",
        ),
        (
            {**SECTION, "metrics": {"new users": "ga.x"}},
            "ga4.metrics: 'new users' is not a GA4 API name",
        ),
        ({**SECTION, "metrics": {}}, "ga4.metrics: map each GA4 metric"),
        ({**SECTION, "metrics": ["sessions"]}, "ga4.metrics: Input should be a valid dictionary"),
        ({"property_id": PROPERTY}, "ga4.metrics: map each GA4 metric"),
        ({**SECTION, "metrics": {"sessions": "ga.x", "totalUsers": "ga.x"}}, "same platform name"),
        (
            {**SECTION, "dimensions": ["device category"]},
            "ga4.dimensions: 'device category' is not a GA4 API name",
        ),
        ({**SECTION, "dimensions": ["dateHour"]}, "ga4.dimensions: up to 8"),
        (
            {**SECTION, "aggregations": {"sessions": "avg"}},
            "ga4.aggregations.sessions: 'avg' is not one of sum, last, recomputed",
        ),
        ({**SECTION, "dimensions": ["date"]}, "other than dateHour and date"),
        (
            {**SECTION, "aggregations": {"bounceRate": "last"}},
            "ga4.aggregations.bounceRate: not one of ga4.metrics",
        ),
        ({**SECTION, "metric": {}}, "ga4.metric: unknown setting"),
    ],
)
def test_bad_settings_fail_at_load_naming_the_key(section, message):
    with pytest.raises(ConfigurationError) as caught:
        ga4.build_source(section, {})
    assert message in str(caught.value)


ENDPOINT = {ga4.ENDPOINT_ENV: "http://127.0.0.1:1/"}
RECOMPUTED = {**SECTION, "aggregations": {"activeUsers": "recomputed", "newUsers": "last"}}


def test_recomputed_metrics_add_the_daily_report_and_only_they_are_asked_for_by_day():
    source = ga4.build_source(RECOMPUTED, ENDPOINT)
    assert source.enabled and source.daily_keys == [GA4_DAILY_REPORT_KEY]
    assert source.resources["ga4"].recomputed_metrics == ACTIVE_USERS
    assert ga4.build_source(SECTION, ENDPOINT).daily_keys == []
    last_only = {**SECTION, "aggregations": {"activeUsers": "last"}}
    assert ga4.build_source(last_only, ENDPOINT).daily_keys == []


@pytest.mark.parametrize(
    "section, env",
    [(RECOMPUTED, {}), ({k: v for k, v in RECOMPUTED.items() if k != "property_id"}, ENDPOINT)],
)
def test_a_disabled_source_shows_its_daily_report_disabled_too(section, env):
    hourly, daily = ga4.build_source(section, env).for_definitions()
    assert (hourly.key, daily.key) == (GA4_REPORT_KEY, GA4_DAILY_REPORT_KEY)
    assert isinstance(daily, dg.AssetSpec) and daily.group_name == "ga4"
    assert daily.description.startswith("Disabled: ")


def test_the_code_location_has_the_daily_report_only_with_a_recomputed_metric():
    def daily_job_keys(defs: dg.Definitions) -> set:
        return set(defs.resolve_job_def(DAILY_JOB).asset_layer.selected_asset_keys)

    defs = build_definitions({"ga4": RECOMPUTED}, ENDPOINT)
    graph = defs.resolve_asset_graph()
    node = graph.get(GA4_DAILY_REPORT_KEY)
    assert node.is_materializable and node.group_name == "ga4"
    assert node.partitions_def.get_partition_keys()[0] == "2025-01-01"  # daily
    assert GA4_REPORT_KEY in node.parent_keys
    assert GA4_DAILY_REPORT_KEY in graph.get(DAILY_VALUES_KEY).parent_keys
    assert GA4_DAILY_REPORT_KEY in daily_job_keys(defs)

    plain = build_definitions({"ga4": SECTION}, ENDPOINT)
    assert GA4_DAILY_REPORT_KEY not in plain.resolve_asset_graph().get_all_asset_keys()
    assert GA4_DAILY_REPORT_KEY not in daily_job_keys(plain)


def test_a_credentials_file_that_does_not_exist_fails_at_load_naming_the_variable(tmp_path):
    env = {ga4.CREDENTIALS_FILE_ENV: str(tmp_path / "missing.json")}
    with pytest.raises(ConfigurationError, match=f"^{ga4.CREDENTIALS_FILE_ENV}: no file at "):
        ga4.build_source(SECTION, env)


# Materialization -----------------------------------------------------------------------------


def resources(store_url: str, resource: GoogleAnalytics) -> dict:
    return {
        "io_manager": PostgresPandasIOManager(url=store_url),
        "metric_store": MetricStore(url=store_url),
        "ga4": resource,
    }


def materialize(store_url: str, resource: GoogleAnalytics, first: str, last: str, **kwargs):
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [ga4_report, build_hourly_values([GA4_REPORT_KEY])],
            instance=instance,
            resources=resources(store_url, resource),
            tags=dict(zip(RANGE_TAGS, (first, last))),
            **kwargs,
        )


def materialize_day(store_url: str, resource: GoogleAnalytics, day: str, **kwargs):
    """The daily report and the daily values of one business day (its hours already landed)."""
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [
                ga4_report,
                ga4_daily_report,
                build_hourly_values([GA4_REPORT_KEY]),
                build_daily_values([GA4_DAILY_REPORT_KEY]),
            ],
            selection=[GA4_DAILY_REPORT_KEY, DAILY_VALUES_KEY],
            partition_key=day,
            instance=instance,
            resources=resources(store_url, resource),
            **kwargs,
        )


def business_day_hours(day: str) -> list[pd.Timestamp]:
    """The UTC hours of a business day (24: no daylight-saving change on the days used)."""
    midnight = pd.Timestamp(day, tz=BUSINESS_TIMEZONE).tz_convert("UTC")
    return list(pd.date_range(midnight, periods=24, freq="h"))


def test_daily_active_users_come_from_the_daily_report_and_counters_from_the_hours(
    store_url,
):
    with SampleGA4Server(time_zone=BUSINESS_TIMEZONE) as server:
        resource = client(server, aggregations={"activeUsers": "recomputed"})
        assert materialize(store_url, resource, "2026-03-10-00:00", "2026-03-10-23:00").success
        result = materialize_day(store_url, resource, "2026-03-10")
    assert result.success
    day_hours = business_day_hours("2026-03-10")
    hourly = [sample_values(h) for h in day_hours]
    stored_hours = query(store_url, "SELECT metric, time, value FROM " + SOURCE_HOURS)
    # Active users stay in hourly values too.
    assert {(m, pd.Timestamp(t)): v for m, t, v in stored_hours} == sample_frame(day_hours)

    daily = dict(query(store_url, "SELECT metric, value FROM " + SOURCE_DAYS))
    active_users = daily_values(hourly)["activeUsers"]
    assert daily == {
        "ga.active_users": float(active_users),  # the daily report's distinct users...
        "ga.sessions": float(sum(h["sessions"] for h in hourly)),  # ... counters summed
        "ga.new_users": float(sum(h["newUsers"] for h in hourly)),
    }
    assert active_users < sum(h["activeUsers"] for h in hourly)  # ... not the hours' sum
    assert query(
        store_url, "SELECT aggregation FROM metrics.metric WHERE name = 'ga.active_users'"
    ) == [("recomputed",)]

    request = server.requests[-1]
    assert request["dimensions"] == [{"name": "date"}]
    assert request["dateRanges"] == [{"startDate": "2026-03-10", "endDate": "2026-03-10"}]
    metadata = result.asset_materializations_for_node("raw__ga4_daily_report")[0].metadata
    assert metadata["property_time_zone"].value == BUSINESS_TIMEZONE
    assert metadata["rows_written"].value == 1 and metadata["pages"].value == 1
    checks = [
        (c.check_name, c.passed)
        for c in result.get_asset_check_evaluations()
        if c.asset_key == GA4_DAILY_REPORT_KEY
    ]
    assert checks == [("values_non_negative", True)]


def test_a_property_in_another_zone_fails_the_daily_report_but_not_the_hours(store_url):
    with SampleGA4Server(time_zone=OTHER_ZONE) as server:
        resource = client(server, aggregations={"activeUsers": "recomputed"})
        assert materialize(store_url, resource, "2026-03-10-00:00", "2026-03-10-23:00").success
        result = materialize_day(store_url, resource, "2026-03-10", raise_on_error=False)
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "raw__ga4_daily_report"
    message = failure.event_specific_data.error.message
    assert (
        f"source 'ga4': the property's time zone is {OTHER_ZONE} and the business time zone is "
        f"{BUSINESS_TIMEZONE}" in message
    )
    assert message.rstrip().endswith("(partition 2026-03-10)")
    assert len([r for r in server.requests if r["dimensions"] == [{"name": "date"}]]) == 1
    assert query(store_url, "SELECT count(*) FROM " + SOURCE_HOURS) == [(3 * 24,)]
    assert query(store_url, "SELECT count(*) FROM metrics.daily_values") == [(0,)]


def test_a_range_of_hours_lands_in_hourly_values_as_served(store_url, server):
    resource = client(server, aggregations={"activeUsers": "last"})
    result = materialize(store_url, resource, "2026-03-10-00:00", "2026-03-11-23:00")
    assert result.success

    rows = query(store_url, "SELECT metric, time, value FROM " + SOURCE_HOURS)
    assert {(m, pd.Timestamp(t)): v for m, t, v in rows} == sample_frame(hours("2026-03-10", 48))
    catalog = query(
        store_url,
        "SELECT name, aggregation, source FROM metrics.metric "
        "WHERE source <> 'platform' ORDER BY name",
    )
    assert catalog == [
        ("ga.active_users", "last", "ga4"),
        ("ga.new_users", "sum", "ga4"),
        ("ga.sessions", "sum", "ga4"),
    ]

    metadata = result.asset_materializations_for_node("raw__ga4_report")[0].metadata
    assert metadata["property_time_zone"].value == "Europe/Paris"
    assert metadata["rows_written"].value == 3 * 48 and metadata["pages"].value == 1
    checks = {
        c.check_name: (c.passed, c.severity)
        for c in result.get_asset_check_evaluations()
        if c.asset_key == GA4_REPORT_KEY
    }
    assert checks == {
        "values_non_negative": (True, dg.AssetCheckSeverity.ERROR),
        "every_metric_reported": (True, dg.AssetCheckSeverity.WARN),
    }


def test_hours_without_traffic_are_zero_and_warn_that_a_metric_is_missing(store_url, server):
    # Before the sample data's first closed hour there is nothing: GA4 leaves such hours out.
    # GA4 was read for them: nothing happened, so every configured count is 0, not missing.
    server.now = lambda: utc(2026, 3, 10)
    result = materialize(store_url, client(server), "2026-03-10-00:00", "2026-03-10-05:00")
    assert result.success
    check = next(
        c for c in result.get_asset_check_evaluations() if c.check_name == "every_metric_reported"
    )
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    stored = query(store_url, "SELECT metric, value FROM " + SOURCE_HOURS)
    assert sorted(stored) == sorted((name, 0.0) for name in METRICS.values() for _ in range(6))


def test_a_server_that_keeps_failing_fails_only_the_ga4_asset(store_url, server, monkeypatch):
    server.fallback = api_error(500, "Internal error encountered.")
    # The asset's own retry policy runs, without its waits between attempts.
    monkeypatch.setattr(dg.RetryPolicy, "calculate_delay", lambda policy, attempt: 0)
    resource = client(server, max_retries=1, backoff_seconds=0.0)
    result = materialize(
        store_url, resource, "2026-03-10-00:00", "2026-03-10-05:00", raise_on_error=False
    )
    assert not result.success
    failures = result.get_step_failure_events()
    assert [event.step_key for event in failures] == ["raw__ga4_report"]
    error = failures[0].event_specific_data.error
    assert error.message.startswith("Exceeded max_retries of 2")  # a transient cause is retried
    assert error.cause.message.startswith(
        "dagster._core.definitions.events.Failure: source 'ga4': the GA4 Data API answered 500: "
        "Internal error encountered. (2 tries)"
    )
    assert len(server.requests) == 3 * 2
    assert query(store_url, "SELECT count(*) FROM metrics.hourly_values") == [(0,)]


def test_the_daily_revisit_replaces_the_hours_ga4_revised(store_url, server):
    """GA4 keeps processing an hour's data for up to two days: the revisit schedule's range run
    re-reads the last 48 closed hours, and hourly values follow the revised answer."""
    server.now = lambda: utc(2026, 3, 12, 3, 5)
    resource = client(server, metrics=SESSIONS)
    first_hour, last_hour = (
        hourly_partitions.get_partition_key_for_timestamp(hour.timestamp())
        for hour in (utc(2026, 3, 9), utc(2026, 3, 12, 2))
    )  # keys are written in the business time zone
    assert materialize(store_url, resource, first_hour, last_hour).success

    def revised(hour: datetime) -> dict[str, int]:
        values = sample_values(hour)
        return {**values, "sessions": values["sessions"] + 7}

    server.values = revised
    first, last = revisited_hours(server.now(), 5, revisit_hours({}, "ga4"))
    assert materialize(store_url, resource, first, last).success

    rows = query(store_url, "SELECT time, value FROM " + SOURCE_HOURS)
    stored = {pd.Timestamp(t): v for t, v in rows}
    revisited = hours("2026-03-10 03:00", 48)
    assert {h: stored[h] for h in revisited} == {
        h: float(revised(h)["sessions"]) for h in revisited
    }
    before = hours("2026-03-09 00:00", 27)  # closed earlier: left as first stored
    assert {h: stored[h] for h in before} == {
        h: float(sample_values(h)["sessions"]) for h in before
    }
    assert len(stored) == 27 + 48
