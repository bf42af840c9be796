"""Security against real servers: no identifier or value from the settings or from a source reaches
SQL as text, the dashboards' role can only read, the writer needs only what it uses, and no secret
shows up in a log, in run metadata or in an error.

The writer's privileges (what `test_the_writer_needs_only_these_privileges` grants, and nothing
else, on a store that another role migrated) are `WRITER_GRANTS` below.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import traceback
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, urlsplit

import dagster as dg
import psycopg2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from psycopg2 import sql

from metrics_platform.definitions import build_definitions
from metrics_platform.defs.jobs import HOURLY_JOB
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV, connect
from metrics_platform.lib.embedded_postgres import free_port
from metrics_platform.lib.errors import ConfigurationError, MetricsPlatformError
from metrics_platform.lib.metric_rows import METRIC_NAME
from metrics_platform_tests.conftest import execute, new_database, query
from metrics_platform_tests.processes import instance_home
from metrics_platform_tests.stubs import PrometheusStub
from metrics_platform_tests.test_faults import (
    HOUR,
    PARIS_HOUR,
    QUIET,
    REQUESTS_QUERY,
    SETTINGS,
    admin,
    dashboard,
    dbname,
    error_chain,
    product_database,
    run_in_process,
    snapshot,
)

UTC = timezone.utc
ENABLED = {PRODUCT_DATABASE_URL_ENV: "postgresql://set-by-the-run", DATABASE_URL_ENV: "set"}
GA4_SECTION = {"property_id": "123456789", "metrics": {"sessions": "ga.sessions"}}
QUERY = {"query": REQUESTS_QUERY, "metric": "http.requests.{job}", "aggregation": "sum"}

# --- Identifiers from the settings ----------------------------------------------------------------

INJECTIONS = [
    "users; DROP TABLE users",
    'users"; DROP TABLE users; --',
    "x') OR 1=1 --",
    "users /* comment */",
    "public.users; --",
    "users\x00",
    '"users"',
    "users;--",
]


def _with(section: str, path: str, value) -> dict:
    """SETTINGS (every source enabled) plus GA4 and Prometheus, with one setting replaced
    (`metrics_key` stands for the key of the GA4 metrics mapping)."""
    settings_ = json.loads(json.dumps(SETTINGS))
    settings_["ga4"] = json.loads(json.dumps(GA4_SECTION))
    settings_["prometheus"] = {"queries": [dict(QUERY)]}
    if path == "metrics_key":
        settings_["ga4"]["metrics"] = {value: "ga.sessions"}
        return settings_
    target = settings_[section]
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    target[last] = value
    return settings_


IDENTIFIER_SETTINGS = [
    ("product_db", "tables.0.table", "product_db.tables[].table"),
    ("product_db", "tables.0.created_at_column", "product_db.tables[].created_at_column"),
    ("product_db", "tables.0.id_column", "product_db.tables[].id_column"),
    ("product_db", "tables.0.metric", "product_db.tables[].metric"),
    *(
        ("crawlers", key, f"crawlers.{key}")
        for key in (
            "crawlers_table",
            "status_table",
            "id_column",
            "created_at_column",
            "deleted_at_column",
            "status_crawler_column",
            "stage_column",
            "changed_at_column",
        )
    ),
    *(
        ("events", key, f"events.{key}")
        for key in ("table", "type_column", "occurred_at_column", "duration_column", "error_column")
    ),
    ("ga4", "property_id", "ga4.property_id"),
    ("ga4", "metrics_key", "ga4.metrics"),
    ("ga4", "metrics.sessions", "ga4.metrics.sessions"),
    ("ga4", "dimensions", "ga4.dimensions"),
    ("prometheus", "url_env", "prometheus.url_env"),
    ("prometheus", "queries.0.metric", "prometheus.queries[0].metric"),
]


@pytest.mark.parametrize(
    "section, path, key", IDENTIFIER_SETTINGS, ids=[k for *_, k in IDENTIFIER_SETTINGS]
)
@pytest.mark.parametrize("injection", INJECTIONS[:4], ids=range(4))
def test_an_injection_shaped_name_in_any_setting_is_refused_at_load_naming_the_key(
    section, path, key, injection
):
    value = [injection] if path == "dimensions" else injection
    if path == "queries.0.metric":
        value = "http.{job}." + injection
    with pytest.raises(ConfigurationError) as caught:
        build_definitions(_with(section, path, value), ENABLED)
    assert str(caught.value).startswith(key), str(caught.value)


@pytest.mark.parametrize("injection", INJECTIONS, ids=range(len(INJECTIONS)))
def test_kpis_refuse_injection_shaped_names_and_formulas(injection):
    for kpi, key in (
        ({"name": injection, "formula": "objects.users.count"}, "kpis[0].name"),
        ({"name": "kpi.x", "formula": f"objects.users.count + {injection}"}, "kpis[0].formula"),
    ):
        with pytest.raises(ConfigurationError) as caught:
            build_definitions({**SETTINGS, "kpis": [kpi]}, ENABLED)
        assert str(caught.value).startswith(key), str(caught.value)


# --- Values from the sources ------------------------------------------------------------------------

EVENT_TYPES = [
    "x'); DROP TABLE users; --",
    "'; DELETE FROM metrics.metric; --",
    'a"b',
    "$$; TRUNCATE metrics.hourly_values; $$",
]
DEVICES = ["'); DROP TABLE metrics.hourly_values; --", "desktop"]
WINDOW_START = datetime(2026, 3, 10, 5, tzinfo=UTC)


def relations(url: str) -> list[tuple]:
    """Every table and view outside the system schemas, with its exact row count."""
    rows = query(
        url,
        """SELECT n.nspname, c.relname, c.relkind FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'v') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE 'pg_toast%%' ORDER BY 1, 2""",
    )
    counted = []
    for schema, name, kind in rows:
        count = query(url, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name)))[
            0
        ][0]
        counted.append((schema, name, kind, count))
    return counted


def test_injection_shaped_values_from_sources_become_sanitized_names_and_change_nothing(
    postgres_server, store_url, ga4_server
):
    from metrics_platform.demo.ga4_sample_server import Reply
    from metrics_platform.lib.metric_rows import sanitize_name_part

    product = product_database(postgres_server, None)
    execute(
        product,
        "INSERT INTO events (type, occurred_at, duration_ms, failed) "
        "SELECT t, %s::timestamptz + n * interval '5 minutes', 10 * n, n = 1 "
        "FROM unnest(%s::text[]) AS t, generate_series(1, 3) AS n",
        (WINDOW_START, EVENT_TYPES),
    )
    execute(
        product,
        "INSERT INTO spiders (name, created_at) VALUES (%s, %s)",
        (EVENT_TYPES[0], WINDOW_START),
    )
    product_before, store_before = relations(product), relations(store_url)
    ga4_server.fallback = Reply(
        body={
            "dimensionHeaders": [{"name": "dateHour"}, {"name": "deviceCategory"}],
            "metricHeaders": [{"name": "sessions", "type": "TYPE_INTEGER"}],
            "rows": [
                {
                    "dimensionValues": [{"value": PARIS_HOUR}, {"value": device}],
                    "metricValues": [{"value": "4"}],
                }
                for device in DEVICES
            ],
            "rowCount": len(DEVICES),
            "metadata": {"timeZone": "Europe/Paris"},
        }
    )
    settings_ = {**SETTINGS, "ga4": {**GA4_SECTION, "dimensions": ["deviceCategory"]}}
    with pytest.MonkeyPatch.context() as env:
        env.setenv(DATABASE_URL_ENV, store_url)
        env.setenv(PRODUCT_DATABASE_URL_ENV, product)
        env.setenv("METRICS_PLATFORM_GA4_ENDPOINT", ga4_server.url)
        job = build_definitions(settings_).resolve_job_def(HOURLY_JOB)
        with dg.DagsterInstance.ephemeral() as instance:
            result = job.execute_in_process(
                instance=instance, partition_key=HOUR, run_config=QUIET, raise_on_error=False
            )
    assert result.success

    names = {row[0] for row in query(store_url, "SELECT name FROM metrics.metric")}
    assert all(METRIC_NAME.fullmatch(name) for name in names)
    values = dict(
        ((metric, time), value)
        for metric, time, value in query(
            store_url, "SELECT metric, time, value FROM metrics.hourly_values_by_name"
        )
    )
    for event_type in EVENT_TYPES:  # three of each, one failed, in the hour
        prefix = f"events.{sanitize_name_part(event_type)}"
        assert values[(f"{prefix}.count", WINDOW_START)] == 3.0
        assert values[(f"{prefix}.errors", WINDOW_START)] == 1.0
    assert values[("events.x_DROP_TABLE_users_--.count", WINDOW_START)] == 3.0
    assert values[("ga.sessions.DROP_TABLE_metrics_hourly_values_--", WINDOW_START)] == 4.0
    assert values[("ga.sessions.desktop", WINDOW_START)] == 4.0

    # The product database is as it was; the store only gained the raw tables and its rows.
    assert relations(product) == product_before
    after = relations(store_url)
    assert [r[:3] for r in after if r[0] != "raw"] == [r[:3] for r in store_before]
    assert {r[1] for r in after if r[0] == "raw"} == {
        "product_db_row_counts",
        "crawler_status",
        "events_hourly",
        "ga4_report",
    }


def test_injection_shaped_prometheus_labels_never_reach_the_store(
    store_and_product, prometheus_stub
):
    """Whatever becomes of the series (refused today: its name is not a metric name), the label's
    text reaches no SQL statement: every table is intact and every stored name is well-formed."""
    store, product = store_and_product
    before = relations(store)

    def labels(params):
        body = PrometheusStub.matrix(params)
        body["data"]["result"][0]["metric"]["job"] = "x'); DROP TABLE metrics.metric; --"
        return 200, body

    prometheus_stub.reply = labels
    settings_ = {**SETTINGS, "prometheus": {"queries": [QUERY]}}
    with pytest.MonkeyPatch.context() as env:
        env.setenv(DATABASE_URL_ENV, store)
        env.setenv(PRODUCT_DATABASE_URL_ENV, product)
        env.setenv("METRICS_PLATFORM_PROMETHEUS_URL", prometheus_stub.url)
        job = build_definitions(settings_).resolve_job_def(HOURLY_JOB)
        with dg.DagsterInstance.ephemeral() as instance:
            job.execute_in_process(
                instance=instance, partition_key=HOUR, run_config=QUIET, raise_on_error=False
            )
    after = relations(store)
    assert {r[:2] for r in before} <= {r[:2] for r in after}
    names = [row[0] for row in query(store, "SELECT name FROM metrics.metric")]
    assert names and all(METRIC_NAME.fullmatch(name) for name in names)
    stored = query(store, "SELECT DISTINCT metric FROM metrics.hourly_values_by_name")
    assert all(METRIC_NAME.fullmatch(name) for (name,) in stored)


@pytest.fixture
def store_and_product(postgres_server, store_url) -> tuple[str, str]:
    return store_url, product_database(postgres_server, None)


@pytest.mark.parametrize(
    "label, name",
    [
        ("/api/v1/query", "http.requests.api_v1_query"),
        ("x'); DROP TABLE metrics.metric; --", "http.requests.x_DROP_TABLE_metrics_metric_--"),
    ],
)
def test_prometheus_label_values_become_sanitized_metric_names(label, name):
    from metrics_platform.defs.sources.prometheus.normalize import normalize_matrix

    start = datetime(2026, 3, 10, tzinfo=UTC)
    payload = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"job": label}, "values": [[start.timestamp() + 3600, "3"]]}],
        },
    }
    frame, _ = normalize_matrix(payload, "http.requests.{job}", start, start.replace(hour=1))
    assert frame["metric"].tolist() == [name]


# --- Who may do what in the store -----------------------------------------------------------------

WRITES = [
    "INSERT INTO metrics.hourly_values SELECT metric_id, hour + interval '1 year', value "
    "FROM metrics.hourly_values LIMIT 1",
    "UPDATE metrics.metric SET description = 'changed'",
    "DELETE FROM metrics.hourly_values",
    "TRUNCATE metrics.hourly_values",
    "CREATE TABLE metrics.reader_was_here (x integer)",
    "CREATE TABLE public.reader_was_here (x integer)",
]


def as_role(url: str, role: str, password: str | None = None) -> str:
    parts = urlsplit(url)
    user = f"{role}:{password}" if password else role
    return parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}").geturl()


def denied(url: str, statement: str, *, read_write: bool = False) -> type[Exception] | None:
    conn = connect(url, application_name="security probe")
    try:
        with conn, conn.cursor() as cur:
            if read_write:
                cur.execute("SET TRANSACTION READ WRITE")
            cur.execute(statement)
        return None
    except psycopg2.Error as exc:
        return type(exc)
    finally:
        conn.close()


def test_the_dashboards_role_reads_the_metrics_and_nothing_else(
    postgres_server, store_url, tmp_path, monkeypatch
):
    from metrics_platform.lib.grafana_role import ensure_reader_role

    product = product_database(postgres_server, None)
    assert run_in_process(store_url, product).success
    # Dagster's runs and event logs live in the same database (dagster.yaml).
    (tmp_path / "dagster.yaml").write_text(
        (Path(__file__).resolve().parent.parent / "dagster.yaml").read_text()
    )
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.get_run_records() == []
    role, password = f"grafana_{uuid.uuid4().hex[:8]}", f"Gr4f-{uuid.uuid4().hex}"
    conn = connect(store_url)
    try:
        ensure_reader_role(conn, role, password)
    finally:
        conn.close()
    reader = as_role(store_url, role, password)

    assert dashboard(reader) == dashboard(store_url)  # the dashboards' query
    for relation in ("metric", "hourly_values", "daily_values_by_name", "hourly_kpis"):
        query(reader, f"SELECT count(*) FROM metrics.{relation}")
    for statement in WRITES:
        assert denied(reader, statement) is psycopg2.errors.ReadOnlySqlTransaction, statement
        assert denied(reader, statement, read_write=True) is psycopg2.errors.InsufficientPrivilege
    # Neither the raw source data nor Dagster's run storage (error messages, metadata).
    for relation in ("raw.product_db_row_counts", "public.runs", "public.event_logs"):
        assert denied(reader, f"SELECT * FROM {relation} LIMIT 1") is (
            psycopg2.errors.InsufficientPrivilege
        ), relation
    assert query(
        store_url, "SELECT count(*) FROM metrics.metric WHERE description = 'changed'"
    ) == [(0,)]


# What the platform's writer needs in the metric store: connect and stage COPYs in temporary
# tables; read and extend the catalog (INSERT ... ON CONFLICT DO UPDATE needs UPDATE); replace
# windows of the value tables (SELECT, INSERT, UPDATE, DELETE; UPDATE on the catalog also lets
# the metric id check lock the catalog rows it relies on); create the raw tables in `raw`; read
# `schema_migrations` (every run calls `store.migrate`). Pending migrations need the schema's
# owner. In the product database: CONNECT, and SELECT on the counted tables, the crawler tables
# and the events table.
WRITER_GRANTS = """
REVOKE ALL ON DATABASE {db} FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {role};
GRANT USAGE ON SCHEMA metrics TO {role};
GRANT USAGE, CREATE ON SCHEMA raw TO {role};
GRANT SELECT ON metrics.schema_migrations TO {role};
GRANT SELECT, INSERT, UPDATE ON metrics.metric TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE
    ON metrics.hourly_values, metrics.daily_values, metrics.hourly_kpis, metrics.daily_kpis
    TO {role};
