"""Windows written and read piece by piece: one transaction over every piece, each piece checked
against what the store holds, inputs read by sub-window in the step's snapshot; and the hourly
values of a long range computed a piece of hours at a time, with the same result and checks as
one piece."""

from datetime import datetime, timedelta, timezone

import dagster as dg
import pandas as pd

from metrics_platform.defs.metrics.assets import COMPLETE, HOURLY_VALUES_KEY
from metrics_platform.defs.partitions import hourly_partitions, single_run
from metrics_platform.defs.sources.events.assets import HOURLY_KEY as EVENTS_KEY
from metrics_platform.lib.chunks import PIECE_ROWS_ENV, sub_windows
from metrics_platform.lib.demo_data import DEMO_SCHEMA_SQL
from metrics_platform.lib.postgres_io import PostgresPandasIOManager
from metrics_platform.lib.postgres_io.pieces import FramePieces, StoredWindow
from metrics_platform_tests.conftest import execute, materialize, platform_resources, query
from metrics_platform_tests.io_assets import VALUES_KEY, ValuesConfig, values_frame

RANGE = ("2026-03-01-00:00", "2026-03-09-23:00")  # nine days: two pieces of hours
START = datetime(2026, 3, 1, tzinfo=timezone.utc)
END = START + timedelta(days=9)
WEEK = 7 * 24  # the pieces of these assets
TAGS = dict(
    zip(("dagster/asset_partition_range_start", "dagster/asset_partition_range_end"), RANGE)
)
made: list[tuple] = []


class PiecesConfig(dg.Config):
    metrics: list[str] = ["alpha", "beta"]
    fail_in_piece: int = -1  # raise while making this piece
    alpha_only_in_piece: int = -1  # this piece reports `alpha` alone
    outside_in_piece: int = -1  # give this piece a row of the next piece


@dg.asset(
    key=VALUES_KEY,
    partitions_def=hourly_partitions,
    backfill_policy=single_run,
    metadata={"partition_expr": "hour", "primary_key": ["metric", "hour"]},
)
def values_in_pieces(context: dg.AssetExecutionContext, config: PiecesConfig):
    window = context.partition_time_window

    def pieces():
        for index, (start, end) in enumerate(sub_windows(window.start, window.end, WEEK)):
            if index == config.fail_in_piece:
                raise RuntimeError(f"piece {index} could not be made")
            made.append((start, end))
            metrics = ["alpha"] if index == config.alpha_only_in_piece else config.metrics
            frame = values_frame(start, end, ValuesConfig(metrics=metrics))
            if index == config.outside_in_piece:
                frame = pd.concat(
                    [frame, values_frame(end, end + timedelta(hours=1), ValuesConfig())]
                )
            yield start, end, frame

    return dg.Output(
        FramePieces(pieces(), metadata=lambda: {"pieces_made": dg.MetadataValue.int(len(made))})
    )


class CopiesConfig(dg.Config):
    only: list[str] = []  # read only the rows of these values of `column`
    column: str = "metric"


@dg.asset(
    key=dg.AssetKey(["test_io", "copies"]),
    partitions_def=hourly_partitions,
    backfill_policy=single_run,
    ins={"values": dg.AssetIn(key=VALUES_KEY)},
    metadata={"partition_expr": "hour", "primary_key": ["metric", "hour"]},
)
def copies(context: dg.AssetExecutionContext, values: StoredWindow, config: CopiesConfig):
    read = []
    where = {config.column: config.only} if config.only else None

    def pieces():
        for start, end in sub_windows(values.start, values.end, WEEK):
            frame = values.read(start, end, where=where)
            read.append(len(frame))
            yield start, end, frame.assign(value=frame["value"] * 2)

    yield dg.Output(FramePieces(pieces(), metadata=lambda: {"pieces_read": len(read)}))


def run(url, assets, config=None, raise_on_error=True):
    with dg.instance_for_test() as instance:
        return dg.materialize(
            assets,
            instance=instance,
            resources={"io_manager": PostgresPandasIOManager(url=url, migrate_store=False)},
            tags=TAGS,
            run_config={"ops": {"test_io__values": {"config": config}}} if config else None,
            raise_on_error=raise_on_error,
        )


def stored(url, table="test_io.values"):
    return query(url, f"SELECT hour, metric, value FROM {table} ORDER BY hour, metric")


def test_pieces_are_written_as_one_window(store_url):
    made.clear()
    result = run(store_url, [values_in_pieces])
    assert made == sub_windows(START, END, WEEK) and len(made) == 2
    rows = stored(store_url)
    expected = values_frame(START, END, ValuesConfig(metrics=["alpha", "beta"]))
    assert len(rows) == len(expected) == 9 * 24 * 2
    assert {(h, m) for h, m, _ in rows} == set(zip(expected["hour"], expected["metric"]))
    metadata = result.asset_materializations_for_node("test_io__values")[-1].metadata
    assert metadata["rows_written"].value == metadata["dagster/partition_row_count"].value == 432
    assert metadata["pieces_made"].value == 2
    assert "| alpha" in metadata["preview"].value


def error_of(result) -> str:
    return str(result.get_step_failure_events()[0].event_specific_data.error)


