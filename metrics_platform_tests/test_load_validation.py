"""Validation when the definitions load: a settings file with a misspelt section, two sources or
a KPI claiming one metric, an oversized formula or a name the formula parser keeps for itself
is refused by `build_definitions` with a `ConfigurationError` that names the key, before any
run could fail on it."""

from __future__ import annotations

import copy

import pytest

from metrics_platform.definitions import build_definitions
from metrics_platform.defs.sources.registry import builtin_builders
from metrics_platform.lib.database import PRODUCT_DATABASE_URL_ENV
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.formulas import MAX_FORMULA_DEPTH, MAX_FORMULA_TERMS, Formula
from metrics_platform.lib.settings import PLATFORM_SECTIONS
from metrics_platform_tests.conftest import TEST_SETTINGS

ENV = {PRODUCT_DATABASE_URL_ENV: "postgresql://set-by-the-run"}
GA4 = {"property_id": "123456789", "metrics": {"sessions": "ga.sessions"}}
KPI = {"name": "kpi.error_share", "formula": "events.api.errors / events.api.count"}


def settings_with(**sections) -> dict:
    settings = copy.deepcopy(TEST_SETTINGS)
    settings.update(copy.deepcopy(sections))
    return settings


def balanced_sum(term: str, count: int) -> str:
    """`count` terms added up pairwise: a formula wide but shallow."""
    if count == 1:
        return term
    return f"({balanced_sum(term, count // 2)} + {balanced_sum(term, count - count // 2)})"


def refused(settings: dict) -> str:
    with pytest.raises(ConfigurationError) as caught:
        build_definitions(settings=settings, env=ENV)
    return str(caught.value)


def test_the_reference_settings_load():
    build_definitions(settings=settings_with(ga4=GA4, kpis=[KPI]), env=ENV)


def test_an_unknown_section_is_refused_with_a_suggestion():
    settings = settings_with()
    settings["prodcut_db"] = settings.pop("product_db")
    message = refused(settings)
    assert "`prodcut_db` is not a settings section" in message
    assert "did you mean `product_db`?" in message


def test_every_section_the_platform_reads_is_known():
    """The known sections are the sources' and PLATFORM_SECTIONS, listed once each: a settings
    file holding all of them loads."""
    assert set(builtin_builders()) == {
        "product_db",
        "crawlers",
        "events",
        "ga4",
        "prometheus",
        "sql_metrics",
        "retention",
    }
    assert set(PLATFORM_SECTIONS) == {"kpis", "alerts", "schedule", "quality"}
    query = {"query": "sum by (job) (up)", "metric": "http.up.{job}", "aggregation": "last"}
    build_definitions(
        settings=settings_with(
            ga4=GA4,
            prometheus={"queries": [query]},
            kpis=[KPI],
            schedule={"lag_minutes": {"default": 7}},
            quality={"freshness_delay_minutes": 60},
        ),
        env=ENV,
    )
    for name in ("Product_db", "kpi", "schedules", "ga"):
        assert f"`{name}` is not a settings section" in refused(settings_with(**{name: {}}))


@pytest.mark.parametrize(
    "ga4_metrics, clash",
    [
        (
            {"sessions": "spider.total"},
            "crawlers, ga4: both sources produce the metric 'spider.total'",
        ),
        ({"sessions": "events.api.count"}, "'events.*'"),
        ({"sessions": "objects.users.count"}, "product_db, ga4"),
    ],
)
def test_a_metric_produced_by_two_sources_is_refused(ga4_metrics, clash):
    message = refused(settings_with(ga4={**GA4, "metrics": ga4_metrics}))
    assert clash in message
    assert "rename it in one of the two sections" in message


def test_the_platforms_own_metric_names_are_reserved():
    message = refused(settings_with(ga4={**GA4, "metrics": {"sessions": "platform.sessions"}}))
    assert message.startswith("ga4: the metric 'platform.sessions' would take a name")
    message = refused(settings_with(kpis=[{**KPI, "name": "platform.hour_complete"}]))
    assert message.startswith("kpis[0].name: ") and "'platform.*'" in message
    # ... and a KPI may use them: the share of complete hours is a formula like any other.
    ratio = {"name": "kpi.complete", "formula": "platform.hour_complete / 1"}
    build_definitions(settings=settings_with(kpis=[ratio]), env=ENV)


def test_two_tables_of_one_source_may_not_be_taken_for_two_sources():
    tables = [{"table": "users"}, {"table": "profiles"}]
    build_definitions(settings=settings_with(product_db={"tables": tables}), env=ENV)


@pytest.mark.parametrize(
    "name, clash",
    [
        ("events.signup_rate", "'events.*'"),  # a member of a source's family
        ("spider.total", "'spider.total'"),  # a source's exact metric
        ("objects.users.count", "'objects.users.count'"),
        ("ga.sessions", "'ga.sessions'"),
    ],
)
def test_a_kpi_named_like_a_metric_is_refused(name, clash):
    message = refused(settings_with(ga4=GA4, kpis=[KPI, {**KPI, "name": name}]))
    assert message.startswith("kpis[1].name: ")
    assert clash in message


def test_two_kpis_of_one_name_are_refused_with_the_key():
    assert refused(settings_with(kpis=[KPI, KPI])) == (
        "kpis[1].name: 'kpi.error_share' is the name of kpis[0] too"
    )


@pytest.mark.parametrize(
    "formula, cause",
    [
        ("-" * 100_000 + "events.api.count", "characters long"),
        (" + ".join(["events.api.count"] * 20_000), "characters long"),
        ("(" * 100_000 + "events.api.count" + ")" * 100_000, "characters long"),
        ("-" * 500 + "events.api.count", f"more than {MAX_FORMULA_DEPTH} levels"),
        (balanced_sum("a.b", MAX_FORMULA_TERMS + 1), f"more than {MAX_FORMULA_TERMS} terms"),
        ("(" * 300 + "events.api.count" + ")" * 300, "kpis[1].formula: "),
    ],
)
def test_oversized_formulas_are_refused_with_the_key(formula, cause):
    message = refused(settings_with(kpis=[KPI, {"name": "kpi.big", "formula": formula}]))
    assert message.startswith("kpis[1].formula: ")
    assert cause in message


def test_a_formula_at_the_limits_evaluates():
    import pandas as pd

    deep = "-" * (MAX_FORMULA_DEPTH - 2) + "a.b"
    long_sum = " + ".join(["a.b"] * (MAX_FORMULA_DEPTH - 1))
    wide = balanced_sum("a.b", MAX_FORMULA_TERMS)
    frame = pd.DataFrame({"a.b": [2.0]})
    assert Formula.parse(deep, key="k").evaluate(frame).tolist() == [2.0]
    assert Formula.parse(long_sum, key="k").evaluate(frame).tolist() == [
        2.0 * (MAX_FORMULA_DEPTH - 1)
    ]
    assert Formula.parse(wide, key="k").evaluate(frame).tolist() == [2.0 * MAX_FORMULA_TERMS]


@pytest.mark.parametrize("formula", ["__m1 + events.api.count", "events.api.count / __m0", "__m0"])
def test_the_parsers_placeholders_are_reserved(formula):
    message = refused(settings_with(kpis=[{"name": "kpi.x", "formula": formula}]))
    assert message.startswith("kpis[0].formula: '__m")
    assert "is not a metric name" in message
