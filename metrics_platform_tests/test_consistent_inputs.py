"""One consistent snapshot per step: the hourly values of an hour never combine one source's rows
from before another run's writes with another source's rows from after them. Against a real
Postgres, with a writer committing between the step's two loads."""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest

from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.metrics.assets import build_hourly_values
from metrics_platform.defs.partitions import hourly_partitions
from metrics_platform.lib.database import connect
from metrics_platform.lib.postgres_io import PostgresPandasIOManager
from metrics_platform_tests.conftest import SOURCE_HOURS, execute, query

A, B = dg.AssetKey(["raw", "source_a"]), dg.AssetKey(["raw", "source_b"])
HOUR = "2026-03-10-05:00"
HOUR_METADATA = {"partition_expr": "hour"}


def raw_table(key: dg.AssetKey, metric: str) -> str:
    return f"""CREATE TABLE raw.{key.path[-1]} (hour timestamptz, metric text, value float8,
                                              PRIMARY KEY (metric, hour));
               INSERT INTO raw.{key.path[-1]} VALUES ('2026-03-10 05:00+00', '{metric}', 1);"""


# Reading `raw.source_a` waits, after reading its rows, until the test lets it finish: the
# moment another run commits new rows of both sources, between the step's two loads.
GATED_A = """
    CREATE TABLE raw.source_a_rows (hour timestamptz, metric text, value float8,
                                    PRIMARY KEY (metric, hour));
    INSERT INTO raw.source_a_rows VALUES ('2026-03-10 05:00+00', 'a.value', 1);
    CREATE FUNCTION raw.gate() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_lock_shared(4242);
        PERFORM pg_advisory_unlock_shared(4242);
        RETURN true;
    END $$;
    CREATE VIEW raw.source_a AS
        SELECT hour, metric, value FROM raw.source_a_rows WHERE raw.gate();
"""


def test_a_write_between_two_loads_of_a_step_is_not_seen_by_the_second(store_url):
    execute(
        store_url,
        "CREATE SCHEMA raw;"
        + GATED_A
        + raw_table(B, "b.value")
        + "INSERT INTO metrics.metric (name, aggregation, source) "
        "VALUES ('a.value', 'sum', 'a'), ('b.value', 'sum', 'b');",
    )
    gate = connect(store_url)
    gate.autocommit = True
    with gate.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(4242)")

    sources = [
        dg.AssetSpec(key, partitions_def=hourly_partitions, metadata=HOUR_METADATA)
        for key in (A, B)
    ]
    result = {}

    def run():
        with dg.instance_for_test() as instance:
            result["run"] = dg.materialize(
                [*sources, build_hourly_values([A, B])],
                selection=[dg.AssetKey(["metrics", "hourly_values"])],
                instance=instance,
                partition_key=HOUR,
                resources={
                    "io_manager": PostgresPandasIOManager(url=store_url),
                    "metric_store": MetricStore(url=store_url),
                },
            )

    step = threading.Thread(target=run)
    step.start()
    try:
        deadline = time.monotonic() + 120
        while not waiting_for_a_lock(store_url):
            assert step.is_alive() and time.monotonic() < deadline, "the step never read A"
            time.sleep(0.2)
        # Another run writes version 2 of both sources, then the step goes on to read B.
        execute(
            store_url,
            "UPDATE raw.source_a_rows SET value = 2; UPDATE raw.source_b SET value = 2",
        )
        with gate.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(4242)")
    finally:
        gate.close()
        step.join(timeout=120)
    assert result["run"].success
    # Both sources as they were when the step began reading: never a 1 with a 2.
    values = query(store_url, f"SELECT metric, value FROM {SOURCE_HOURS} ORDER BY 1")
    assert values == [("a.value", 1.0), ("b.value", 1.0)]
    # The snapshot ended with the step: no transaction of the IO manager is left open.
    assert not query(
        store_url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'metrics_platform io_manager' "
        "AND state LIKE 'idle in transaction%%'",
    )


def waiting_for_a_lock(url: str) -> bool:
    return bool(
        query(
            url,
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND application_name = 'metrics_platform io_manager'",
        )
    )


@pytest.mark.parametrize("fails", [False, True])
def test_a_step_that_loads_and_ends_leaves_no_open_snapshot(store_url, fails):
    execute(
        store_url,
        "CREATE SCHEMA raw;"
        + raw_table(A, "a.value")
        + "INSERT INTO metrics.metric (name, aggregation, source) VALUES ('a.value', 'sum', 'a');",
    )

    @dg.asset(
        partitions_def=hourly_partitions,
        ins={"a": dg.AssetIn(key=A)},
        metadata={"partition_expr": "hour"},
        key=["scratch", "copied"],
    )
    def copied(a):
        if fails:
            raise RuntimeError("the step fails after loading its input")
        return a

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [dg.AssetSpec(A, partitions_def=hourly_partitions, metadata=HOUR_METADATA), copied],
            selection=[copied.key],
            instance=instance,
            partition_key=HOUR,
            resources={"io_manager": PostgresPandasIOManager(url=store_url)},
            raise_on_error=False,
        )
    assert result.success is not fails
    assert not query(
        store_url,
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'metrics_platform io_manager'",
    )
