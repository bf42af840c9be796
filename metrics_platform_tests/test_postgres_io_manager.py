"""The Postgres IO manager against a real Postgres: partition-exact, idempotent, atomic writes."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from metrics_platform.defs.metadata import raw_table_schema
from metrics_platform.lib.postgres_io import PostgresPandasIOManager
from metrics_platform.lib.postgres_io.kept_values import ALLOW_FEWER_VALUES_TAG
from metrics_platform.lib.postgres_io.pandas_type_handler import in_key_order
from metrics_platform_tests import io_assets
from metrics_platform_tests.conftest import query

HOUR = "2026-03-10-05:00"
RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
REPO = Path(__file__).resolve().parent.parent


def run(
    url,
    assets,
    *,
    partition_key=None,
    partition_range=None,
    config=None,
    raise_on_error=True,
    tags=None,
    instance=None,
):
    tags = {**(dict(zip(RANGE_TAGS, partition_range)) if partition_range else {}), **(tags or {})}
    run_config = {"ops": {"test_io__values": {"config": config}}} if config else None
    with contextlib.nullcontext(instance) if instance else dg.instance_for_test() as instance:
        return dg.materialize(
            assets,
            instance=instance,
            resources={"io_manager": PostgresPandasIOManager(url=url, migrate_store=False)},
            partition_key=partition_key,
            tags=tags,
            run_config=run_config,
            raise_on_error=raise_on_error,
        )


def table(url, name="test_io.values"):
    return query(url, f"SELECT hour, metric, value FROM {name} ORDER BY hour, metric")


def test_materializing_a_partition_twice_gives_the_same_table(store_url):
    run(store_url, [io_assets.values], partition_key=HOUR)
    first = table(store_url)
    result = run(store_url, [io_assets.values], partition_key=HOUR)
    assert table(store_url) == first
    assert len(first) == len(io_assets.METRICS)
    metadata = result.asset_materializations_for_node("test_io__values")[0].metadata
    assert metadata["dagster/partition_row_count"].value == len(first)
    assert metadata["rows_written"].value == len(first)
    assert "| beta     |" in metadata["preview"].value
    # The asset declares its columns: they are not repeated on every materialization.
    assert "dagster/column_schema" not in metadata


def test_writing_an_hour_replaces_exactly_that_hour(store_url):
    run(store_url, [io_assets.values], partition_range=("2026-03-10-04:00", "2026-03-10-06:00"))
    before = {(h.isoformat(), m): v for h, m, v in table(store_url)}
    # Version 2 of hour 05:00 reports only one metric. Storing fewer values than the hour holds
    # is refused, unless the run allows it explicitly: then the other two disappear from it.
    refused = run(
        store_url,
        [io_assets.values],
        partition_key=HOUR,
        config={"version": 2, "metrics": ["alpha"]},
        raise_on_error=False,
    )
    assert not refused.success
    assert {(h.isoformat(), m): v for h, m, v in table(store_url)} == before
    run(
        store_url,
        [io_assets.values],
        partition_key=HOUR,
        config={"version": 2, "metrics": ["alpha"]},
        tags={ALLOW_FEWER_VALUES_TAG: "true"},
    )
    after = {(h.isoformat(), m): v for h, m, v in table(store_url)}

    untouched = {k: v for k, v in before.items() if not k[0].startswith("2026-03-10T05")}
    assert {k: v for k, v in after.items() if not k[0].startswith("2026-03-10T05")} == untouched
    assert {k: v for k, v in after.items() if k[0].startswith("2026-03-10T05")} == {
        ("2026-03-10T05:00:00+00:00", "alpha"): 2005.0
    }


def test_a_range_write_equals_single_writes(store_url, postgres_server):
    from metrics_platform_tests.conftest import new_database

    single_url = new_database(postgres_server, "single")
    hours = pd.date_range("2026-03-09 00:00", periods=48, freq="h", tz="UTC")
    run(
        store_url,
        [io_assets.values],
        partition_range=(hours[0].strftime("%Y-%m-%d-%H:%M"), hours[-1].strftime("%Y-%m-%d-%H:%M")),
    )
    with dg.instance_for_test() as instance:
        for hour in hours:
            run(
                single_url,
                [io_assets.values],
                partition_key=hour.strftime("%Y-%m-%d-%H:%M"),
                instance=instance,
            )
    assert table(store_url) == table(single_url)
    assert len(table(store_url)) == 48 * len(io_assets.METRICS)


def test_a_daily_partition_loads_exactly_its_24_hours(store_url):
    run(store_url, [io_assets.values], partition_range=("2026-03-09-00:00", "2026-03-11-23:00"))
    io_assets.loaded_windows.clear()
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [io_assets.values, io_assets.daily],
            selection=[io_assets.DAILY_KEY],
            instance=instance,
            resources={"io_manager": PostgresPandasIOManager(url=store_url, migrate_store=False)},
            partition_key="2026-03-10",
        )
    # An asset that declares no columns gets the schema of its frame on each materialization.
    schema = result.asset_materializations_for_node("test_io__daily")[0].metadata[
        "dagster/column_schema"
    ]
    assert sorted((c.name, c.type) for c in schema.schema.columns) == [
        ("day", "date"),
        ("metric", "text"),
        ("value", "double precision"),
    ]
    loaded = io_assets.loaded_windows[-1]
    hours = sorted(loaded["hour"].unique())
    assert len(hours) == 24
    assert hours[0] == pd.Timestamp("2026-03-10 00:00", tz="UTC")
    assert hours[-1] == pd.Timestamp("2026-03-10 23:00", tz="UTC")
    assert isinstance(loaded["hour"].dtype, pd.DatetimeTZDtype)
    days = query(store_url, "SELECT DISTINCT day FROM test_io.daily")
    assert [str(d[0]) for d in days] == ["2026-03-10"]


@pytest.mark.parametrize(
    "config, expected",
    [
        ({"outside_window": True}, ["fall outside the partition being written"]),
        (
            {"repeat_a_key": True},
            [
                "test_io.values: the output has more than one row for a key",
                "(metric, hour)=(alpha, 2026-03-10 05:00:00+00)",
            ],
        ),
        (
            {"extra_column": True},
            ["test_io.values: the output's columns", "are not the declared"],
        ),
    ],
    ids=["rows outside the partition", "a key repeated", "an undeclared column"],
)
def test_a_bad_output_is_refused_and_nothing_changes(store_url, config, expected):
    run(store_url, [io_assets.values], partition_key=HOUR)
    before = table(store_url)
    result = run(
        store_url,
        [io_assets.values],
        partition_key=HOUR,
        config={"version": 3, **config},
        raise_on_error=False,
    )
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error
    messages = [error.message] + ([error.cause.message] if error.cause else [])
    assert any(all(part in m for part in expected) for m in messages), messages
    assert table(store_url) == before


KILL_SCRIPT = r"""
import sys, time, io
from pathlib import Path
import dagster as dg
from metrics_platform.lib.postgres_io import pandas_type_handler
from metrics_platform.defs.metadata import raw_table_schema
from metrics_platform.lib.postgres_io import PostgresPandasIOManager
from metrics_platform.lib.postgres_io.kept_values import ALLOW_FEWER_VALUES_TAG
from metrics_platform.lib.postgres_io.pandas_type_handler import in_key_order
from metrics_platform_tests import io_assets

