"""Declarative KPIs: safe formulas, no value on division by zero, hourly and daily materialization."""

from datetime import datetime, timezone

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics_platform.definitions import build_definitions
from metrics_platform.defs.metrics.kpis import compute_kpis, parse_kpis
from metrics_platform.lib.chunks import PIECE_ROWS_ENV
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.formulas import Formula
from metrics_platform_tests.conftest import RANGE_TAGS, TEST_SETTINGS, query

KNOWN = ["objects.users.count", "objects.api_keys.count", "events.*"]


def test_a_formula_combines_metrics_and_numbers():
    formula = Formula.parse("(a.x - a.y) / a.x * 100 + [b.c-d]", key="k")
    assert formula.metrics == ("a.x", "a.y", "b.c-d")
    frame = pd.DataFrame(
        {"a.x": [4.0, 0.0, 2.0], "a.y": [1.0, 1.0, np.nan], "b.c-d": [1.0, 1.0, 1.0]}
    )
    result = formula.evaluate(frame)
    assert result.iloc[0] == 76.0
    assert np.isnan(result.iloc[1])  # division by zero: no value
    assert np.isnan(result.iloc[2])  # missing operand: no value


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('id')",
        "a.x ** 2",
        "a.x if a.y else 1",
        "a.x.y()",
        "f(a.x)",
        "a.x; a.y",
        "",
        "1 + 2",
        "[a b]",
        "a.x // 2",
        "a.x < 3",
    ],
)
def test_anything_but_arithmetic_over_metrics_is_refused(text):
    with pytest.raises(ConfigurationError, match=r"^kpis\[0\]\.formula: "):
        Formula.parse(text, key="kpis[0].formula")


@given(st.text(max_size=40))
def test_any_text_either_parses_or_raises_a_configuration_error(text):
    try:
        Formula.parse(text, key="k")
    except ConfigurationError:
        pass


def test_unknown_metrics_in_a_kpi_are_caught_with_the_key():
    with pytest.raises(
        ConfigurationError,
        match=r"kpis\[1\]\.formula: no configured source produces the metric 'ga\.sessions'",
    ):
        parse_kpis(
            [
                {"name": "kpi.a", "formula": "events.signup.count"},
                {"name": "kpi.b", "formula": "events.signup.count / ga.sessions"},
            ],
            KNOWN,
        )
    with pytest.raises(ConfigurationError, match=r"kpis\[0\]\.bounds"):
        parse_kpis([{"name": "kpi.a", "formula": "events.x.count", "bounds": [1, 0]}], KNOWN)


def test_definitions_refuse_a_kpi_over_an_unknown_metric():
    settings = {**TEST_SETTINGS, "kpis": [{"name": "kpi.x", "formula": "nope.metric / 2"}]}
    with pytest.raises(ConfigurationError, match=r"kpis\[0\]\.formula"):
        build_definitions(settings, env={})


def test_compute_kpis_leaves_out_undefined_periods():
    kpis = parse_kpis([{"name": "kpi.rate", "formula": "events.a.count / events.b.count"}], KNOWN)
    values = pd.DataFrame(
        {
            "hour": [1, 1, 2, 2, 3],
            "metric": ["events.a.count", "events.b.count"] * 2 + ["events.a.count"],
            "value": [1.0, 4.0, 3.0, 0.0, 5.0],
        }
    )
    result = compute_kpis(values, "hour", kpis)
    assert result.to_dict("records") == [{"hour": 1, "metric": "kpi.rate", "value": 0.25}]


SETTINGS = {
    **TEST_SETTINGS,
    "product_db": {
        "tables": [
            {"table": "users", "created_at_column": "created_at"},
            {"table": "api_keys", "created_at_column": "created_at"},
        ]
    },
    "kpis": [
        {
            "name": "kpi.api_key_share",
            "formula": "objects.api_keys.count / objects.users.count",
            "bounds": [0, 1],
        },
        {
            "name": "kpi.api_error_rate",
            "formula": "events.api_call.errors / events.api_call.count",
            "bounds": [0, 1],
        },
        {"name": "kpi.exports_per_signup", "formula": "events.export.count / events.signup.count"},
    ],
}


