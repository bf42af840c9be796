"""One job over a range of partitions, in one run, in this process; prints what it measured.

    python -m benchmarks.backfill JOB RANGE_START RANGE_END PARTITIONS [--profile FILE]

Run by `benchmarks.run` in a child process, so that the peak memory is the run's own. The
environment names the databases, the settings file and DAGSTER_HOME (whose dagster.yaml points
Dagster's run and event storage at Postgres). The last line of stdout is a JSON report.

Time is split into the time spent inside the assets' own code (the compute functions, including
their source queries), inside the IO manager (loading inputs, writing outputs) and the rest,
which is Dagster's own bookkeeping: planning, events, storage writes, materialization records.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import resource
import sys
import time

STARTED = time.perf_counter()


class Timers:
    compute = 0.0
    made = 0.0  # making pieces of outputs written piece by piece (during their writes)
    writing = False
    io_load = 0.0
    io_write = 0.0
    rows_written = 0
    rows_loaded = 0
    writes: dict = {}  # asset -> [rows, seconds]


def _install_timers() -> None:
    """Wrap the two places Dagster hands control to user code: the op compute function and the
    IO manager. Everything else inside the run is Dagster's."""
    import pandas as pd
    from dagster._core.execution.plan import compute_generator
    from dagster._core.storage.db_io_manager import DbIOManager

    from metrics_platform.lib.postgres_io.pieces import FramePieces, StoredWindow

    real_invoke = compute_generator.invoke_compute_fn

    def timed_generator(gen):
        while True:
            start = time.perf_counter()
            try:
                item = next(gen)
            except StopIteration:
                Timers.compute += time.perf_counter() - start
                return
            Timers.compute += time.perf_counter() - start
            yield item

    def invoke(*args, **kwargs):
        start = time.perf_counter()
        result = real_invoke(*args, **kwargs)
        Timers.compute += time.perf_counter() - start
        return timed_generator(result) if inspect.isgenerator(result) else result

    compute_generator.invoke_compute_fn = invoke

    real_handle, real_load = DbIOManager.handle_output, DbIOManager.load_input
    real_read = StoredWindow.read

    def read(self, start, end, where=None):
        began = time.perf_counter()
        frame = real_read(self, start, end, where)
        seconds = time.perf_counter() - began
        Timers.io_load += seconds
        # Not the asset's time: inside a piece's making while its output is written, else
        # inside the compute function.
        if Timers.writing:
            Timers.made -= seconds
        else:
            Timers.compute -= seconds
        Timers.rows_loaded += len(frame)
        return frame

    def made(pieces, rows: list):
        # An output written piece by piece makes each piece while the IO manager writes: the
        # making is the asset's time (its reads the IO manager's load time), not the write's.
        iterator = iter(pieces)
        while True:
            began = time.perf_counter()
            try:
                start, end, frame = next(iterator)
            except StopIteration:
                Timers.made += time.perf_counter() - began
                return
            Timers.made += time.perf_counter() - began
            rows.append(len(frame))
            yield start, end, frame

    def handle_output(self, context, obj):
        start = time.perf_counter()
        rows: list[int] = []
        if isinstance(obj, FramePieces):
            obj = dataclasses.replace(obj, pieces=made(obj.pieces, rows))
        elif isinstance(obj, pd.DataFrame):
            rows.append(len(obj))
        before, loaded = Timers.made, Timers.io_load
        Timers.writing = True
        try:
            return real_handle(self, context, obj)
        finally:
            Timers.writing = False
            making = Timers.made - before
            # The pieces' reads are load time (timed as they happen), not the write's.
            reads = Timers.io_load - loaded
            seconds = time.perf_counter() - start - making - reads
            Timers.compute += max(making, 0.0)
            Timers.io_write += seconds
            Timers.rows_written += sum(rows)
            asset = Timers.writes.setdefault(context.asset_key.to_user_string(), [0, 0.0])
            asset[0] += sum(rows)
            asset[1] += seconds

    def load_input(self, context):
        start = time.perf_counter()
        obj = real_load(self, context)  # a StoredWindow's reads are timed as they happen
        Timers.io_load += time.perf_counter() - start
        if isinstance(obj, pd.DataFrame):
            Timers.rows_loaded += len(obj)
        return obj

    DbIOManager.handle_output, DbIOManager.load_input = handle_output, load_input
    StoredWindow.read = read


def _event_counts(url: str, run_id: str) -> dict[str, int]:
    from metrics_platform.lib.database import connect

    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT coalesce(dagster_event_type, 'log'), count(*) FROM event_logs "
                "WHERE run_id = %s GROUP BY 1",
                (run_id,),
            )
            return dict(cur.fetchall())
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("job")
    parser.add_argument("range_start")
    parser.add_argument("range_end")
    parser.add_argument("partitions", type=int)
    parser.add_argument("--profile", help="write a pyinstrument HTML profile of the run here")
    args = parser.parse_args(argv)

    _install_timers()

    import dagster as dg

    from metrics_platform.definitions import defs
    from metrics_platform.lib.database import DATABASE_URL_ENV
    from metrics_platform.lib.in_process import execute_job_in_process

    job = defs.resolve_job_def(args.job)
    instance = dg.DagsterInstance.get()
    loaded = time.perf_counter()

    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.005)
        profiler.start()
    run_start = time.perf_counter()
    # As `metrics-platform materialize` runs it: no output kept in memory once it is written.
    result = execute_job_in_process(
        job,
        instance=instance,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        tags={
            "dagster/asset_partition_range_start": args.range_start,
            "dagster/asset_partition_range_end": args.range_end,
        },
        raise_on_error=False,
    )
    run_seconds = time.perf_counter() - run_start
    if profiler is not None:
        profiler.stop()
        with open(args.profile, "w") as out:
            out.write(profiler.output_html())
        with open(args.profile + ".txt", "w") as out:
            out.write(profiler.output_text(unicode=False, color=False, show_all=True))

    failures = [
        event.event_specific_data.error.message
        for event in result.all_events
        if event.is_step_failure and event.event_specific_data is not None
    ]
    events = _event_counts(os.environ[DATABASE_URL_ENV], result.run_id)
    report = {
        "job": args.job,
        "success": result.success,
        "failures": failures,
        "partitions": args.partitions,
        "setup_seconds": loaded - STARTED,
        "run_seconds": run_seconds,
        "compute_seconds": Timers.compute,
        "io_load_seconds": Timers.io_load,
        "io_write_seconds": Timers.io_write,
        "rows_written": Timers.rows_written,
        "rows_loaded": Timers.rows_loaded,
        "writes": Timers.writes,
        "events": events,
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "process_seconds": time.perf_counter() - STARTED,
    }
    sys.stdout.flush()
    print(json.dumps(report))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