def test_a_piece_that_fails_or_would_lose_values_rolls_every_piece_back(store_url):
    run(store_url, [values_in_pieces])
    before = stored(store_url)
    # The first piece adds `gamma`, the second would lose `beta`: refused, and the first
    # piece's rewrite with it.
    refused = run(
        store_url,
        [values_in_pieces],
        config={"metrics": ["alpha", "beta", "gamma"], "alpha_only_in_piece": 1},
        raise_on_error=False,
    )
    assert not refused.success
    assert "would remove" in error_of(refused) and "2026-03-08" in error_of(refused)
    assert stored(store_url) == before
    broken = run(
        store_url,
        [values_in_pieces],
        config={"metrics": ["alpha", "beta", "gamma"], "fail_in_piece": 1},
        raise_on_error=False,
    )
    assert not broken.success
    assert "piece 1 could not be made" in error_of(broken)
    assert stored(store_url) == before
    assert run(store_url, [values_in_pieces], config={"metrics": ["alpha", "beta", "gamma"]})
    assert len(stored(store_url)) == 9 * 24 * 3


def test_a_piece_with_a_row_outside_its_sub_window_is_refused(store_url):
    failed = run(
        store_url, [values_in_pieces], config={"outside_in_piece": 0}, raise_on_error=False
    )
    assert not failed.success
    assert "outside" in error_of(failed)
    assert query(store_url, "SELECT to_regclass('test_io.values')") == [(None,)]


def test_an_input_is_read_piece_by_piece(store_url):
    run(store_url, [values_in_pieces])
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [values_in_pieces, copies],
            selection=[copies],
            instance=instance,
            resources={"io_manager": PostgresPandasIOManager(url=store_url, migrate_store=False)},
            tags=TAGS,
        )
    metadata = result.asset_materializations_for_node("test_io__copies")[-1].metadata
    assert metadata["pieces_read"].value == 2
    originals = {(h, m): v for h, m, v in stored(store_url)}
    doubled = {(h, m): v for h, m, v in stored(store_url, "test_io.copies")}
    assert doubled == {key: value * 2 for key, value in originals.items()}
    # The step's snapshot ended with its output.
    assert query(
        store_url,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
        "'metrics_platform io_manager' AND state LIKE 'idle in transaction%%'",
    ) == [(0,)]


def copy_of(store_url, **config):
    with dg.instance_for_test() as instance:
        return dg.materialize(
            [values_in_pieces, copies],
            selection=[copies],
            instance=instance,
            resources={"io_manager": PostgresPandasIOManager(url=store_url, migrate_store=False)},
            tags=TAGS,
            run_config={"ops": {"test_io__copies": {"config": config}}},
            raise_on_error=False,
        )


def test_an_input_read_by_sub_window_can_keep_only_some_values_of_a_column(store_url):
    run(store_url, [values_in_pieces])
    assert copy_of(store_url, only=["beta"]).success
    originals = {(h, m): v for h, m, v in stored(store_url)}
    doubled = {(h, m): v for h, m, v in stored(store_url, "test_io.copies")}
    assert doubled == {(h, m): v * 2 for (h, m), v in originals.items() if m == "beta"}
    assert len(doubled) == 9 * 24

    failed = copy_of(store_url, only=["beta"], column="no_such_column")
    assert not failed.success
    assert "test_io.values has no column no_such_column" in error_of(failed)


def test_a_frame_in_memory_is_read_by_sub_window_the_same_way():
    frame = values_frame(START, END, ValuesConfig(metrics=["alpha", "beta"]))
    window = StoredWindow.of_frame(frame, "hour", START, END)
    piece = window.read(START, START + timedelta(days=1), where={"metric": ["alpha"]})
    assert set(piece["metric"]) == {"alpha"} and len(piece) == 24
    assert len(window.read(START, START + timedelta(days=1))) == 48


def test_a_long_range_of_hourly_values_is_computed_in_pieces_like_one(
    store_url, product_url, monkeypatch
):
    """Nine days of events through the hourly values, as one range (pieces of a day, the
    smallest) and as two runs of one piece each: the same rows."""
    execute(product_url, DEMO_SCHEMA_SQL)
    execute(
        product_url,
        "INSERT INTO events (type, occurred_at, duration_ms, failed) "
        "SELECT CASE WHEN i %% 3 = 0 THEN 'signup' ELSE 'api call' END, "
        "%s::timestamptz + i * interval '37 minutes', i %% 50, i %% 7 = 0 "
        "FROM generate_series(0, 340) AS i",
        (START,),
    )
    resources = platform_resources(store_url, product_url)
    selection = dg.AssetSelection.assets(EVENTS_KEY, HOURLY_VALUES_KEY)
    monkeypatch.setenv(PIECE_ROWS_ENV, "1")
    whole = materialize(resources, selection=selection, partition_range=RANGE)
    assert whole.success
    in_range = query(
        store_url, "SELECT metric, time, value FROM metrics.hourly_values_by_name ORDER BY 1, 2"
    )
    check = whole.get_asset_check_evaluations()
    complete = next(e for e in check if e.check_name == COMPLETE)
    metadata = whole.asset_materializations_for_node("metrics__hourly_values")[-1].metadata
    assert metadata["rows_out"].value == len(in_range) == metadata["rows_written"].value
    assert metadata["incomplete_hours"].value == complete.metadata["incomplete_hours"].value

    execute(store_url, "DELETE FROM metrics.hourly_values")
    monkeypatch.delenv(PIECE_ROWS_ENV)
    for first, last in (("2026-03-01-00:00", "2026-03-07-23:00"), ("2026-03-08-00:00", RANGE[1])):
        assert materialize(
            resources,
            selection=dg.AssetSelection.assets(HOURLY_VALUES_KEY),
            partition_range=(first, last),
        ).success
    in_two_runs = query(
        store_url, "SELECT metric, time, value FROM metrics.hourly_values_by_name ORDER BY 1, 2"
    )
    assert in_range == in_two_runs
    assert complete.metadata["hours"].value == 9 * 24