"""
PRODUCT_GRANTS = """
GRANT SELECT ON users, profiles, api_keys, spiders, spider_status, events TO {role};
"""


def test_the_writer_needs_only_these_privileges(postgres_server, store_url):
    product = product_database(postgres_server, None)
    role = f"writer_{uuid.uuid4().hex[:8]}"
    execute(store_url, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    execute(store_url, "CREATE SCHEMA raw")
    names = {"db": sql.Identifier(dbname(store_url)), "role": sql.Identifier(role)}
    execute(store_url, sql.SQL(WRITER_GRANTS).format(**names))
    execute(product, sql.SQL(PRODUCT_GRANTS).format(**names))
    writer = as_role(store_url, role)

    assert run_in_process(writer, as_role(product, role)).success
    reference = new_database(postgres_server, "reference")
    assert run_in_process(reference, product).success
    assert snapshot(store_url) == snapshot(reference)
    # ... and it holds nothing more: no DDL on the store's tables, no catalog deletes.
    assert query(
        store_url,
        "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = %s",
        (role,),
    ) == [(False, False, False, False)]
    for statement in (
        "DELETE FROM metrics.metric",
        "TRUNCATE metrics.hourly_values",
        "DROP TABLE metrics.hourly_values",
        "ALTER TABLE metrics.metric ADD COLUMN x integer",
        "CREATE SCHEMA elsewhere",
        "CREATE TABLE metrics.elsewhere (i integer)",
    ):
        assert denied(writer, statement) is psycopg2.errors.InsufficientPrivilege, statement


# --- Secrets ---------------------------------------------------------------------------------------


class Receiver:
    """A webhook that records every post (`posts`) and answers it with HTTP 500."""

    def __init__(self):
        self.posts: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(body.decode("utf-8", "replace"))
                self.send_response(500)
                self.end_headers()

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.port = self._httpd.server_address[1]

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()


def service_account_key(path: Path, token_uri: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "sample",
                "private_key_id": f"key-{uuid.uuid4().hex}",
                "private_key": pem,
                "client_email": "reader@sample.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_uri,
            }
        )
    )
    return pem


def leaks(secrets: dict[str, str], texts: dict[str, str]) -> list[tuple[str, str, list[str]]]:
    """(secret, where, encodings) of every secret found in a text, in any encoding."""
    from metrics_platform_tests.test_redaction import leaked

    found = []
    for secret, value in secrets.items():
        for where, text in texts.items():
            encodings = leaked(value, text)
            if encodings:
                found.append((secret, where, encodings))
    return found


# A password with the characters that break a URL: percent-encoded in the URLs that must work,
# as is in one that does not parse.
HOSTILE_PASSWORD = "Db%zz/@:Pa55-"
SECRETS_SETTINGS_ENV = "SECURITY_TEST_SETTINGS"


def secrets_job():
    """The hourly job as the definitions build it from the settings in SECRETS_SETTINGS_ENV:
    reconstructable, so that its steps run in processes of their own, as in production."""
    return build_definitions(json.loads(os.environ[SECRETS_SETTINGS_ENV])).resolve_job_def(
        HOURLY_JOB
    )


def store_texts(url: str) -> dict[str, str]:
    """Every value of every table of a database (Dagster's runs and event logs, the store)."""
    conn = connect(url, application_name="secret scan")
    texts = {}
    try:
        with conn, conn.cursor() as cur:
            for schema, name, _, _ in relations(url):
                cur.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(schema, name)))
                for index, row in enumerate(cur.fetchall()):
                    values = [
                        bytes(v).decode("latin-1")
                        if isinstance(v, (bytes, memoryview))
                        else v
                        if isinstance(v, str)
                        else repr(v)
                        for v in row
                    ]
                    texts[f"table {schema}.{name} row {index}"] = "\n".join(values)
    finally:
        conn.close()
    return texts


