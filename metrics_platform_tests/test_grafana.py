"""Grafana: provisioning files, dashboards generated from code, every panel and variable query run
(macros expanded as Grafana does) against a store filled by a real run of the demo, the read-only
role Grafana connects as, and the macro expansion itself against Grafana's documented results."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg2
import psycopg2.errors
import pytest
import yaml

from metrics_platform.definitions import build_definitions
from metrics_platform.lib.dashboards import TIME_BUCKET
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV, connect
from metrics_platform.lib.demo_activity import seed_user_activity
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.grafana_macros import (
    ALL_VALUE,
    MacroError,
    TemplateVariable,
    TimeRange,
    expand,
    format_interval,
    go_float,
    interpolate_global,
    interpolate_macros,
    interpolate_variables,
    panel_interval,
    parse_interval,
)
from metrics_platform.lib.grafana_role import ensure_reader_role
from metrics_platform_tests.conftest import (
    RANGE_TAGS,
    TEST_SETTINGS,
    execute,
    new_database,
    new_store,
    query,
)

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
UTC = timezone.utc

# The demo run: five days of product data, the last three days materialized hour by hour, then
# rolled up; the dashboards are queried over exactly those three days.
NOW = datetime(2026, 3, 12, tzinfo=UTC)
HOURS = ("2026-03-09-00:00", "2026-03-11-23:00")
DAYS = ("2026-03-09", "2026-03-11")
DEMO_RANGE = TimeRange(datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 12, tzinfo=UTC))
SETTINGS = {
    **TEST_SETTINGS,
    "product_db": {
        "tables": [
            {"table": t, "created_at_column": "created_at"}
            for t in ("users", "profiles", "api_keys")
        ]
    },
    "retention": {"activity_table": "user_activity"},
}
READER = "grafana_reader"

# Panels over metrics the demo does not produce (GA4 and Prometheus sources): their queries must
# run, and return no values; every other panel must return data for the demo range.
WITHOUT_DEMO_DATA = {
    ("business.json", "Sessions started"),  # ga.sessions
    ("business.json", "New users"),  # ga.new_users
    ("business.json", "Acquisition per day"),  # ga.*
    ("business.json", "Acquisition in the range"),  # ga.sessions, ga.new_users
    ("quality_of_service.json", "HTTP requests by job"),  # http.requests.<job>
    # The demo's hours and days are all complete: test_incomplete_hours_and_days_are_listed.
    ("platform_health.json", "Incomplete hours"),
    ("platform_health.json", "Incomplete days"),
    # No alert fires on the demo: test_metric_alerts.py lists an episode.
    ("platform_health.json", "Metric alerts"),
}

# What Grafana itself provides: scoped variables, global substitutions and Postgres macros.
BUILTINS = {
    "__interval",
    "__interval_ms",
    "__from",
    "__to",
    "__unixEpochFrom",
    "__unixEpochTo",
    "__time",
    "__timeEpoch",
    "__timeFilter",
    "__timeFrom",
    "__timeTo",
    "__timeGroup",
    "__timeGroupAlias",
    "__unixEpochFilter",
    "__unixEpochNanoFilter",
    "__unixEpochNanoFrom",
    "__unixEpochNanoTo",
    "__unixEpochGroup",
    "__unixEpochGroupAlias",
}
VARIABLE_REFERENCE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}", re.ASCII
)


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def query_panels(board: dict) -> list[dict]:
    return [p for p in board.get("panels", []) if p.get("type") != "row"]


def all_targets():
    for path in DASHBOARD_FILES:
        for panel in query_panels(load(path)):
            for target in panel.get("targets", []):
                yield pytest.param(
                    path.name,
                    panel,
                    target,
                    id=f"{path.stem}:{panel['id']}:{panel['title']}:{target['refId']}",
                )


def all_variables():
    for path in DASHBOARD_FILES:
        for variable in load(path).get("templating", {}).get("list", []):
            yield pytest.param(path.name, variable, id=f"{path.stem}:${variable['name']}")


def provisioned_datasource() -> dict:
    config = yaml.safe_load(
        (GRAFANA / "provisioning/datasources/metrics_platform.yaml").read_text()
    )
    (datasource,) = config["datasources"]
    return datasource


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def run(url: str, sql: str) -> tuple[list[str], list[tuple]]:
    conn = connect(url, application_name="grafana test")
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql)  # no parameters: `%` in LIKE patterns stays as written
            return [c.name for c in cur.description], cur.fetchall()
    finally:
        conn.close()


def resolve_variables(url: str, board: dict, time_range: TimeRange) -> dict[str, TemplateVariable]:
    """Every variable set to "All", with the values its own query returns (in declared order)."""
    resolved: dict[str, TemplateVariable] = {}
    for variable in board.get("templating", {}).get("list", []):
        assert variable["type"] == "query", variable["name"]
        _, rows = run(url, expand(variable["query"], time_range, variables=resolved))
        resolved[variable["name"]] = TemplateVariable(
            variable["name"],
            ALL_VALUE,
            options=[str(r[0]) for r in rows],
            multi=variable.get("multi", False),
            include_all=variable.get("includeAll", False),
            all_value=variable.get("allValue"),
        )
    return resolved


def add_reader(store: str) -> None:
    """Create Grafana's read-only role on `store`."""
    conn = connect(store)
    try:
        ensure_reader_role(conn, READER)
    finally:
        conn.close()


def is_number(value) -> bool:
    return isinstance(value, (int, float, Decimal)) and not isinstance(value, bool)


# --- The store a real demo run fills ----------------------------------------------------------


