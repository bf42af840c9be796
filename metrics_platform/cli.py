"""`metrics-platform`: the project's own commands, for what Dagster's CLI cannot express.

    metrics-platform demo            embedded Postgres + a year of demo history, backfilled,
                                     + the Dagster UI (`dg dev`)
    metrics-platform demo --no-ui    the same, without starting the UI
    metrics-platform materialize --select SEL --partitions RANGE
                                     sources, then hourly values, then days, one run each;
                                     prints rows in/out per asset and each failure's cause
    metrics-platform db start|stop   the embedded Postgres alone
    metrics-platform env             print the environment the other commands set (for `eval`)
    metrics-platform migrate         bring the metric store's schema up to date

With METRICS_PLATFORM_DATABASE_URL set, the embedded database is not used: everything runs
against the configured server. Project state (embedded data, the demo's history start) lives in
METRICS_PLATFORM_HOME, by default `.metrics_platform` in the current folder; the Dagster instance
is the repository's `dagster.yaml` (DAGSTER_HOME is the repository's folder unless set).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from metrics_platform.lib.database import (
    DATABASE_URL_ENV,
    PRODUCT_DATABASE_URL_ENV,
    connect,
    redact,
    sqlalchemy_url,
)
from metrics_platform.lib.embedded_postgres import EmbeddedPostgres
from metrics_platform.lib.errors import MetricsPlatformError
from metrics_platform.lib.event_log_layout import (
    ensure_compact_layout,
    is_compact,
    restore_plain_layout,
)

HOME_ENV = "METRICS_PLATFORM_HOME"
PORT_ENV = "METRICS_PLATFORM_EMBEDDED_PORT"
# Read by defs/partitions.py: the first day of the partitions.
HISTORY_START_ENV = "METRICS_PLATFORM_HISTORY_START"
DEFAULT_PORT = 54329
STORE_DB = "metrics_platform"
DEMO_PRODUCT_DB = "product_demo"
# How far back the demo's product history goes, in days.
DEMO_HISTORY_DAYS = 365
# Where the demo remembers the first day of its history (the partitions start there).
DEMO_HISTORY_FILE = "demo_history_start"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    return Path(os.environ.get(HOME_ENV) or ".metrics_platform").resolve()


def embedded() -> EmbeddedPostgres:
    port = int(os.environ.get(PORT_ENV) or DEFAULT_PORT)
    return EmbeddedPostgres(state_dir() / "postgres", port)


def prepare_environment() -> tuple[dict[str, str], EmbeddedPostgres | None]:
    """Resolve the databases, the Dagster home and the demo's history start, and export them.

    Returns what was set, and the embedded server when no database is configured."""
    settings: dict[str, str] = {}
    server = None
    if not os.environ.get(DATABASE_URL_ENV):
        server = embedded().start()
        settings[DATABASE_URL_ENV] = server.create_database(STORE_DB)
        if not os.environ.get(PRODUCT_DATABASE_URL_ENV):
            settings[PRODUCT_DATABASE_URL_ENV] = server.create_database(DEMO_PRODUCT_DB)
    else:
        settings[DATABASE_URL_ENV] = sqlalchemy_url(os.environ[DATABASE_URL_ENV])

    if not os.environ.get("DAGSTER_HOME"):
        # The instance is the repository's dagster.yaml itself, where `dg dev` looks for it.
        settings["DAGSTER_HOME"] = str(PROJECT_ROOT)
    demo_start = state_dir() / DEMO_HISTORY_FILE
    if not os.environ.get(HISTORY_START_ENV) and demo_start.exists():
        settings[HISTORY_START_ENV] = demo_start.read_text().strip()
    os.environ.update(settings)
    return settings, server


def demo_history_start(now: datetime) -> str:
    """The first day of the demo's history: remembered from its first run (the demo database
    keeps its rows), else a year before `now`; exported for every process the demo starts."""
    if os.environ.get(HISTORY_START_ENV):
        return os.environ[HISTORY_START_ENV]
    path = state_dir() / DEMO_HISTORY_FILE
    if path.exists():
        first = path.read_text().strip()
    else:
        first = (now - timedelta(days=DEMO_HISTORY_DAYS)).date().isoformat()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(first + "\n")
    os.environ[HISTORY_START_ENV] = first
    return first


def _missing_range(instance, asset_key, partitions_def) -> tuple[str, str] | None:
    """From the partition after the latest materialized one (or the first) to the last closed
    one; None when every closed partition after the latest materialized one is there."""
    last = partitions_def.get_last_partition_key()
    if last is None:
        return None
    done = instance.get_materialized_partitions(asset_key)
    if not done:
        return partitions_def.get_first_partition_key(), last
    latest = max(done, key=lambda k: partitions_def.time_window_for_partition_key(k).start)
    following = partitions_def.get_next_partition_key(latest)
    if following is None or partitions_def.less_than(last, following):
        return None
    return following, last


def backfill_history(on_interrupt=None) -> None:
    """Materialize every hourly asset over the history that is not in yet, in one run, then
    the days, in one more run; prints how long each took. SIGINT or SIGTERM end the run under
    way (canceled), then `on_interrupt()` runs and the process exits."""
    import dagster as dg

    from metrics_platform import materialize as runs
    from metrics_platform.definitions import defs
    from metrics_platform.defs.jobs import DAILY_JOB, HOURLY_JOB
    from metrics_platform.defs.metrics.assets import DAILY_VALUES_KEY, HOURLY_VALUES_KEY
    from metrics_platform.defs.partitions import daily_partitions, hourly_partitions
    from metrics_platform.lib.in_process import execute_job_in_process

    instance = dg.DagsterInstance.get()
    invocation = runs.new_invocation()
    for name, job, key, partitions_def in (
        ("hours", HOURLY_JOB, HOURLY_VALUES_KEY, hourly_partitions),
        ("days", DAILY_JOB, DAILY_VALUES_KEY, daily_partitions),
    ):
        missing = _missing_range(instance, key, partitions_def)
        if missing is None:
            print(f"materialized {name}: up to date")
            continue
        count = len(partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(*missing)))
        began = time.monotonic()
        result = runs.run_until_signal(
            lambda job=job, missing=missing: execute_job_in_process(
                defs.resolve_job_def(job),
                run_config=runs.quiet_config(verbose=False),
                instance=instance,
                tags={
                    runs.RANGE_START_TAG: missing[0],
                    runs.RANGE_END_TAG: missing[1],
                    runs.INVOCATION_TAG: invocation,
                },
                raise_on_error=False,
            ),
            instance,
            invocation,
            on_interrupt,
        )
        took = time.monotonic() - began
        print(
            f"materialized {name}: {count:,} partitions {missing[0]}...{missing[1]} in one run "
            f"({result.run_id}), {took:.0f} s: {'succeeded' if result.success else 'FAILED'}"
        )


def print_summary(url: str) -> None:
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                """SELECT metric, count(*) AS hours, min(business_date) AS first,
                          max(time_utc) AS latest,
                          (array_agg(value ORDER BY time_utc DESC))[1] AS latest_value
                   FROM metrics.hourly_values_by_name_v2 GROUP BY metric ORDER BY metric"""
            )
            print("\nhourly values in the metric store:")
            for name, hours, first, latest, value in cur.fetchall():
                print(
                    f"  {name:<36} {hours:>5} hours, {first:%Y-%m-%d} to "
                    f"latest {latest.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC = {value:g}"
                )
            cur.execute("SELECT count(*) FROM metrics.daily_values_by_name_v2")
            print(f"daily values: {cur.fetchone()[0]} rows")
    finally:
        conn.close()


def start_sample_apis() -> None:
    """The demo's SAMPLE answers for the external APIs that have no settings, on loopback, for
    as long as this process runs (the UI's runs reach them too). Only the demo calls this:
    anywhere else, an unconfigured GA4 or Prometheus is disabled."""
    from metrics_platform.defs.sources import ga4, prometheus

    if not (os.environ.get(ga4.CREDENTIALS_FILE_ENV) or os.environ.get(ga4.ENDPOINT_ENV)):
        from metrics_platform.defs.partitions import BUSINESS_TIMEZONE
        from metrics_platform.demo.ga4_sample_server import start_sample_server

        # The sample property's days are the business days, as GA4's daily report needs.
        os.environ[ga4.ENDPOINT_ENV], _ = start_sample_server(time_zone=BUSINESS_TIMEZONE)
        print(f"Google Analytics: SAMPLE data from {os.environ[ga4.ENDPOINT_ENV]}")
    if not os.environ.get(prometheus.URL_ENV):
        from metrics_platform.demo.prometheus_sample_server import start_sample_server

        os.environ[prometheus.URL_ENV], _ = start_sample_server()
        print(f"Prometheus: SAMPLE series from {os.environ[prometheus.URL_ENV]}")


def cmd_demo(args: argparse.Namespace) -> int:
    from metrics_platform.lib.demo_data import seed_product_database

    began = time.monotonic()
    settings, server = prepare_environment()
    now = datetime.now(timezone.utc)
    first_day = demo_history_start(now)
    start_sample_apis()
    print(f"metric store: {redact(os.environ[DATABASE_URL_ENV])}")
    print(f"history: from {first_day} ({HISTORY_START_ENV})")
    if PRODUCT_DATABASE_URL_ENV in settings:
        seeding = time.monotonic()
        start = datetime.combine(date.fromisoformat(first_day), datetime.min.time(), timezone.utc)
        seeded = seed_product_database(os.environ[PRODUCT_DATABASE_URL_ENV], now=now, start=start)
        print(
            "demo product database:",
            f"seeded in {time.monotonic() - seeding:.0f} s" if seeded else "already seeded",
        )
    migrate_store(os.environ[DATABASE_URL_ENV])
    stop_server = server.stop if server is not None and not args.keep_db else None
    backfill_history(on_interrupt=stop_server)
    print_summary(os.environ[DATABASE_URL_ENV])
    print(f"demo ready in {time.monotonic() - began:.0f} s")
    if args.no_ui:
        return 0
    print(f"\nDagster UI: http://127.0.0.1:{args.port}  (Ctrl-C stops it)")
    try:
        return run_dev_server(args.port)
    finally:
        if server is not None and not args.keep_db:
            server.stop()
            print("embedded Postgres stopped")


def run_dev_server(port: int) -> int:
    """`dg dev` (webserver + daemon) in the foreground, in this environment (the history start,
    the sample APIs); SIGINT or SIGTERM stop it cleanly."""
    dg_command = Path(sys.executable).parent / "dg"
    command = [str(dg_command), "dev", "-h", "127.0.0.1", "-p", str(port)]
    child: subprocess.Popen | None = None

    def forward(signum, _frame):
        # dg dev shuts its webserver and daemon down on SIGINT, whatever we received.
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)

    # Installed before the child starts: a process started in the background of a shell
    # ignores SIGINT, and the child would inherit that; with a handler here, it gets Python's.
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    child = subprocess.Popen(command, cwd=PROJECT_ROOT)
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def report_disabled(defs) -> None:
    """Say which sources are disabled, and why: they are left out, nothing fails for them."""
    from metrics_platform.materialize import disabled_sources

    for source, (reason, assets) in sorted(disabled_sources(defs).items()):
        print(f"disabled: {source}: {reason} ({', '.join(assets)}); nothing is read from it")


def cmd_materialize(args: argparse.Namespace) -> int:
    """Plan the selection over the range (sources, then what is computed from them, hours then
    days), run each step as one run, and print rows in/out and each failure's cause."""
    import dagster as dg

    prepare_environment()
    from metrics_platform import materialize as runs
    from metrics_platform.definitions import defs

    report_disabled(defs)
    steps = runs.plan(defs, args.select, args.partitions)
    # The operator's explicit decision to store fewer values, for these runs only.
    prepared = runs.allowing_fewer_values if args.allow_fewer_values else (lambda step: step)
    instance = dg.DagsterInstance.get()
    invocation = runs.new_invocation()
    outcomes = runs.run_until_signal(
        lambda: runs.execute_plan(
            steps,
            run=lambda step: runs.run_step(
                defs, prepared(step), instance, invocation=invocation, verbose=args.verbose
            ),
            follow_ups=[*runs.FOLLOW_UPS, runs.later_hours_follow_up(defs)],
            report=lambda outcome: runs.print_outcome(outcome, verbose=args.verbose),
        ),
        instance,
        invocation,
    )
    failed = [outcome for outcome in outcomes if not outcome.success]
    print(
        f"\n{len(outcomes)} run{'s' if len(outcomes) != 1 else ''}, "
        + (f"{len(failed)} FAILED" if failed else "all succeeded")
    )
    return 1 if failed else 0


def cmd_db(args: argparse.Namespace) -> int:
    server = embedded()
    if args.action == "start":
        server.start()
        print(server.url(STORE_DB))
    else:
        server.stop()
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    for key, value in prepare_environment()[0].items():
        print(f"export {key}='{value}'")
    return 0


def migrate_store(url: str) -> tuple[list[int], list[str]]:
    """Migrate the metric store and set up Grafana's read-only role; returns the migrations
    applied and what is left to do for the role (printed, one line each)."""
    from metrics_platform.lib.grafana_role import set_up_reader_role
    from metrics_platform.lib.store import migrate

    conn = connect(url)
    try:
        applied = migrate(conn)
        record_business_timezone(conn)
        reader = set_up_reader_role(
            conn,
            role=os.environ.get("METRICS_PLATFORM_GRAFANA_DB_USER") or "grafana_reader",
            password=os.environ.get("METRICS_PLATFORM_GRAFANA_DB_PASSWORD") or None,
        )
    finally:
        conn.close()
    for problem in reader.problems:
        print(f"metrics-platform migrate: {problem}", file=sys.stderr)
    return applied, reader.problems


def record_business_timezone(conn) -> str:
    """Record METRICS_PLATFORM_BUSINESS_TIMEZONE for the store's views (their business dates)."""
    from metrics_platform.defs.partitions import BUSINESS_TIMEZONE

    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE metrics.business_calendar SET time_zone = %s WHERE time_zone <> %s",
            (BUSINESS_TIMEZONE, BUSINESS_TIMEZONE),
        )
    return BUSINESS_TIMEZONE