def test_no_secret_reaches_a_log_run_metadata_or_error_message(
    postgres_server, tmp_path, monkeypatch, capfd, ga4_server, prometheus_stub
):
    """A real run, its steps in processes of their own, on an instance configured by the
    repository's dagster.yaml (runs and event logs in Postgres), against hostile peers that echo
    the credentials they were sent, and every other secret, in their error bodies. No secret of
    any kind, in any encoding, reaches the event log tables, the compute logs, stdout or
    stderr, the alert, or the errors raised directly."""
    from metrics_platform.defs.automation.alerts import (
        WEBHOOK_ENV,
        AlertWebhook,
        run_failure_alerts,
    )
    from metrics_platform.defs.sources.ga4 import CREDENTIALS_FILE_ENV, ENDPOINT_ENV
    from metrics_platform.defs.sources.prometheus import TOKEN_ENV, URL_ENV
    from metrics_platform.demo.ga4_sample_server import Reply, api_error
    from metrics_platform.lib.grafana_role import PASSWORD_ENV

    tag = uuid.uuid4().hex
    role, password = f"writer_{tag[:8]}", f"{HOSTILE_PASSWORD}{tag}"
    conn = admin(postgres_server)
    store_name = f"secret_store_{tag[:8]}"
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
            cur.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(store_name), sql.Identifier(role)
                )
            )
    finally:
        conn.close()
    product = product_database(postgres_server, None)
    execute(product, sql.SQL(PRODUCT_GRANTS).format(role=sql.Identifier(role)))
    port = postgres_server.port
    encoded = quote(password, safe="")
    store_url = f"postgresql+psycopg2://{role}:{encoded}@127.0.0.1:{port}/{store_name}"
    product_url = as_role(product, role, encoded)
    # A source's url_env with the password as is: the URL does not parse.
    unparsable = f"postgresql+psycopg2://{role}:{password}@127.0.0.1:{port}/{store_name}"

    key_file = tmp_path / "ga4-key.json"
    pem = service_account_key(key_file, f"{ga4_server.url}token")
    key_lines = pem.strip().splitlines()[1:-1]
    access_token = f"ya29.access-{tag}"
    token = f"prom-token-{tag}"
    grafana_password = f"Gr4f-{tag}"
    receiver = Receiver()
    webhook = f"http://127.0.0.1:{receiver.port}/services/T000/B000/hook-{tag}"
    everything = [password, webhook, grafana_password, *key_lines]
    echoed = " ".join(
        [password, encoded, json.dumps(password), webhook, grafana_password, *key_lines]
    )
    ga4_server.token_reply = Reply(
        body={"access_token": access_token, "expires_in": 3600, "token_type": "Bearer"}
    )
    ga4_server.fallback = api_error(401, f"Invalid credentials: Bearer {access_token}; {echoed}")

    def echo_the_authorization(params):
        sent = prometheus_stub.requests[-1]["authorization"]
        body = f"401 Unauthorized: bad credentials ({sent}) {echoed}"
        return 401, body.encode()

    prometheus_stub.reply = echo_the_authorization
    settings_ = {
        **SETTINGS,
        "events": {**SETTINGS["events"], "url_env": "FAULTS_EVENTS_DATABASE_URL"},
        "ga4": GA4_SECTION,
        "prometheus": {"queries": [QUERY]},
    }
    for name, value in {
        DATABASE_URL_ENV: store_url,
        PRODUCT_DATABASE_URL_ENV: product_url,
        "FAULTS_EVENTS_DATABASE_URL": unparsable,
        CREDENTIALS_FILE_ENV: str(key_file),
        ENDPOINT_ENV: ga4_server.url,
        URL_ENV: prometheus_stub.url,
        TOKEN_ENV: token,
        WEBHOOK_ENV: webhook,
        PASSWORD_ENV: grafana_password,
        SECRETS_SETTINGS_ENV: json.dumps(settings_),
    }.items():
        monkeypatch.setenv(name, value)
    home = instance_home("metrics_platform_secrets_")
    texts: dict[str, str] = {}
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            result = dg.execute_job(
                dg.reconstructable(secrets_job),
                instance=instance,
                tags={"dagster/partition": HOUR},
                raise_on_error=False,
            )
            run_id = result.run_id
            failures = {e.step_key: e for e in result.get_step_failure_events()}
            assert set(failures) == {
                "raw__ga4_report",
                "raw__prometheus_series",
                "raw__events_hourly",
            }
            landed = {
                e.asset_key.to_user_string() for e in result.get_asset_materialization_events()
            }
            assert landed == {"raw/product_db_row_counts", "raw/crawler_status"}
            # The failures went through the paths that handle the secrets.
            assert "events: the URL does not parse" in error_chain(failures["raw__events_hourly"])
            assert "answered 401: Invalid credentials: Bearer ***" in error_chain(
                failures["raw__ga4_report"]
            )
            assert "HTTP 401: '401 Unauthorized: bad credentials (Bearer ***)" in error_chain(
                failures["raw__prometheus_series"]
            )
            assert {r["authorization"] for r in prometheus_stub.requests} == {f"Bearer {token}"}
            assert set(ga4_server.authorizations) == {f"Bearer {access_token}"}

            # The alert for this run, to a webhook that fails.
            run = instance.get_run_by_id(run_id)
            event = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[
                0
            ].dagster_event
            context = dg.build_run_status_sensor_context(
                sensor_name="run_failure_alerts",
                dagster_event=event,
                dagster_instance=instance,
                dagster_run=run,
            ).for_run_failure()
            with pytest.raises(Exception) as alert:
                run_failure_alerts(context, alert_webhook=AlertWebhook(url=webhook))
            texts["alert error"] = "".join(traceback.format_exception(alert.value))
            texts.update({f"alert post {i}": post for i, post in enumerate(receiver.posts)})
            assert receiver.posts, "the alert was not sent"
        # Everything the instance stored: runs and event logs in Postgres, compute logs in files.
        texts.update(store_texts(store_url))
        assert any("event_logs" in where for where in texts)
        compute_logs = [path for path in home.rglob("*") if path.is_file()]
        assert any(path.suffix in (".err", ".out") for path in compute_logs), compute_logs
        for path in compute_logs:
            texts[f"instance file {path.name}"] = path.read_bytes().decode("latin-1")
    finally:
        receiver.stop()
        shutil.rmtree(home, ignore_errors=True)

    # The same failures raised directly, with their whole traceback.
    from metrics_platform.defs.sources.events.resource import EventLog
    from metrics_platform.defs.sources.ga4.resource import GoogleAnalytics
    from metrics_platform.defs.sources.prometheus.resource import Prometheus

    start = datetime(2026, 3, 10, 5, tzinfo=UTC)
    unreachable = f"postgresql+psycopg2://{role}:{encoded}@127.0.0.1:{free_port()}/gone"
    for name, call in {
        "events": lambda: EventLog(url=unparsable).stats(start, start.replace(hour=6), by="hour"),
        "ga4": lambda: GoogleAnalytics(
            **GA4_SECTION, credentials_file=str(key_file), endpoint=ga4_server.url
        ).run_report(start, start.replace(hour=6)),
        "prometheus": lambda: Prometheus(
            base_url=prometheus_stub.url, token=token, max_retries=0
        ).query_range("up", start, start.replace(hour=6)),
        "store": lambda: connect(unreachable),
        "store, unparsable": lambda: connect(unparsable),
    }.items():
        with pytest.raises(MetricsPlatformError) as caught:
            call()
        texts[f"{name} error"] = "".join(traceback.format_exception(caught.value)) + repr(
            caught.value
        )
    captured = capfd.readouterr()
    texts["stdout"], texts["stderr"] = captured.out, captured.err
    assert "raw__ga4_report" in texts["stderr"]  # the run's log lines were captured

    secrets = {
        "database password": password,
        "database password, percent-encoded part": f"%zz/@:Pa55-{tag}",
        "Prometheus token": token,
        "GA4 access token": access_token,
        "webhook URL": webhook,
        "webhook token": f"hook-{tag}",
        "Grafana reader password": grafana_password,
        "private key header": "PRIVATE KEY",
        **{f"private key line {i}": line for i, line in enumerate(key_lines)},
    }
    assert everything  # every secret was echoed by the hostile peers
    assert leaks(secrets, texts) == []


def test_a_password_given_as_a_url_parameter_is_not_shown_either():
    secret = f"S3cret-{uuid.uuid4().hex}"
    with pytest.raises(MetricsPlatformError) as caught:
        connect(f"postgresql+psycopg2://writer@127.0.0.1:{free_port()}/store?password={secret}")
    assert secret not in str(caught.value)