def run_metric_jobs(store_url, product_url, monkeypatch, *, now, days, users, hours, day_range):
    """The product database seeded with `users` over `days` before `now`, then the hourly job over the
    range `hours` and the daily job over `day_range`, with `SETTINGS`."""
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    monkeypatch.setenv(PRODUCT_DATABASE_URL_ENV, product_url)
    seed_product_database(product_url, now=now, days=days, users=users)
    defs = build_definitions(SETTINGS)
    with dg.instance_for_test() as instance:
        hourly = defs.resolve_job_def("hourly_metrics").execute_in_process(
            instance=instance, tags=dict(zip(RANGE_TAGS, hours))
        )
        daily = defs.resolve_job_def("daily_metrics").execute_in_process(
            instance=instance, tags=dict(zip(RANGE_TAGS, day_range))
        )
    assert hourly.success and daily.success
    checks = [
        c
        for c in hourly.get_asset_check_evaluations() + daily.get_asset_check_evaluations()
        if c.check_name == "kpis_within_bounds"
    ]
    assert len(checks) == 2 and all(c.passed for c in checks)


def test_kpis_land_hourly_and_daily_as_ratios_of_totals(store_url, product_url, monkeypatch):
    run_metric_jobs(
        store_url,
        product_url,
        monkeypatch,
        now=datetime(2026, 3, 12, tzinfo=timezone.utc),
        days=3,
        users=300,
        hours=("2026-03-10-00:00", "2026-03-10-23:00"),
        day_range=("2026-03-10", "2026-03-10"),
    )

    def value(view, metric, period_col, period):
        rows = query(
            store_url,
            f"SELECT value FROM metrics.{view} WHERE metric = %s AND {period_col} = %s",
            (metric, period),
        )
        return rows[0][0] if rows else None

    hour = "2026-03-10 15:00+00"
    share = value("hourly_values_by_name", "kpi.api_key_share", "time", hour)
    assert share == pytest.approx(
        value("hourly_values_by_name", "objects.api_keys.count", "time", hour)
        / value("hourly_values_by_name", "objects.users.count", "time", hour)
    )
    day = "2026-03-10"
    rate = value("daily_values_by_name", "kpi.exports_per_signup", "date", day)
    assert rate == pytest.approx(
        value("daily_values_by_name", "events.export.count", "date", day)
        / value("daily_values_by_name", "events.signup.count", "date", day)
    )
    # An hour has a ratio only where both operands have a value and the divisor is not zero:
    # never a zero or an error in its place.
    defined = query(
        store_url,
        """
        SELECT count(*) FROM metrics.hourly_values_by_name e JOIN metrics.hourly_values_by_name s
          ON s.time = e.time AND s.metric = 'events.signup.count' AND s.value <> 0
        WHERE e.metric = 'events.export.count'""",
    )[0][0]
    kpi_hours = query(
        store_url,
        "SELECT count(*) FROM metrics.hourly_values_by_name "
        "WHERE metric = 'kpi.exports_per_signup'",
    )[0][0]
    assert 0 < kpi_hours == defined <= 24
    catalog = query(
        store_url, "SELECT aggregation, source FROM metrics.metric WHERE name LIKE 'kpi.%%'"
    )
    assert set(catalog) == {("recomputed", "kpi")}


def test_kpis_of_a_long_range_are_computed_in_pieces(store_url, product_url, monkeypatch):
    """Nine days as one range in pieces of a day: every KPI value is the ratio of its operands
    in the same period, and the bounds check covers every piece."""
    monkeypatch.setenv(PIECE_ROWS_ENV, "1")
    run_metric_jobs(
        store_url,
        product_url,
        monkeypatch,
        now=datetime(2026, 3, 11, tzinfo=timezone.utc),
        days=10,
        users=200,
        hours=("2026-03-01-00:00", "2026-03-09-23:00"),
        day_range=("2026-03-01", "2026-03-09"),
    )
    for view, period in (("hourly_values_by_name", "time"), ("daily_values_by_name", "date")):
        pairs = query(
            store_url,
            f"""
            SELECT k.value, a.value / u.value FROM metrics.{view} k
            JOIN metrics.{view} a ON a.{period} = k.{period} AND a.metric = 'objects.api_keys.count'
            JOIN metrics.{view} u ON u.{period} = k.{period} AND u.metric = 'objects.users.count'
            WHERE k.metric = 'kpi.api_key_share'""",
        )
        defined = query(
            store_url,
            f"SELECT count(*) FROM metrics.{view} WHERE metric = 'objects.users.count' "
            "AND value <> 0",
        )[0][0]
        assert 0 < len(pairs) == defined <= (9 * 24 if period == "time" else 9)
        assert all(kpi == pytest.approx(ratio) for kpi, ratio in pairs)
