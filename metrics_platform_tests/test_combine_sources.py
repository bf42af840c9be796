"""The hourly values' combination of every source's rows: catalog ids, one source per metric."""

import pandas as pd
import pytest

from metrics_platform.defs.metrics.assets import combine_sources
from metrics_platform.lib.errors import MetricsPlatformError

H0, H1 = pd.Timestamp("2026-03-10 00:00", tz="UTC"), pd.Timestamp("2026-03-10 01:00", tz="UTC")
IDS = {"objects.users.count": 1, "events.signup.count": 2, "crawlers.active": 3}


def rows(*triples) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "hour": pd.Series([t[0] for t in triples], dtype="datetime64[us, UTC]"),
            "metric": pd.Series([t[1] for t in triples], dtype="str"),
            "value": pd.Series([t[2] for t in triples], dtype="float64"),
        }
    )


def test_every_source_s_rows_get_their_catalog_ids_in_hour_and_id_order():
    combined = combine_sources(
        {
            "events": rows((H1, "events.signup.count", 4), (H0, "events.signup.count", 0)),
            "product_db": rows((H1, "objects.users.count", 12), (H0, "objects.users.count", 10)),
            "crawlers": rows(),
        },
        IDS,
    )
    assert combined["metric_id"].dtype == "int64"
    assert list(combined.itertuples(index=False, name=None)) == [
        (1, H0, 10.0),
        (2, H0, 0.0),
        (1, H1, 12.0),
        (2, H1, 4.0),
    ]


def test_a_metric_outside_the_catalog_is_refused_by_name():
    with pytest.raises(MetricsPlatformError, match="'events.export.count' is not in the catalog"):
        combine_sources(
            {"events": rows((H0, "events.signup.count", 1), (H0, "events.export.count", 2))}, IDS
        )


def test_a_metric_reported_by_two_sources_names_both():
    with pytest.raises(
        MetricsPlatformError,
        match="'crawlers.active' is reported by more than one source: crawlers, product_db",
    ):
        combine_sources(
            {
                "crawlers": rows((H0, "crawlers.active", 1), (H1, "crawlers.active", 2)),
                "product_db": rows((H1, "crawlers.active", 2), (H0, "objects.users.count", 3)),
            },
            IDS,
        )


def test_no_rows_make_an_empty_typed_frame():
    combined = combine_sources({"events": rows()}, IDS)
    assert combined.empty and list(combined.columns) == ["metric_id", "hour", "value"]
