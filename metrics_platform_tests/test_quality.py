"""Quality checks per partition: freshness of the latest closed hour, completeness, bounds."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd
import pytest

from metrics_platform.definitions import build_definitions, freshness_delay
from metrics_platform.defs.metrics.assets import completeness
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform_tests.conftest import TEST_SETTINGS, execute


def freshness(defs, instance):
    result = defs.resolve_job_def("freshness_checks").execute_in_process(instance=instance)
    return result.get_asset_check_evaluations()[0]


def test_freshness_fails_until_the_latest_closed_hour_lands(store_url, monkeypatch):
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    defs = build_definitions(
        {**TEST_SETTINGS, "quality": {"freshness_delay_minutes": 0}},
        env={PRODUCT_DATABASE_URL_ENV: "x"},
    )
    with dg.instance_for_test() as instance:
        assert not freshness(defs, instance).passed  # nothing has landed
        latest_closed = datetime.now(timezone.utc).replace(
            minute=0, second=0, microsecond=0
        ) - timedelta(hours=1)
        execute(
            store_url,
            "INSERT INTO metrics.metric (name, aggregation, source) VALUES ('m', 'sum', 't')",
        )
        execute(
            store_url,
            "INSERT INTO metrics.hourly_values SELECT id, %s, 1 FROM metrics.metric",
            (latest_closed - timedelta(hours=3),),
        )
        stale = freshness(defs, instance)
        assert not stale.passed
        assert stale.metadata["required_hour"].value == latest_closed.isoformat()
        execute(
            store_url,
            "INSERT INTO metrics.hourly_values SELECT id, %s, 1 FROM metrics.metric",
            (latest_closed,),
        )
        assert freshness(defs, instance).passed


def test_completeness_names_the_missing_metrics():
    hours = pd.date_range("2026-03-10", periods=2, freq="h", tz="UTC")
    named = pd.DataFrame(
        {
            "hour": [hours[0], hours[1], hours[0]],
            "metric": ["a", "a", "b"],
            "value": [1.0, 2.0, 3.0],
        }
    )
    start, end = hours[0].to_pydatetime(), (hours[1] + pd.Timedelta(hours=1)).to_pydatetime()
    assert completeness(named, ["a", "b", "c"], start, end) == (False, ["b", "c"])
    assert completeness(named, ["a"], start, end) == (True, [])


def test_a_bad_freshness_delay_is_refused_with_its_key():
    with pytest.raises(ConfigurationError, match="quality.freshness_delay_minutes"):
        freshness_delay({"freshness_delay_minutes": "soon"})