def cmd_migrate(args: argparse.Namespace) -> int:
    prepare_environment()
    applied, problems = migrate_store(os.environ[DATABASE_URL_ENV])
    role = "not ready (see above)" if problems else "ready"
    print(f"applied migrations: {applied or 'none (up to date)'}; Grafana reader role {role}")
    print(
        f"business time zone of the views: {os.environ.get('METRICS_PLATFORM_BUSINESS_TIMEZONE') or 'UTC'}"
    )
    return 0


def cmd_event_log(args: argparse.Namespace) -> int:
    prepare_environment()
    conn = connect(os.environ[DATABASE_URL_ENV], application_name="metrics-platform event-log")
    conn.autocommit = True  # each conversion is one statement, its own transaction
    try:
        with conn.cursor() as cur:
            if args.layout == "plain":
                restore_plain_layout(cur)
            else:
                ensure_compact_layout(cur)
            compact = is_compact(cur)
    finally:
        conn.close()
    print(
        "Dagster's event log: "
        + (
            "compact layout (event_logs is a view of event_log_rows)"
            if compact
            else "dagster-postgres's table (event_logs)"
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metrics-platform", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="backfill a year of demo history and open the Dagster UI (dg dev)"
    )
    demo.add_argument("--no-ui", action="store_true", help="stop after the backfill")
    demo.add_argument("--port", type=int, default=3000, help="Dagster UI port (default 3000)")
    demo.add_argument(
        "--keep-db",
        action="store_true",
        help="leave the embedded Postgres running when the UI stops",
    )
    demo.set_defaults(func=cmd_demo)
    db = commands.add_parser("db", help="start or stop the embedded Postgres")
    db.add_argument("action", choices=["start", "stop"])
    db.set_defaults(func=cmd_db)
    run = commands.add_parser(
        "materialize",
        help="materialize a selection over a range: sources, then hourly values, then days",
        description="Materialize a selection over a range, as the automation would: the "
        "sources in one run (a failing source fails alone), then what is computed from them "
        "each hour, then the days; prints rows in/out per asset and each failure's cause.",
    )
    run.add_argument(
        "--select",
        required=True,
        help="Dagster asset selection, e.g. 'group:product_db' or 'key:raw/*'",
    )
    run.add_argument(
        "--partitions",
        required=True,
        help="UTC times 2026-10-23T00:00Z..2026-10-27T00:00Z (end excluded), business days "
        "2026-10-23..2026-10-26 (both included), or partition keys A...B as the UI writes "
        "them (hourly keys are in the business time zone)",
    )
    run.add_argument(
        "--verbose", action="store_true", help="print each failure's full error and traceback"
    )
    run.add_argument(
        "--allow-fewer-values",
        action="store_true",
        help="let these runs store fewer values than a window holds (a retired series, a "
        "renamed metric); refused otherwise, with what would be lost",
    )
    run.set_defaults(func=cmd_materialize)
    commands.add_parser("env", help="print the environment to export").set_defaults(func=cmd_env)
    commands.add_parser("migrate", help="migrate the metric store").set_defaults(func=cmd_migrate)
    event_log = commands.add_parser(
        "event-log",
        help="convert Dagster's event log to the compact layout, or back to dagster-postgres's",
        description="Convert Dagster's event log in the instance database to the compact layout "
        "(what the batched storage does when it starts), or back to dagster-postgres's own "
        "table with every event written out (before leaving the batched storage, or before "
        "`dagster instance migrate` of another Dagster version). Stop every Dagster process "
        "first.",
    )
    event_log.add_argument("layout", choices=["compact", "plain"])
    event_log.set_defaults(func=cmd_event_log)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MetricsPlatformError as exc:
        print(f"metrics-platform: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
