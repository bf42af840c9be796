"""The late-rows sensor against a real product database and metric store, evaluated with its
cursor: a late row is recounted in its own hour and every later hour the source has landed, in
one range run."""

import json
from datetime import datetime, timezone

import dagster as dg

from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.sources.product_db.resource import CountedTable, ProductDatabase
from metrics_platform.defs.sources.product_db.sensors import product_db_late_rows
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform_tests.conftest import execute

TABLES = [
    CountedTable(table=t, created_at_column="created_at", id_column="id")
    for t in ("users", "api_keys")
]
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def landed(store_url, first: str, last: str):
    """The row-count source's table as if it had landed the hours first..last."""
    execute(
        store_url,
        """CREATE SCHEMA IF NOT EXISTS raw;
           CREATE TABLE IF NOT EXISTS raw.product_db_row_counts
               (hour timestamptz, metric text, value float8, PRIMARY KEY (metric, hour));
           INSERT INTO raw.product_db_row_counts
           SELECT h, 'objects.users.count', 1
           FROM generate_series(%s::timestamptz, %s::timestamptz, '1 hour') h""",
        (first, last),
    )


def tick(product_url, store_url, cursor):
    resource = ProductDatabase(url=product_url, tables=TABLES)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor)
        return product_db_late_rows(
            context, product_db=resource, metric_store=MetricStore(url=store_url)
        )


def test_late_rows_request_their_hours_and_every_later_one_and_move_the_cursor(
    product_url, store_url
):
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=2, users=50
    )
    landed(store_url, "2026-03-10 00:00+00", "2026-03-11 23:00+00")
    first = tick(product_url, store_url, None)
    assert not first.run_requests and "first look" in first.skip_reason.skip_message
    ids = json.loads(first.cursor)
    assert set(ids) == {"users", "api_keys"} and ids["users"] == 50

    again = tick(product_url, store_url, first.cursor)
    assert not again.run_requests and again.cursor == first.cursor

    # Two rows arrive late, for two different past hours: one range run, from the first late
    # hour to the last hour the source landed (a row counts in every hour after its own).
    execute(
        product_url,
        "INSERT INTO users (email, created_at) VALUES "
        "('late1@x', '2026-03-10 05:20+00'), ('late2@x', '2026-03-10 08:59+00')",
    )
    late = tick(product_url, store_url, first.cursor)
    [request] = late.run_requests
    assert [request.tags[tag] for tag in RANGE_TAGS] == ["2026-03-10-05:00", "2026-03-11-23:00"]
    assert json.loads(late.cursor)["users"] == 52
    # Evaluated again with the new cursor, nothing more is asked.
    assert not tick(product_url, store_url, late.cursor).run_requests


def first_look(product_url, store_url, first: str, last: str) -> str:
    """The sensor's cursor after its first tick, on a small demo database whose row counts
    landed for the hours first..last."""
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=2, users=10
    )
    landed(store_url, first, last)
    return tick(product_url, store_url, None).cursor


def test_a_late_row_in_the_latest_landed_hour_is_one_partition(product_url, store_url):
    cursor = first_look(product_url, store_url, "2026-03-11 00:00+00", "2026-03-11 13:00+00")
    execute(
        product_url, "INSERT INTO api_keys (user_id, created_at) VALUES (1, '2026-03-11 13:05+00')"
    )
    [request] = tick(product_url, store_url, cursor).run_requests
    assert request.partition_key == "2026-03-11-13:00"
    assert request.run_key.startswith("late-rows:")


def test_late_rows_for_hours_not_landed_yet_wait_for_the_schedule(product_url, store_url):
    cursor = first_look(product_url, store_url, "2026-03-10 00:00+00", "2026-03-10 10:00+00")
    execute(
        product_url,
        "INSERT INTO users (email, created_at) VALUES ('late@x', '2026-03-11 02:00+00')",
    )
    result = tick(product_url, store_url, cursor)
    assert not result.run_requests
    assert json.loads(result.cursor)["users"] == 11