@pytest.fixture(scope="module")
def demo_store(postgres_server) -> str:
    store = new_store(postgres_server, "grafana_store")
    product = new_database(postgres_server, "grafana_product")
    seed_product_database(product, now=NOW, days=5, users=1000)
    seed_user_activity(product, now=NOW)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with pytest.MonkeyPatch.context() as env:
        env.setenv(DATABASE_URL_ENV, store)
        env.setenv(PRODUCT_DATABASE_URL_ENV, product)
        defs = build_definitions(SETTINGS)
        with dg.instance_for_test() as instance:
            for job, window in (("hourly_metrics", HOURS), ("daily_metrics", DAYS)):
                result = defs.resolve_job_def(job).execute_in_process(
                    instance=instance, run_config=quiet, tags=dict(zip(RANGE_TAGS, window))
                )
                assert result.success, job
    add_reader(store)
    return store


@pytest.fixture(scope="module")
def demo_variables(demo_store) -> dict[str, dict[str, TemplateVariable]]:
    reader = as_user(demo_store, READER)
    return {
        path.name: resolve_variables(reader, load(path), DEMO_RANGE) for path in DASHBOARD_FILES
    }


# --- Every query, as Grafana sends it, against the demo ---------------------------------------


@pytest.mark.parametrize("file, variable", list(all_variables()))
def test_every_variable_query_lists_the_demo_metrics(demo_store, demo_variables, file, variable):
    resolved = demo_variables[file][variable["name"]]
    assert resolved.options, f"${variable['name']} lists nothing for the demo"
    assert len(set(resolved.options)) == len(resolved.options)
    assert variable["multi"] and variable["includeAll"]
    assert variable["current"]["value"] == [ALL_VALUE]


@pytest.mark.parametrize("file, panel, target", list(all_targets()))
def test_every_panel_query_runs_and_returns_what_its_format_needs(
    demo_store, demo_variables, file, panel, target
):
    sql = expand(
        target["rawSql"],
        DEMO_RANGE,
        interval=panel.get("interval", "1h"),
        variables=demo_variables[file],
    )
    assert "$" not in sql.replace("$$", ""), f"left unexpanded: {sql}"
    columns, rows = run(as_user(demo_store, READER), sql)
    assert len(set(columns)) == len(columns), columns

    if target["format"] == "time_series":
        assert "time" in columns, columns
        at = columns.index("time")
        others = [i for i in range(len(columns)) if i != at]
        labels = [i for i in others if columns[i] == "metric"]
        values = [i for i in others if columns[i] != "metric"]
        assert values, "a time series needs a value column"
        for row in rows:
            assert isinstance(row[at], (datetime, int, float, Decimal)), row
            assert all(isinstance(row[i], str) for i in labels), row
            assert all(row[i] is None or is_number(row[i]) for i in values), row
        times = [row[at] for row in rows]
        assert times == sorted(times), "Grafana needs time series sorted by time"
        keys = [(row[at], *(row[i] for i in labels)) for row in rows]
        assert len(set(keys)) == len(keys), "one value per time and series"
        has_values = any(is_number(row[i]) for row in rows for i in values)
    else:
        assert target["format"] == "table"
        has_values = any(cell is not None for row in rows for cell in row)

    if (file, panel["title"]) in WITHOUT_DEMO_DATA:
        assert not has_values, "the demo produces this panel's metrics now: take it off the list"
    else:
        assert rows and has_values, f"no data over the demo range: {sql}"


def test_incomplete_hours_and_days_are_listed(postgres_server):
    """The demo is complete; with an hour a source did not land, the Platform health board lists
    it and its day (the completeness the hourly and daily values store, see test_quality.py)."""
    store = new_store(postgres_server, "grafana_gaps")
    execute(
        store,
        """INSERT INTO metrics.metric (name, aggregation, source) VALUES
               ('platform.hour_complete', 'sum', 'platform'),
               ('platform.sources_missing', 'sum', 'platform'),
               ('platform.day_complete', 'recomputed', 'platform');
           INSERT INTO metrics.hourly_values
           SELECT m.id, h, CASE WHEN m.name = 'platform.hour_complete'
                                THEN (h <> '2026-03-10 07:00+00')::int
                                ELSE (h = '2026-03-10 07:00+00')::int END
           FROM metrics.metric m, generate_series('2026-03-09 00:00+00'::timestamptz,
                                                  '2026-03-11 23:00+00', '1 hour') h
           WHERE m.name <> 'platform.day_complete';
           INSERT INTO metrics.daily_values
           SELECT m.id, d, CASE WHEN m.name = 'platform.day_complete'
                                THEN (d <> '2026-03-10')::int
                                ELSE 24 - (d = '2026-03-10')::int END
           FROM metrics.metric m, generate_series('2026-03-09'::date, '2026-03-11', '1 day') d
           WHERE m.name <> 'platform.sources_missing';""",
    )
    add_reader(store)
    board = load(GRAFANA / "dashboards" / "platform_health.json")
    panels = {panel["title"]: panel for panel in query_panels(board)}
    variables = resolve_variables(as_user(store, READER), board, DEMO_RANGE)

    def rows(title):
        sql = expand(panels[title]["targets"][0]["rawSql"], DEMO_RANGE, variables=variables)
        return run(as_user(store, READER), sql)[1]

    assert rows("Incomplete hours") == [(datetime(2026, 3, 10, 7, tzinfo=UTC), 1.0)]
    assert [(str(day), hours) for day, hours in rows("Incomplete days")] == [("2026-03-10", 23.0)]
    [(share,)] = rows("Complete hours in the range")
    assert share == pytest.approx(71 / 72)


def test_the_panels_without_demo_data_are_real_panels():
    titles = {
        (path.name, panel["title"])
        for path in DASHBOARD_FILES
        for panel in query_panels(load(path))
    }
    assert WITHOUT_DEMO_DATA <= titles


