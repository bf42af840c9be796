"""`metrics-platform`: the project's own commands, for what Dagster's CLI cannot express.

    metrics-platform demo            embedded Postgres + demo data + last two days + Dagster UI
    metrics-platform demo --no-ui    the same, without starting the UI
    metrics-platform materialize --select SEL --partitions A...B
                                     one run over a range; prints rows in/out per asset
    metrics-platform db start|stop   the embedded Postgres alone
    metrics-platform env             print the environment the other commands set (for `eval`)
    metrics-platform migrate         bring the metric store's schema up to date

With METRICS_PLATFORM_DATABASE_URL set, the embedded database is not used: everything runs
against the configured server. Project state (embedded data, Dagster home) lives in
METRICS_PLATFORM_HOME, by default `.metrics_platform` in the current folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime, timedelta, timezone
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

HOME_ENV = "METRICS_PLATFORM_HOME"
PORT_ENV = "METRICS_PLATFORM_EMBEDDED_PORT"
DEFAULT_PORT = 54329
STORE_DB = "metrics_platform"
DEMO_PRODUCT_DB = "product_demo"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Dagster's tag pair that makes one run cover a range of partitions.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def state_dir() -> Path:
    return Path(os.environ.get(HOME_ENV) or ".metrics_platform").resolve()


def embedded() -> EmbeddedPostgres:
    port = int(os.environ.get(PORT_ENV) or DEFAULT_PORT)
    return EmbeddedPostgres(state_dir() / "postgres", port)


def prepare_environment() -> tuple[dict[str, str], EmbeddedPostgres | None]:
    """Resolve the databases and Dagster home and export them.

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
        dagster_home = state_dir() / "dagster_home"
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PROJECT_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
        settings["DAGSTER_HOME"] = str(dagster_home)
    os.environ.update(settings)
    return settings, server


def materialize_recent(days: int = 2, now: datetime | None = None) -> None:
    """Materialize every hourly asset over the last `days` closed days up to the last closed
    hour, then those days' daily values: one run for the hours, one for the days."""
    import dagster as dg

    from metrics_platform.definitions import defs

    now = now or datetime.now(timezone.utc)
    last_hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    first_day = last_hour.replace(hour=0) - timedelta(days=days)
    instance = dg.DagsterInstance.get()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    hourly = defs.resolve_job_def("hourly_metrics").execute_in_process(
        run_config=quiet,
        instance=instance,
        tags={
            RANGE_START_TAG: first_day.strftime("%Y-%m-%d-%H:%M"),
            RANGE_END_TAG: last_hour.strftime("%Y-%m-%d-%H:%M"),
        },
    )
    last_day = last_hour.replace(hour=0) - timedelta(days=1)
    daily = defs.resolve_job_def("daily_metrics").execute_in_process(
        run_config=quiet,
        instance=instance,
        tags={
            RANGE_START_TAG: first_day.strftime("%Y-%m-%d"),
            RANGE_END_TAG: last_day.strftime("%Y-%m-%d"),
        },
    )
    for name, result in (("hours", hourly), ("days", daily)):
        print(
            f"materialized {name}: run {result.run_id} {'succeeded' if result.success else 'FAILED'}"
        )


def print_summary(url: str) -> None:
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                """SELECT metric, count(*) AS hours, max(time) AS latest,
                          (array_agg(value ORDER BY time DESC))[1] AS latest_value
                   FROM metrics.hourly_values_by_name GROUP BY metric ORDER BY metric"""
            )
            print("\nhourly values in the metric store:")
            for name, hours, latest, value in cur.fetchall():
                print(
                    f"  {name:<32} {hours:>5} hours, latest {latest:%Y-%m-%d %H:%M} UTC = {value:g}"
                )
            cur.execute("SELECT count(*) FROM metrics.daily_values_by_name")
            print(f"daily values: {cur.fetchone()[0]} rows")
    finally:
        conn.close()