marker = Path(sys.argv[2])
real_copy_csv = pandas_type_handler._copy_csv

class SlowStream(io.StringIO):
    # Hands COPY half of the rows, says so, then stalls until the process is killed.
    def __init__(self, text):
        super().__init__(text)
        self.limit = len(text) // 2
    def read(self, size=-1):
        if self.tell() >= self.limit:
            marker.write_text("copying")
            time.sleep(600)
        return super().read(min(size, 65536) if size and size > 0 else 65536)
    readline = read

pandas_type_handler._copy_csv = lambda frame: SlowStream(real_copy_csv(frame).getvalue())
with dg.instance_for_test() as instance:
    dg.materialize([io_assets.values], instance=instance,
        resources={"io_manager": PostgresPandasIOManager(url=sys.argv[1], migrate_store=False)},
        partition_key=sys.argv[3],
        run_config={"ops": {"test_io__values": {"config": {"version": 9, "rows_per_hour": 20000}}}})
"""


def test_a_write_killed_during_copy_leaves_the_previous_state(store_url, tmp_path):
    run(store_url, [io_assets.values], partition_range=("2026-03-10-04:00", "2026-03-10-06:00"))
    before = table(store_url)
    marker = tmp_path / "copying"
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, store_url, str(marker), HOUR],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the writer exited before the COPY was under way"
            assert time.monotonic() < deadline, "the COPY never started"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    # The server rolls the killed transaction back: the old rows, and nothing else.
    assert table(store_url) == before
    # Its lock is gone too: the next write of the same hour goes through.
    run(store_url, [io_assets.values], partition_key=HOUR, config={"version": 4})
    assert {v for h, m, v in table(store_url) if h.hour == 5} == {4005.0, 4006.0, 4007.0}


def test_a_first_write_without_rows_creates_the_declared_column_types(store_url):
    # An empty frame has no dtypes to go by (its hours are plain objects): the new table takes
    # the types the asset declares, so the hours that come later are timestamps, not text.
    @dg.asset(
        key=dg.AssetKey(["test_io", "empty_first"]),
        partitions_def=io_assets.hourly_partitions,
        metadata={
            "partition_expr": "hour",
            "primary_key": ["metric", "hour"],
            "dagster/column_schema": raw_table_schema("hour"),
        },
    )
    def empty_first(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return pd.DataFrame({"hour": [], "metric": [], "value": []})

    run(store_url, [empty_first], partition_key=HOUR)
    types = query(
        store_url,
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'test_io' AND table_name = 'empty_first' ORDER BY column_name",
    )
    assert types == [
        ("hour", "timestamp with time zone"),
        ("metric", "text"),
        ("value", "double precision"),
    ]


def test_rows_are_copied_in_the_order_of_the_table_s_key():
    """A b-tree takes rows fastest in its own order: the frame is sorted by the key before its
    `COPY`, unless it is in order already (then it is not copied) or its key cannot be sorted."""
    hours = pd.date_range("2026-03-10", periods=3, freq="h", tz="UTC")
    by_hour = pd.DataFrame(
        {"metric_id": [2, 1] * 3, "hour": hours.repeat(2), "value": [0.5, -0.0, 1.0, 2.0, 3, 4]}
    )
    ordered = in_key_order(by_hour, ["metric_id", "hour"])
    assert ordered[["metric_id", "hour"]].values.tolist() == [
        [1, hours[0]], [1, hours[1]], [1, hours[2]], [2, hours[0]], [2, hours[1]], [2, hours[2]]
    ]  # fmt: skip
    assert sorted(map(tuple, ordered.values.tolist())) == sorted(
        map(tuple, by_hour.values.tolist())
    )
    assert in_key_order(by_hour, ["hour", "metric_id"]).equals(
        by_hour.sort_values(["hour", "metric_id"], ignore_index=True)
    )
    raw = pd.DataFrame({"hour": hours.repeat(2), "metric": ["a.count", "b.count"] * 3})
    assert in_key_order(raw, ["hour", "metric"]) is raw  # in order: left as it is
    mixed = pd.DataFrame({"hour": [hours[1], hours[0]], "metric": ["a", 1]})
    assert in_key_order(mixed, ["metric", "hour"]) is mixed  # not comparable: the table's to say
    assert in_key_order(by_hour, []) is by_hour and in_key_order(by_hour, ["day"]) is by_hour