def test_every_query_also_runs_on_an_empty_store(store_url):
    """No source has landed anything: variables list nothing, panels are empty, nothing fails."""
    for path in DASHBOARD_FILES:
        board = load(path)
        variables = resolve_variables(store_url, board, DEMO_RANGE)
        assert all(not v.options for v in variables.values())
        for panel in query_panels(board):
            for target in panel["targets"]:
                sql = expand(
                    target["rawSql"],
                    DEMO_RANGE,
                    interval=panel.get("interval", "1h"),
                    variables=variables,
                )
                _, rows = run(store_url, sql)
                assert all(cell is None for row in rows for cell in row), (
                    path.name,
                    panel["title"],
                )


# --- Structure ----------------------------------------------------------------------------------


def walk(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_structure(path):
    board = load(path)
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 39
    panels = board["panels"]
    ids = [p["id"] for p in panels] + [q["id"] for p in panels for q in p.get("panels", [])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"

    datasource = provisioned_datasource()
    refs = [node["datasource"] for node in walk(board) if "datasource" in node]
    assert refs and all(
        ref == {"type": datasource["type"], "uid": datasource["uid"]} for ref in refs
    )

    for panel in panels:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        assert "datasource" in panel
        if panel["type"] == "row":
            assert not panel.get("targets") and not panel["collapsed"] and panel["panels"] == []
            continue
        targets = panel.get("targets", [])
        assert targets, f"panel {panel['title']!r} has no query"
        assert len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            assert target["rawSql"].strip() and target["rawQuery"] is True
            assert target["format"] in ("time_series", "table")
            assert "datasource" in target
            if panel["type"] == "timeseries":
                assert target["format"] == "time_series"
                assert re.search(r"\$__time(Filter|From)\(", target["rawSql"])

    declared = {v["name"] for v in board.get("templating", {}).get("list", [])}
    texts = [t["rawSql"] for p in query_panels(board) for t in p["targets"]]
    texts += [v["query"] for v in board.get("templating", {}).get("list", [])]
    texts += [p.get("title", "") for p in panels] + [p.get("description", "") for p in panels]
    used = {
        m.group(1) or m.group(2) or m.group(4)
        for text in texts
        for m in VARIABLE_REFERENCE.finditer(text)
    }
    assert used - declared - BUILTINS == set(), "undeclared variables"
    assert declared <= used, "declared variables nobody uses"


def test_the_public_dashboard_shows_no_volumes():
    board = load(GRAFANA / "dashboards" / "public.json")
    # What a shared (public) dashboard supports: no variables, links or annotations.
    assert board.get("templating", {}).get("list", []) == []
    assert board.get("links", []) == [] and board["annotations"]["list"] == []
    assert "public" in board["tags"] and board["time"] == {"from": "now-30d", "to": "now"}
    assert {p["title"] for p in board["panels"]} == {
        "Activation rate per day",
        "Median latency per day",
    }
    for panel in board["panels"]:
        assert panel["fieldConfig"]["defaults"]["unit"] in ("percentunit", "ms")
        names = set(
            re.findall(
                r"'((?:objects|events|ga|http|spider|kpi)\.[^']*)'", panel["targets"][0]["rawSql"]
            )
        )
        assert names <= {
            "kpi.acquisition_to_activation_rate",
            "objects.users.count",
            "objects.api_keys.count",
            "events.%.duration.p50",
        }, names


def generator():
    """The dashboard generator; its SDK needs Python 3.11+ (the JSON it wrote is tested anyway)."""
    pytest.importorskip(
        "grafana_foundation_sdk", reason="grafana-foundation-sdk needs Python 3.11+"
    )
    from metrics_platform.lib import dashboards

    return dashboards


def test_the_committed_dashboards_are_the_generated_ones():
    dashboards = generator()
    assert dashboards.differences(GRAFANA / "dashboards") == []
    assert {p.name for p in DASHBOARD_FILES} == set(dashboards.DASHBOARDS)
    check = subprocess.run(
        [sys.executable, "-m", "metrics_platform.lib.dashboards", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr


def test_check_fails_on_a_changed_or_stale_file(tmp_path, capsys):
    dashboards = generator()
    assert dashboards.main(["--output-dir", str(tmp_path)]) == 0
    assert dashboards.main(["--check", "--output-dir", str(tmp_path)]) == 0
    (tmp_path / "business.json").write_text("{}\n")
    (tmp_path / "old.json").write_text("{}\n")
    assert dashboards.main(["--check", "--output-dir", str(tmp_path)]) == 1
    assert "business.json, old.json" in capsys.readouterr().err
    assert dashboards.main(["--output-dir", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(dashboards.DASHBOARDS)


def test_the_datasource_is_provisioned_from_the_environment():
    datasource = provisioned_datasource()
    assert datasource["type"] == "grafana-postgresql-datasource"
    assert datasource["uid"] == "metrics_platform"
    data = datasource["jsonData"]
    assert data["postgresVersion"] == 1500 and data["timescaledb"] is False
    env = re.compile(r"^\$\{METRICS_PLATFORM_GRAFANA_DB_[A-Z]+\}$")
    for value in (
        datasource["url"],
        datasource["user"],
        data["database"],
        data["sslmode"],
        datasource["secureJsonData"]["password"],
    ):
        assert env.match(value), value


def test_the_dashboards_are_provisioned_from_the_mounted_folder():
    config = yaml.safe_load((GRAFANA / "provisioning/dashboards/metrics_platform.yaml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file" and provider["folder"] == "Metrics platform"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_docker_compose_runs_pinned_images_with_the_provisioning_mounted():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana, postgres = compose["services"]["grafana"], compose["services"]["postgres"]
    assert re.fullmatch(r"grafana/grafana:\d+\.\d+\.\d+", grafana["image"])
    assert re.fullmatch(r"postgres:\d+\.\d+(-\w+)?", postgres["image"])
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    needed = set(
        re.findall(
            r"\$\{(\w+)\}", (GRAFANA / "provisioning/datasources/metrics_platform.yaml").read_text()
        )
    )
    assert needed <= set(grafana["environment"]), needed - set(grafana["environment"])


# --- The read-only role -------------------------------------------------------------------------

WRITES = [
    "INSERT INTO metrics.hourly_values SELECT metric_id, hour + interval '1 year', value "
    "FROM metrics.hourly_values LIMIT 1",
    "UPDATE metrics.metric SET description = 'changed'",
    "DELETE FROM metrics.daily_values",
    "TRUNCATE metrics.hourly_values",
    "CREATE TABLE metrics.grafana_was_here (x integer)",
    "CREATE TABLE public.grafana_was_here (x integer)",
    "CREATE VIEW metrics.grafana_view AS SELECT 1 AS x",
]


def test_the_reader_can_select_and_nothing_else(demo_store):
    reader = as_user(demo_store, READER)
    for relation in (
        "metric",
        "hourly_values",
        "daily_values",
        "hourly_values_by_name",
        "daily_values_by_name",
        "schema_migrations",
    ):
        _, rows = run(reader, f"SELECT count(*) FROM metrics.{relation}")
        assert rows[0][0] >= 0
    conn = connect(reader)
    try:
        for statement in WRITES:
            # Its sessions start read-only; past that, it lacks the privileges.
            with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction), conn, conn.cursor() as cur:
                cur.execute(statement)
            with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn, conn.cursor() as cur:
                cur.execute("SET TRANSACTION READ WRITE")
                cur.execute(statement)
    finally:
        conn.close()
    assert query(
        demo_store, "SELECT count(*) FROM metrics.metric WHERE description = 'changed'"
    ) == [(0,)]
    granted = query(
        demo_store,
        """
        SELECT DISTINCT privilege_type FROM information_schema.role_table_grants
        WHERE grantee = %s AND table_schema = 'metrics'""",
        (READER,),
    )
    assert granted == [("SELECT",)]
    assert query(
        demo_store,
        "SELECT has_schema_privilege(%s, 'metrics', 'CREATE'), "
        "has_schema_privilege(%s, 'metrics', 'USAGE')",
        (READER, READER),
    ) == [(False, True)]


def test_tables_and_views_created_later_are_readable_and_only_readable(store_url):
    role = f"reader_{uuid.uuid4().hex[:8]}"
    conn = connect(store_url)
    try:
        assert ensure_reader_role(conn, role) is True
    finally:
        conn.close()
    execute(
        store_url,
        "CREATE TABLE metrics.later (x integer); INSERT INTO metrics.later VALUES (7);"
        "CREATE VIEW metrics.later_view AS SELECT x FROM metrics.later",
    )
    reader = as_user(store_url, role)
    assert run(reader, "SELECT x FROM metrics.later_view")[1] == [(7,)]
    conn = connect(reader)
    try:
        with pytest.raises(psycopg2.errors.InsufficientPrivilege), conn, conn.cursor() as cur:
            cur.execute("SET TRANSACTION READ WRITE")
            cur.execute("INSERT INTO metrics.later VALUES (8)")
    finally:
        conn.close()


def test_the_role_is_idempotent_and_converges(store_url):
    role = f"reader_{uuid.uuid4().hex[:8]}"
    conn = connect(store_url)
    try:
        assert ensure_reader_role(conn, role, password="s3cret 'quoted'") is True
        verifier = query(
            store_url, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)
        )[0][0]
        assert verifier.startswith("SCRAM-SHA-256$")  # hashed before it was sent
        execute(store_url, f'GRANT INSERT ON metrics.metric TO "{role}"')
        assert ensure_reader_role(conn, role) is False
        assert ensure_reader_role(conn, role) is False
    finally:
        conn.close()
    assert query(store_url, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,)) == [
        (verifier,)
    ]
    assert query(
        store_url,
        "SELECT has_table_privilege(%s, 'metrics.metric', 'INSERT'), "
        "has_table_privilege(%s, 'metrics.metric', 'SELECT')",
        (role, role),
    ) == [(False, True)]
    attributes = query(
        store_url,
        "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolinherit, "
        "rolreplication, rolbypassrls FROM pg_roles WHERE rolname = %s",
        (role,),
    )
    assert attributes == [(True, False, False, False, False, False, False)]


def test_concurrent_calls_take_turns(store_url):
    role = f"reader_{uuid.uuid4().hex[:8]}"

    def call(_):
        conn = connect(store_url)
        try:
            return ensure_reader_role(conn, role, password="pw")
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        created = list(pool.map(call, range(6)))
    assert sorted(created) == [False] * 5 + [True]


@pytest.mark.parametrize(
    "name",
    ['x"; DROP ROLE metrics_platform; --', "1reader", "pg_reader", "", "a" * 64, "reader name"],
)
def test_unsafe_role_names_are_refused(store_url, name):
    conn = connect(store_url)
    try:
        with pytest.raises(ConfigurationError, match="Grafana reader role"):
            ensure_reader_role(conn, name)
    finally:
        conn.close()


def test_privileged_roles_and_unmigrated_stores_are_refused(postgres_server, store_url):
    powerful, member = (f"reader_{uuid.uuid4().hex[:8]}" for _ in range(2))
    execute(
        store_url,
        f'CREATE ROLE "{powerful}" LOGIN CREATEDB; CREATE ROLE "{member}" LOGIN; '
        f'GRANT pg_read_all_settings TO "{member}"',
    )
    conn = connect(store_url)
    try:
        with pytest.raises(ConfigurationError, match="CREATEDB"):
            ensure_reader_role(conn, powerful)
        with pytest.raises(ConfigurationError, match="membership"):
            ensure_reader_role(conn, member)
    finally:
        conn.close()
    bare = new_database(postgres_server, "bare")
    conn = connect(bare)
    try:
        with pytest.raises(ConfigurationError, match="migrate the metric store"):
            ensure_reader_role(conn, f"reader_{uuid.uuid4().hex[:8]}")
    finally:
        conn.close()


# --- Macro expansion, against Grafana's own test expectations -----------------------------------

RANGE = TimeRange(
    datetime(2018, 4, 12, 18, 0, tzinfo=UTC), datetime(2018, 4, 12, 18, 5, tzinfo=UTC)
)


@pytest.mark.parametrize(
    "sql, expanded",
    [
        ("select $__time(time_column)", 'select time_column AS "time"'),
        ("select min($__time(time_column))", 'select min(time_column AS "time")'),
        ("select $__timeEpoch(time_column)", 'select extract(epoch from time_column) as "time"'),
        (
            "WHERE $__timeFilter(time_column)",
            "WHERE time_column BETWEEN '2018-04-12T18:00:00Z' AND '2018-04-12T18:05:00Z'",
        ),
        ("select $__timeFrom()", "select '2018-04-12T18:00:00Z'"),
        ("select $__timeTo()", "select '2018-04-12T18:05:00Z'"),
        (
            "SELECT $__timeGroup(time_column,'5m'), value",
            'SELECT floor(extract(epoch from time_column)/300)*300 AS "time", value',
        ),
        (
            "SELECT $__timeGroup(time_column,'5m') as time, value",
            "SELECT floor(extract(epoch from time_column)/300)*300 as time, value",
        ),
        (
            "SELECT $__timeGroup(time_column,'5m')",
            "SELECT floor(extract(epoch from time_column)/300)*300",
        ),
        (
            "SELECT $__timeGroupAlias(time_column,'5m')",
            'SELECT floor(extract(epoch from time_column)/300)*300 AS "time"',
        ),
        ("$__timeGroup(time_column , '5m')", "floor(extract(epoch from time_column)/300)*300"),
        (
            "$__timeGroupAlias(time_column , '5m')",
            'floor(extract(epoch from time_column)/300)*300 AS "time"',
        ),
        (
            "GROUP BY $__timeGroup(time_column, 1h, NULL)",
            "GROUP BY floor(extract(epoch from time_column)/3600)*3600",
        ),
        (
            "GROUP BY $__timeGroup(time_column, '20ms', previous)",
            "GROUP BY floor(extract(epoch from time_column)/0.02)*0.02",
        ),
        (
            "GROUP BY $__timeGroup(time_column, '12d', 0)",
            "GROUP BY floor(extract(epoch from time_column)/1.0368e+06)*1.0368e+06",
        ),
        ("select $__unixEpochFilter(time)", "select time >= 1523556000 AND time <= 1523556300"),
        (
            "select $__unixEpochNanoFilter(time)",
            "select time >= 1523556000000000000 AND time <= 1523556300000000000",
        ),
        ("select $__unixEpochNanoFrom()", "select 1523556000000000000"),
        ("select $__unixEpochNanoTo()", "select 1523556300000000000"),
        (
            "SELECT $__unixEpochGroup(time_column+time_adjustment,'5m')",
            "SELECT floor((time_column+time_adjustment)/300)*300",
        ),
        (
            "SELECT $__unixEpochGroupAlias(time_column+time_adjustment,'5m')",
            'SELECT floor((time_column+time_adjustment)/300)*300 AS "time"',
        ),
        # The pre-5.3 form is decided on the first occurrence, and applies to every one of them.
        (
            "SELECT $__timeGroup(t,'1h'), v FROM x GROUP BY $__timeGroup(t,'1h')",
            'SELECT floor(extract(epoch from t)/3600)*3600 AS "time", v FROM x '
            'GROUP BY floor(extract(epoch from t)/3600)*3600 AS "time"',
        ),
    ],
)
def test_postgres_macros_expand_as_grafana_does(sql, expanded):
    assert interpolate_macros(sql, RANGE) == expanded


@pytest.mark.parametrize(
    "start, end, filter_, epoch",
    [
        (
            datetime(1960, 2, 1, 7, tzinfo=UTC),
            datetime(1965, 2, 3, 8, tzinfo=UTC),
            "'1960-02-01T07:00:00Z' AND '1965-02-03T08:00:00Z'",
            "t >= -312915600 AND t <= -154886400",
        ),
        (
            datetime(1960, 2, 1, 7, 0, 0, 500000, tzinfo=UTC),
            datetime(1980, 2, 3, 8, 0, 0, 500000, tzinfo=UTC),
            "'1960-02-01T07:00:00.5Z' AND '1980-02-03T08:00:00.5Z'",
            "t >= -312915600 AND t <= 318412800",
        ),
        (
            datetime(2026, 3, 9, 1, 2, 3, 120000, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 3, 9, 5, tzinfo=UTC),
            "'2026-03-08T23:02:03.12Z' AND '2026-03-09T05:00:00Z'",
            "t >= 1773010923 AND t <= 1773032400",
        ),
    ],
)
def test_time_filters_use_utc_rfc3339_and_floored_epochs(start, end, filter_, epoch):
    time_range = TimeRange(start, end)
    assert interpolate_macros("$__timeFilter(c)", time_range) == f"c BETWEEN {filter_}"
    assert interpolate_macros("$__unixEpochFilter(t)", time_range) == epoch


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELECT $__nope(x)", 'unknown macro "__nope"'),
        ("SELECT $__timeGroup(x)", "needs time column and interval"),
        ("SELECT $__timeGroup(x, 5 minutes)", "error parsing interval 5 minutes"),
        ("SELECT $__timeGroup(x, 5m, zero)", "error parsing fill value zero"),
    ],
)
def test_macros_grafana_refuses_are_errors(sql, message):
    with pytest.raises(MacroError, match=re.escape(message)):
        interpolate_macros(sql, RANGE)


def test_calendar_intervals_count_from_now_in_utc():
    now = datetime(2026, 1, 31, 12, tzinfo=UTC)
    day = 86400 * 10**9
    assert parse_interval("2d", now=now) == 2 * day and parse_interval("1w", now=now) == 7 * day
    assert parse_interval("1M", now=now) == 31 * day  # Jan 31 + 1 month normalizes to Mar 3
    assert parse_interval("1y", now=now) == 365 * day
    assert (
        interpolate_macros("$__timeGroup(t, '1M')", RANGE, now=now)
        == "floor(extract(epoch from t)/2.6784e+06)*2.6784e+06"
    )


@pytest.mark.parametrize(
    "value, text",
    [
        (300.0, "300"),
        (0.02, "0.02"),
        (86400.0, "86400"),
        (999999.5, "999999.5"),
        (1e6, "1e+06"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (1234567.0, "1.234567e+06"),
    ],
)
def test_interval_seconds_print_like_go(value, text):
    assert go_float(value) == text


def test_global_substitutions():
    sql = "$__interval_ms $__interval $__unixEpochFrom() $__unixEpochTo()"
    assert (
        interpolate_global(sql, RANGE, timedelta(minutes=10)) == "600000 10m 1523556000 1523556300"
    )
    assert [
        format_interval(d)
        for d in (
            timedelta(seconds=90),
            timedelta(hours=36),
            timedelta(days=400),
            timedelta(milliseconds=500),
            timedelta(0),
        )
    ] == ["1m", "1d", "1y", "500ms", "1ms"]


def test_template_variables_are_quoted_as_the_sql_data_sources_do():
    variables = [
        TemplateVariable("multi", ["a", "b'c"], multi=True),
        TemplateVariable("one", "it's"),
        TemplateVariable("one_of_all", "x", include_all=True),
        TemplateVariable("number", 42),
        TemplateVariable("all", ALL_VALUE, options=["p", "q"], multi=True, include_all=True),
        TemplateVariable(
            "custom_all", [ALL_VALUE], options=["p"], multi=True, include_all=True, all_value=".*"
        ),
        TemplateVariable("nothing", ALL_VALUE, options=[], multi=True, include_all=True),
    ]
    sql = (
        "IN ($multi) '$one' $one_of_all $number IN (${all}) [[all]] ~ '$custom_all' "
        "ARRAY[$nothing]::text[] $unknown $__timeFilter(t)"
    )
    assert interpolate_variables(sql, variables) == (
        "IN ('a','b''c') 'it''s' 'x' 42 IN ('p','q') 'p','q' ~ '.*' "
        "ARRAY[]::text[] $unknown $__timeFilter(t)"
    )


@pytest.mark.parametrize(
    "fmt, text",
    [
        ("csv", "a,b'c,d\"e"),
        ("sqlstring", "'a','b''c','d\\\"e'"),
        ("singlequote", "'a','b\\'c','d\"e'"),
        ("doublequote", '"a","b\'c","d\\"e"'),
        ("pipe", "a|b'c|d\"e"),
        ("raw", "a,b'c,d\"e"),
        ("glob", "{a,b'c,d\"e}"),
        ("json", '["a","b\'c","d\\"e"]'),
        ("regex", "(a|b'c|d\"e)"),
        ("text", "a + b'c + d\"e"),
        ("distributed", "a,v=b'c,v=d\"e"),
        ("percentencode", "%7Ba%2Cb%27c%2Cd%22e%7D"),
        ("queryparam", "var-v=a&var-v=b%27c&var-v=d%22e"),
        ("nonsense", "{a,b'c,d\"e}"),
    ],
)
def test_variable_formats(fmt, text):
    variable = TemplateVariable("v", ["a", "b'c", 'd"e'], multi=True)
    assert interpolate_variables(f"${{v:{fmt}}}", [variable]) == text


def test_scoped_variables_and_the_whole_pipeline():
    time_range = TimeRange(datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 12, tzinfo=UTC))
    assert (
        interpolate_variables(
            "$__interval $__interval_ms ${__from} ${__to:date:seconds} ${__to:date}",
            time_range=time_range,
            interval="1d",
        )
        == "1d 86400000 1773014400000 1773273600 2026-03-12T00:00:00.000Z"
    )
    sql = (
        "SELECT $__timeGroupAlias(time, $__interval), metric, sum(value) FROM v "
        "WHERE $__timeFilter(time) AND metric = ANY(ARRAY[$m]::text[]) GROUP BY 1, 2"
    )
    variables = [
        TemplateVariable("m", ALL_VALUE, options=["a.b", "c"], multi=True, include_all=True)
    ]
    assert expand(sql, time_range, interval="1h", variables=variables) == (
        'SELECT floor(extract(epoch from time)/3600)*3600 AS "time", metric, sum(value) FROM v '
        "WHERE time BETWEEN '2026-03-09T00:00:00Z' AND '2026-03-12T00:00:00Z' "
        "AND metric = ANY(ARRAY['a.b','c']::text[]) GROUP BY 1, 2"
    )


def test_a_time_range_needs_timezones():
    with pytest.raises(ValueError):
        TimeRange(datetime(2026, 1, 1), datetime(2026, 1, 2))


# --- Business days and ranges in a business time zone with daylight saving ----------------------

PARIS = ZoneInfo("Europe/Paris")
# Business days around both changes of 2026: 29 March has 23 hours, 25 October 25.
DST_DAYS = [date(2026, 3, 27) + timedelta(days=n) for n in range(5)] + [
    date(2026, 10, 23) + timedelta(days=n) for n in range(5)
]
# Sign-ups and new users per business day: a small day weighs as much as a big one in a mean
# of daily rates, not in the range's rate.
ACTIVATION_DAYS = {date(2026, 3, 28): (1, 2), date(2026, 3, 29): (100, 1000)}


def paris_day(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, datetime.min.time(), PARIS)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), PARIS)
    return start.astimezone(UTC), end.astimezone(UTC)


@pytest.fixture(scope="module")
def paris_store(postgres_server) -> str:
    """A store whose business days are Europe/Paris days, with hourly and daily values of every
    metric the daily panels read."""
    store = new_store(postgres_server, "grafana_paris")
    execute(store, "UPDATE metrics.business_calendar SET time_zone = 'Europe/Paris'")
    metrics = {
        "ga.sessions": "sum",
        "ga.new_users": "sum",
        "ga.active_users": "recomputed",
        "events.signup.count": "sum",
        "events.api_call.count": "sum",
        "events.api_call.errors": "sum",
        "events.api_call.duration.p50": "recomputed",
        "events.api_call.duration.p99": "recomputed",
        "objects.users.count": "last",
        "objects.api_keys.count": "last",
        "platform.hour_complete": "sum",
        "platform.day_complete": "recomputed",
        "kpi.acquisition_to_activation_rate": "recomputed",
        "users.signed_up": "sum",
        "retention.d1.users": "recomputed",
        "retention.d1": "recomputed",
    }
    ids = {
        name: query(
            store,
            "INSERT INTO metrics.metric (name, aggregation, source) VALUES (%s, %s, %s) "
            "RETURNING id",
            (name, aggregation, name.split(".")[0]),
        )[0][0]
        for name, aggregation in metrics.items()
    }
    hourly, daily = [], []
    for n, day in enumerate(DST_DAYS):
        signups, new_users = ACTIVATION_DAYS.get(day, (10, 100))
        start, end = paris_day(day)
        hours = int((end - start).total_seconds() // 3600)
        day_values = {
            "ga.sessions": 3 * new_users,
            "ga.new_users": new_users,
            "ga.active_users": 2 * new_users,
            "events.signup.count": signups,
            "events.api_call.count": 50,
            "events.api_call.errors": 1,
            "events.api_call.duration.p50": 40,
            "events.api_call.duration.p99": 300,
            "objects.users.count": 1000 + 10 * n,
            "objects.api_keys.count": 300 + 3 * n,
            "platform.hour_complete": hours,
            "platform.day_complete": 1,
            "kpi.acquisition_to_activation_rate": signups / new_users,
            "users.signed_up": signups,
            "retention.d1.users": signups // 2,
            "retention.d1": (signups // 2) / signups,
        }
        daily += [(ids[name], day, value) for name, value in day_values.items()]
        for h in range(hours):
            hour = start + timedelta(hours=h)
            for name, aggregation in metrics.items():
                if name.startswith(("kpi.", "retention.")) or name == "platform.day_complete":
                    continue
                if aggregation == "sum":  # the day's count in its first hour, 0 in the others
                    value = day_values[name] if h == 0 and name != "platform.hour_complete" else 0
                    value = 1 if name == "platform.hour_complete" else value
                else:
                    value = day_values[name]
                hourly.append((ids[name], hour, value))
    execute(
        store,
        "INSERT INTO metrics.hourly_values SELECT * FROM unnest(%s::int[], %s::timestamptz[], "
        "%s::float8[])",
        tuple(map(list, zip(*hourly))),
    )
    kpi = {ids["kpi.acquisition_to_activation_rate"]}
    for table, rows in (
        ("daily_values", [r for r in daily if r[0] not in kpi]),
        ("daily_kpis", [r for r in daily if r[0] in kpi]),
    ):
        execute(
            store,
            f"INSERT INTO metrics.{table} SELECT * FROM unnest(%s::int[], %s::date[], %s::float8[])",
            tuple(map(list, zip(*rows))),
        )
    add_reader(store)
    return store


def run_panel(url: str, file: str, panel: dict, time_range: TimeRange):
    board = load(GRAFANA / "dashboards" / file)
    variables = resolve_variables(url, board, time_range)
    sql = expand(
        panel["targets"][0]["rawSql"],
        time_range,
        interval=panel.get("interval", "1h"),
        variables=variables,
    )
    return run(url, sql)


def daily_panels():
    for path in DASHBOARD_FILES:
        for panel in query_panels(load(path)):
            if panel["type"] == "timeseries" and panel.get("interval") == "1d":
                yield pytest.param(path.name, panel, id=f"{path.stem}:{panel['title']}")


@pytest.mark.parametrize("file, panel", list(daily_panels()))
def test_every_daily_point_is_at_its_business_days_start(paris_store, file, panel):
    """In Europe/Paris a business day starts at 23:00 or 22:00 UTC, and the change days have 23
    and 25 hours: every daily point is placed at its day's start, never at UTC midnight."""
    reader = as_user(paris_store, READER)
    for days in (DST_DAYS[:5], DST_DAYS[5:]):
        time_range = TimeRange(paris_day(days[1])[0], paris_day(days[-1])[0])
        columns, rows = run_panel(reader, file, panel, time_range)
        assert rows, f"no daily points: {panel['title']}"
        starts = {paris_day(day)[0] for day in days[1:]}  # $__timeFilter includes the end
        times = {row[columns.index("time")] for row in rows}
        assert times <= starts, sorted(times - starts)


def test_the_activation_rate_in_the_range_is_a_ratio_of_the_ranges_totals(paris_store):
    """Over the business days 28 and 29 March (a day of 23 hours): 101 sign-ups of 1,002 new
    users, not the mean of 1/2 and 100/1,000."""
    (panel,) = [
        p
        for p in query_panels(load(GRAFANA / "dashboards" / "business.json"))
        if p["title"] == "Activation rate in the range"
    ]
    time_range = TimeRange(paris_day(date(2026, 3, 28))[0], paris_day(date(2026, 3, 29))[1])
    _, [(rate,)] = run_panel(as_user(paris_store, READER), "business.json", panel, time_range)
    assert rate == pytest.approx(101 / 1002)


def test_the_catalog_shows_every_metrics_latest_value_and_freshness(demo_store, demo_variables):
    (panel,) = [
        p
        for p in query_panels(load(GRAFANA / "dashboards" / "platform_health.json"))
        if p["title"] == "Metric catalog"
    ]
    sql = expand(
        panel["targets"][0]["rawSql"], DEMO_RANGE, variables=demo_variables["platform_health.json"]
    )
    columns, rows = run(as_user(demo_store, READER), sql)
    assert columns[:6] == ["metric", "unit", "description", "latest value", "as of", "freshness"]
    catalog = query(demo_store, "SELECT name FROM metrics.metric")
    assert sorted(row[0] for row in rows) == sorted(name for (name,) in catalog)
    by_name = {row[0]: dict(zip(columns, row)) for row in rows}
    users = by_name["objects.users.count"]
    latest = query(
        demo_store,
        "SELECT value, time FROM metrics.hourly_values_by_name "
        "WHERE metric = 'objects.users.count' ORDER BY time DESC LIMIT 1",
    )
    assert (users["latest value"], users["as of"]) == latest[0]
    assert float(users["freshness"]) == pytest.approx(
        (datetime.now(UTC) - latest[0][1] - timedelta(hours=1)).total_seconds(), abs=120
    )
    assert all(row["latest value"] is not None for row in by_name.values())


def test_every_provisioned_alert_rule_runs_as_the_reader(demo_store):
    """Grafana's alert rules, as provisioned, with its macros expanded, against the demo's
    tables as the read-only role: one row each, 1 or 0, labelled by the metric."""
    document = yaml.safe_load((GRAFANA / "provisioning/alerting/metric_alerts.yaml").read_text())
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    assert rules
    for rule in rules:
        model = rule["data"][0]["model"]
        sql = expand(model["rawSql"], DEMO_RANGE)
        columns, rows = run(as_user(demo_store, READER), sql)
        assert columns == ["metric", "breached"], rule["uid"]
        assert rows == [(rule["labels"]["metric"], rows[0][1])] and rows[0][1] in (0, 1)


def test_retention_in_the_range_is_a_ratio_of_the_cohorts_totals(paris_store):
    """Cohorts of 1 and 100 users (28 and 29 March, Paris): 0 + 50 returned the next day, so
    D1 is 50/101, not the mean of 0 and 0.5."""
    (panel,) = [
        p
        for p in query_panels(load(GRAFANA / "dashboards" / "business.json"))
        if p["title"] == "Retention in the range"
    ]
    time_range = TimeRange(paris_day(date(2026, 3, 28))[0], paris_day(date(2026, 3, 29))[1])
    _, [(d1, d7, d30)] = run_panel(as_user(paris_store, READER), "business.json", panel, time_range)
    assert d1 == pytest.approx(50 / 101) and d7 is None and d30 is None


@pytest.mark.parametrize("interval", ["1h", "2h", "3h", "6h", "12h", "1d", "7d", "30d"])
def test_panel_time_buckets_are_grafana_s_time_groups(store_url, interval):
    """The dashboards' time bucket (`date_bin` on timestamps) is Grafana's `$__timeGroupAlias(time,
    $__interval)` (numeric epoch arithmetic), bucket for bucket, at every interval Grafana picks
    for hourly panels: each hour over two years lands in the same bucket, as the same instant."""
    time_range = TimeRange(datetime(2025, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    hours = (
        "FROM generate_series(timestamptz '2025-01-01 00:00+00', timestamptz '2026-12-31 23:00+00',"
        " interval '1 hour') AS time"
    )
    grafana = expand(
        f"SELECT extract(epoch FROM time), $__timeGroupAlias(time, $__interval) {hours}",
        time_range,
        interval=interval,
    )
    ours = expand(
        f"SELECT extract(epoch FROM time), extract(epoch FROM bucket) FROM (SELECT time, "
        f"{TIME_BUCKET.replace(' AS time', ' AS bucket')} {hours}) buckets",
        time_range,
        interval=interval,
    )
    expected = query(store_url, grafana)
    assert len(expected) == 2 * 365 * 24
    assert query(store_url, ours) == expected


@pytest.mark.parametrize(
    ("days", "width", "minimum", "interval"),
    [
        (365, 1000, "1ms", "6h"),  # a year on a panel 1,000 px wide
        (365, 900, "1ms", "12h"),
        (90, 1000, "1ms", "2h"),
        (30, 1000, "1ms", "30m"),
        (30, 1000, "1h", "1h"),  # the dashboards' hourly panels never go below an hour
        (7, 1000, "1ms", "10m"),
        (3285, 1000, "1ms", "1d"),  # nine years
        (3285, 400, "1ms", "7d"),
        (3285, 100, "1ms", "30d"),
        (1, 1000, "1ms", "1m"),
    ],
)
def test_a_panel_s_interval_is_the_browser_s(days, width, minimum, interval):
    end = datetime(2026, 3, 12, tzinfo=UTC)
    time_range = TimeRange(end - timedelta(days=days), end)
    assert panel_interval(time_range, width, minimum) == interval