def start_sample_apis() -> None:
    """Serve SAMPLE answers for the external APIs that have no credentials configured, on
    loopback, for as long as this process runs (the UI's runs reach them too)."""
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
    from metrics_platform.lib.demo_orders import seed_orders

    settings, server = prepare_environment()
    start_sample_apis()
    print(f"metric store: {redact(os.environ[DATABASE_URL_ENV])}")
    if PRODUCT_DATABASE_URL_ENV in settings:
        now = datetime.now(timezone.utc)
        seeded = seed_product_database(os.environ[PRODUCT_DATABASE_URL_ENV], now=now)
        seed_orders(os.environ[PRODUCT_DATABASE_URL_ENV], now=now)
        print("demo product database:", "seeded" if seeded else "already seeded")
    migrate_store(os.environ[DATABASE_URL_ENV])
    materialize_recent(days=2)
    print_summary(os.environ[DATABASE_URL_ENV])
    if args.no_ui:
        return 0
    print(f"\nDagster UI: http://127.0.0.1:{args.port}  (Ctrl-C stops it)")
    try:
        return run_dagster_dev(args.port)
    finally:
        if server is not None and not args.keep_db:
            server.stop()
            print("embedded Postgres stopped")


def run_dagster_dev(port: int) -> int:
    """`dagster dev` (webserver + daemon) in the foreground; SIGINT or SIGTERM stop it cleanly."""
    command = [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    child = subprocess.Popen(command, cwd=PROJECT_ROOT)

    def forward(signum, _frame):
        # dagster dev shuts its webserver and daemon down on SIGINT, whatever we received.
        if child.poll() is None:
            child.send_signal(signal.SIGINT)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:
                continue
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


IN_KEYS = ("rows_read", "rows_in", "hours_in")
OUT_KEYS = ("rows_written", "rows_out", "dagster/partition_row_count")


def materialization_summary(result) -> list[tuple[str, int | None, int | None]]:
    """(asset, rows in, rows out) for every asset the run materialized (a range run records one
    materialization per partition, all with the run's metadata: the first one tells)."""
    rows, seen = [], set()
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key in seen:
            continue
        seen.add(materialization.asset_key)
        metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        rows_in = next((metadata[k] for k in IN_KEYS if k in metadata), None)
        rows_in = (
            rows_in
            if rows_in is not None
            else sum(v for k, v in metadata.items() if k.startswith("rows_in/")) or None
        )
        rows_out = next((metadata[k] for k in OUT_KEYS if k in metadata), None)
        rows.append((materialization.asset_key.to_user_string(), rows_in, rows_out))
    return rows


def cmd_materialize(args: argparse.Namespace) -> int:
    """Materialize a selection for a partition or a range, in one run, and print row counts."""
    import dagster as dg

    prepare_environment()
    start_sample_apis()
    from metrics_platform.definitions import defs

    start, _, end = args.partitions.partition("...")
    tags = {RANGE_START_TAG: start, RANGE_END_TAG: end or start}
    assets = [a for a in defs.assets if isinstance(a, dg.AssetsDefinition)]
    result = dg.materialize(
        assets,
        selection=args.select,
        instance=dg.DagsterInstance.get(),
        resources=defs.resources,
        tags=tags,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    print(f"\nrun {result.run_id}: {'succeeded' if result.success else 'FAILED'}")
    print(f"{'asset':<36} {'in':>9} {'out':>9}")
    for asset, rows_in, rows_out in materialization_summary(result):
        print(
            f"{asset:<36} {rows_in if rows_in is not None else '-':>9} "
            f"{rows_out if rows_out is not None else '-':>9}"
        )
    for event in result.get_step_failure_events():
        print(f"failed: {event.step_key}: {event.event_specific_data.error.message.strip()}")
    return 0 if result.success else 1


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


def cmd_migrate(args: argparse.Namespace) -> int:
    prepare_environment()
    applied, problems = migrate_store(os.environ[DATABASE_URL_ENV])
    role = "not ready (see above)" if problems else "ready"
    print(f"applied migrations: {applied or 'none (up to date)'}; Grafana reader role {role}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metrics-platform", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the demo end to end and open the Dagster UI")
    demo.add_argument("--no-ui", action="store_true", help="stop after materializing")
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
        "materialize", help="materialize a selection for a partition or range; print row counts"
    )
    run.add_argument(
        "--select",
        required=True,
        help="Dagster asset selection, e.g. 'group:product_db' or 'key:raw/*'",
    )
    run.add_argument(
        "--partitions",
        required=True,
        help="a partition or a range: 2026-01-01-00:00...2026-01-01-23:00 (hours) "
        "or 2026-01-01...2026-01-31 (days)",
    )
    run.set_defaults(func=cmd_materialize)
    commands.add_parser("env", help="print the environment to export").set_defaults(func=cmd_env)
    commands.add_parser("migrate", help="migrate the metric store").set_defaults(func=cmd_migrate)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except MetricsPlatformError as exc:
        print(f"metrics-platform: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
