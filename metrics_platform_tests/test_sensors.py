"""The late-rows sensor against a real product database, evaluated with its cursor."""

import json
from datetime import datetime, timezone

import dagster as dg

from metrics_platform.defs.sources.product_db.resource import CountedTable, ProductDatabase
from metrics_platform.defs.sources.product_db.sensors import product_db_late_rows
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform_tests.conftest import execute

TABLES = [
    CountedTable(table=t, created_at_column="created_at", id_column="id")
    for t in ("users", "api_keys")
]


def tick(product_url, cursor):
    resource = ProductDatabase(url=product_url, tables=TABLES)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, cursor=cursor)
        return product_db_late_rows(context, product_db=resource)


def test_late_rows_request_their_hours_and_move_the_cursor(product_url):
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=2, users=50
    )
    first = tick(product_url, None)
    assert not first.run_requests and "first look" in first.skip_reason.skip_message
    ids = json.loads(first.cursor)
    assert set(ids) == {"users", "api_keys"} and ids["users"] == 50

    again = tick(product_url, first.cursor)
    assert not again.run_requests and again.cursor == first.cursor

    # Two rows arrive late, for two different past hours.
    execute(
        product_url,
        "INSERT INTO users (email, created_at) VALUES "
        "('late1@x', '2026-03-10 05:20+00'), ('late2@x', '2026-03-10 08:59+00')",
    )
    late = tick(product_url, first.cursor)
    [request] = late.run_requests
    assert request.tags["dagster/asset_partition_range_start"] == "2026-03-10-05:00"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-03-10-08:00"
    assert json.loads(late.cursor)["users"] == 52
    # Evaluated again with the new cursor, nothing more is asked.
    assert not tick(product_url, late.cursor).run_requests


def test_a_single_late_hour_is_one_partition(product_url):
    seed_product_database(
        product_url, now=datetime(2026, 3, 12, tzinfo=timezone.utc), days=2, users=10
    )
    cursor = tick(product_url, None).cursor
    execute(
        product_url, "INSERT INTO api_keys (user_id, created_at) VALUES (1, '2026-03-11 13:05+00')"
    )
    [request] = tick(product_url, cursor).run_requests
    assert request.partition_key == "2026-03-11-13:00"
    assert request.run_key.startswith("late-rows:")
