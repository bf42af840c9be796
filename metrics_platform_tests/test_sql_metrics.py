"""SQL metrics declared in the settings, against real Postgres: a range equals the same query
hour by hour (labels, zeros, window edges), business days across DST, late rows, the
completeness of every hour, and each refusal (rows outside the window, duplicate keys, NULL
hours, non-numeric values, slow or writing queries, bad settings), naming the metric."""

import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_platform.defs.automation.late_data import STALE_FROM, STALE_TO
from metrics_platform.defs.sources.sql_metrics import build_source
from metrics_platform.defs.sources.sql_metrics.assets import HOURLY_KEY
from metrics_platform.defs.sources.sql_metrics.normalize import read_rows
from metrics_platform.defs.sources.sql_metrics.resource import SqlMetricQueries, load_queries
from metrics_platform.lib.database import PRODUCT_DATABASE_URL_ENV, connect
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.demo_orders import seed_orders
from metrics_platform.lib.errors import ConfigurationError, SourceError
from metrics_platform.lib.settings import DEFAULT_CONFIG, load_settings
from metrics_platform_tests.conftest import (
    SOURCE_DAYS,
    SOURCE_HOURS,
    execute,
    new_database,
    query,
)
from metrics_platform_tests.job_runs import failure_message, run_job

UTC = timezone.utc
T0 = datetime(2026, 3, 10, tzinfo=UTC)
ONE_HOUR = timedelta(hours=1)
REPO = Path(__file__).resolve().parent.parent
PARIS = ZoneInfo("Europe/Paris")
ENV = {PRODUCT_DATABASE_URL_ENV: "set"}

ORDERS_SQL = "CREATE TABLE orders (plan text, amount numeric, paid_at timestamptz)"
REVENUE = {
    "metric": "revenue",
    "query": "SELECT date_trunc('hour', paid_at) AS hour, sum(amount) AS value FROM orders "
    "WHERE paid_at >= %(start)s AND paid_at < %(end)s GROUP BY 1",
    "aggregation": "sum",
    "unit": "EUR",
    "description": "Revenue of paid orders.",
}
BY_PLAN = {
    "metric": "orders.{plan}",
    "query": "SELECT date_trunc('hour', paid_at), plan, count(*) FROM orders "
    "WHERE paid_at >= %(start)s AND paid_at < %(end)s GROUP BY 1, 2",
    "aggregation": "sum",
    "unit": "orders",
}
BUYERS_DAILY = (
    "SELECT (paid_at AT TIME ZONE %(timezone)s)::date, count(DISTINCT plan) FROM orders "
    "WHERE paid_at >= %(start)s AND paid_at < %(end)s GROUP BY 1"
)
PLANS_BUYING = {
    "metric": "plans.buying",
    "query": BY_PLAN["query"]
    .replace("plan, count(*)", "count(DISTINCT plan)")
    .replace("GROUP BY 1, 2", "GROUP BY 1"),
    "daily_query": BUYERS_DAILY,
    "aggregation": "recomputed",
    "zero_when_empty": True,
}


def insert_orders(url: str, orders) -> None:
    """(plan, amount, paid_at) rows."""
    conn = connect(url)
    try:
        with conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO orders VALUES (%s, %s, %s)", list(orders))
    finally:
        conn.close()


def hourly(store_url: str) -> dict:
    rows = query(store_url, f"SELECT metric, time, value FROM {SOURCE_HOURS}")
    return {(m, pd.Timestamp(t)): v for m, t, v in rows}


def queries_for(product_url: str, *entries, **section) -> SqlMetricQueries:
    queries = load_queries({"queries": list(entries), **section})
    return SqlMetricQueries(queries=[q.model_copy(update={"url": product_url}) for q in queries])


def hour_by_hour(product_url: str, entry: dict, start: datetime, hours: int) -> dict:
    """The query run alone for each hour of the window: (metric, hour) -> value."""
    reader = queries_for(product_url, entry)
    (q,) = reader.queries
    values = {}
    for h in range(hours):
        first = start + h * ONE_HOUR
        columns, rows = reader.read(q, first, first + ONE_HOUR)
        frame = read_rows(q.metric, columns, rows, first, first + ONE_HOUR)
        values.update({(m, pd.Timestamp(t)): v for t, m, v in frame.itertuples(index=False)})
    return values


# --- A range equals the same query hour by hour ----------------------------------------------

_order = st.tuples(
    st.sampled_from(["free", "pro", "team business"]),
    st.integers(1, 500),
    # minutes after T0, many of them exactly on an hour boundary
    st.integers(0, 600) | st.integers(0, 10).map(lambda h: 60 * h),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(orders=st.lists(_order, max_size=30), first_hour=st.integers(0, 6), hours=st.integers(1, 6))
def test_a_window_reads_what_its_hours_read_one_by_one(product_url, orders, first_hour, hours):
    execute(product_url, "DROP TABLE IF EXISTS orders")
    execute(product_url, ORDERS_SQL)
    insert_orders(product_url, [(p, a, T0 + timedelta(minutes=m)) for p, a, m in orders])
    start = T0 + first_hour * ONE_HOUR
    for entry in (REVENUE, BY_PLAN):
        reader = queries_for(product_url, entry)
        (q,) = reader.queries
        columns, rows = reader.read(q, start, start + hours * ONE_HOUR)
        frame = read_rows(q.metric, columns, rows, start, start + hours * ONE_HOUR)
        assert {
            (m, pd.Timestamp(t)): v for t, m, v in frame.itertuples(index=False)
        } == hour_by_hour(product_url, entry, start, hours)


def test_a_range_run_stores_every_hour_with_labels_and_zeros(store_url, product_url, monkeypatch):
    """One run over 6 hours: each hour's values are its own query's, a plan or revenue without
    orders in an hour is 0 (the source read it), and every hour is complete."""
    execute(product_url, ORDERS_SQL)
    insert_orders(
        product_url,
        [
            ("pro", 10, T0 + timedelta(minutes=5)),
            ("pro", Decimal("2.5"), T0 + timedelta(minutes=59, seconds=59)),
            ("team business", 100, T0 + 2 * ONE_HOUR),  # exactly 02:00: hour 02:00's
            ("free", 1, T0 + timedelta(hours=4, minutes=30)),
            ("late", 1, T0 + 6 * ONE_HOUR),  # outside the window
        ],
    )
    result = run_job(
        {"sql_metrics": {"queries": [REVENUE, BY_PLAN]}},
        store_url,
        product_url,
        "2026-03-10-00:00",
        "2026-03-10-05:00",
        monkeypatch,
    )
    assert result.success
    got = hourly(store_url)
    expected = {}
    for entry in (REVENUE, BY_PLAN):
        expected.update(hour_by_hour(product_url, entry, T0, 6))
    names = {"revenue", "orders.pro", "orders.team_business", "orders.free"}
    hours = [pd.Timestamp(T0 + h * ONE_HOUR) for h in range(6)]
    assert got == {(n, h): expected.get((n, h), 0.0) for n in names for h in hours}
    assert got[("revenue", hours[0])] == 12.5 and got[("orders.team_business", hours[2])] == 1
    complete = query(
        store_url,
        "SELECT sum(value) FROM metrics.hourly_values_by_name WHERE metric = 'platform.hour_complete'",
    )
    assert complete == [(6.0,)]
    catalog = dict(
        (name, (unit, aggregation, description))
        for name, unit, aggregation, description in query(
            store_url,
            "SELECT name, unit, aggregation, description FROM metrics.metric "
            "WHERE source = 'sql_metrics'",
        )
    )
    assert catalog["revenue"] == ("EUR", "sum", "Revenue of paid orders.")
    assert catalog["orders.pro"] == ("orders", "sum", "")


def test_a_known_labelled_metric_is_zero_in_a_later_run_without_its_rows(
    store_url, product_url, monkeypatch
):
    execute(product_url, ORDERS_SQL)
    insert_orders(product_url, [("pro", 10, T0)])
    settings_ = {"sql_metrics": {"queries": [BY_PLAN]}}
    for hour in ("2026-03-10-00:00", "2026-03-10-01:00"):
        assert run_job(settings_, store_url, product_url, hour, hour, monkeypatch).success
    assert hourly(store_url) == {
        ("orders.pro", pd.Timestamp(T0)): 1.0,
        ("orders.pro", pd.Timestamp(T0 + ONE_HOUR)): 0.0,
    }


def test_a_last_metric_gets_no_made_up_zero(store_url, product_url, monkeypatch):
    execute(product_url, ORDERS_SQL)
    insert_orders(product_url, [("pro", 10, T0)])
    gauge = {**REVENUE, "metric": "orders.last_amount", "aggregation": "last"}
    settings_ = {"sql_metrics": {"queries": [gauge]}}
    result = run_job(
        settings_, store_url, product_url, "2026-03-10-00:00", "2026-03-10-01:00", monkeypatch
    )
    assert result.success
    assert hourly(store_url) == {("orders.last_amount", pd.Timestamp(T0)): 10.0}
    # The hour the source read nothing for is not complete: nothing says what it was.
    missing = query(
        store_url,
        "SELECT time, value FROM metrics.hourly_values_by_name "
        "WHERE metric = 'platform.sources_missing' ORDER BY time",
    )
    assert [v for _, v in missing] == [0.0, 1.0]


# --- Late rows ---------------------------------------------------------------------------------


def test_a_late_row_changes_its_own_hour_only(store_url, product_url, monkeypatch):
    execute(product_url, ORDERS_SQL)
    insert_orders(product_url, [("pro", 10, T0 + timedelta(minutes=m)) for m in (10, 70, 130)])
    settings_ = {"sql_metrics": {"queries": [REVENUE]}}
    with dg.instance_for_test() as instance:
        first, last = "2026-03-10-00:00", "2026-03-10-02:00"
        assert run_job(
            settings_, store_url, product_url, first, last, monkeypatch, instance=instance
        ).success
        insert_orders(product_url, [("pro", 5, T0 + timedelta(minutes=75))])  # late, for 01:00
        hour = "2026-03-10-01:00"
        assert run_job(
            settings_, store_url, product_url, hour, hour, monkeypatch, instance=instance
        ).success
        latest = instance.fetch_materializations(HOURLY_KEY, limit=1).records[0]
        assert STALE_FROM not in latest.asset_materialization.metadata
    assert [v for (_, _), v in sorted(hourly(store_url).items())] == [10.0, 15.0, 10.0]


def test_a_late_row_of_a_cumulative_query_leaves_its_later_hours_stale(
    store_url, product_url, monkeypatch
):
    """`propagation: later_hours`: the re-run of a past hour says which stored later hours its
    change reaches, for `later_hours_follow` to recompute."""
    execute(product_url, ORDERS_SQL)
    insert_orders(product_url, [("pro", 10, T0 + timedelta(minutes=10))])
    total = {
        "metric": "orders.total",
        "query": "SELECT h, (SELECT count(*) FROM orders WHERE paid_at < h + interval '1 hour') "
        "FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', "
        "interval '1 hour') AS h",
        "aggregation": "last",
        "propagation": "later_hours",
    }
    settings_ = {"sql_metrics": {"queries": [total]}}
    assert build_source(settings_["sql_metrics"], ENV).cumulative
    with dg.instance_for_test() as instance:
        first, last = "2026-03-10-00:00", "2026-03-10-04:00"
        assert run_job(
            settings_, store_url, product_url, first, last, monkeypatch, instance=instance
        ).success
        insert_orders(product_url, [("pro", 5, T0 + timedelta(minutes=75))])
        hour = "2026-03-10-01:00"
        assert run_job(
            settings_, store_url, product_url, hour, hour, monkeypatch, instance=instance
        ).success
        metadata = instance.fetch_materializations(HOURLY_KEY, limit=1).records[0]
        metadata = metadata.asset_materialization.metadata
        assert (metadata[STALE_FROM].value, metadata[STALE_TO].value) == (
            "2026-03-10-02:00",
            "2026-03-10-04:00",
        )
    catalog = query(store_url, "SELECT propagation FROM metrics.metric WHERE name = 'orders.total'")
    assert catalog == [("later_hours",)]


# --- Business days across DST ---------------------------------------------------------------

DST_RUN = r"""
import sys
from metrics_platform.definitions import build_definitions
from metrics_platform_tests.conftest import RANGE_TAGS
import json
settings = json.loads(sys.argv[1])
defs = build_definitions(settings)
for job, (start, end) in (("hourly_metrics", sys.argv[2:4]), ("daily_metrics", sys.argv[4:6])):
    result = defs.resolve_job_def(job).execute_in_process(
        tags=dict(zip(RANGE_TAGS, (start, end))),
        run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    assert result.success, job
"""


@pytest.mark.parametrize("day, hours", [("2026-03-29", 23), ("2026-10-25", 25)])
def test_daily_values_follow_business_days_across_dst(store_url, product_url, day, hours):
    """Europe/Paris: a `sum` metric's day adds up its 23 or 25 hours; a `recomputed` one is its
    daily query over exactly that local day."""
    local_start = datetime.fromisoformat(day).replace(tzinfo=PARIS)
    utc_start = local_start.astimezone(UTC)
    utc_end = (local_start + timedelta(days=1)).replace(tzinfo=PARIS).astimezone(UTC)
    assert utc_end - utc_start == timedelta(hours=hours)
    execute(product_url, ORDERS_SQL)
    # An order every 20 minutes from 3 hours before to 3 hours after the local day, on a plan
    # named after its UTC hour: the day's distinct plans are its hours, 23 or 25.
    t, orders = utc_start - 3 * ONE_HOUR, []
    while t < utc_end + 3 * ONE_HOUR:
        orders.append((f"plan{(t - utc_start).total_seconds() // 3600:.0f}", 1, t))
        t += timedelta(minutes=20)
    insert_orders(product_url, orders)
    fmt = "%Y-%m-%d-%H:%M"
    settings_ = {"sql_metrics": {"queries": [REVENUE, PLANS_BUYING]}}
    env = {
        **os.environ,
        "METRICS_PLATFORM_BUSINESS_TIMEZONE": "Europe/Paris",
        "METRICS_PLATFORM_DATABASE_URL": store_url,
        PRODUCT_DATABASE_URL_ENV: product_url,
        "PYTHONPATH": str(REPO),
    }
    first_hour = (utc_start - 3 * ONE_HOUR).astimezone(PARIS).strftime(fmt)
    last_hour = (utc_end + 2 * ONE_HOUR).astimezone(PARIS).strftime(fmt)
    out = subprocess.run(
        [sys.executable, "-c", DST_RUN, json.dumps(settings_), first_hour, last_hour, day, day],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    in_day = [o for o in orders if utc_start <= o[2] < utc_end]
    daily = {
        m: v
        for m, d, v in query(store_url, f"SELECT metric, date, value FROM {SOURCE_DAYS}")
        if d == date.fromisoformat(day)
    }
    assert daily == {
        "revenue": float(len(in_day)),
        "plans.buying": float(len({o[0] for o in in_day})),
    }
    assert (daily["revenue"], daily["plans.buying"]) == (hours * 3, hours)


# --- Refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "columns, rows, cause",
    [
        (["h", "v"], [(T0 + 2 * ONE_HOUR, 1)], "outside its window"),
        (["h", "v"], [(T0 - ONE_HOUR, 1)], "outside its window"),
        (["h", "v"], [(T0, 1), (T0, 2)], "two rows for m at"),
        (["h", "v"], [(None, 1)], "a row has no hour (NULL)"),
        (["h", "v"], [(T0, "12")], "'12' is not a number"),
        (["h", "v"], [(T0, True)], "True is not a number"),
        (["h", "v"], [(T0, None)], "m is NULL at"),
        (["h", "v"], [(T0, float("nan"))], "not finite"),
        (["h", "v"], [(T0.replace(tzinfo=None), 1)], "is not a timestamptz"),
        (["h", "v"], [(T0 + timedelta(minutes=5), 1)], "is not on the hour"),
        (["h", "plan", "v"], [(T0, "pro", 1)], "it must return (hour, value)"),
    ],
)
def test_rows_that_do_not_fit_are_refused_naming_the_metric(columns, rows, cause):
    with pytest.raises(SourceError) as raised:
        read_rows("m", columns, rows, T0, T0 + ONE_HOUR)
    assert "source 'sql_metrics': metric 'm'" in str(raised.value)
    assert cause in str(raised.value)


@pytest.mark.parametrize(
    "columns, rows, cause",
    [
        (["h", "v"], [(T0, 1)], "it must return (hour, plan, value)"),
        (["h", "tier", "v"], [(T0, "pro", 1)], "it must return (hour, plan, value)"),
        (["h", "plan", "v"], [(T0, None, 1)], "label 'plan' is NULL"),
        # Two label values that make one metric name are two rows for one key.
        (["h", "plan", "v"], [(T0, "a b", 1), (T0, "a_b", 1)], "two rows for x.a_b at"),
    ],
)
def test_label_columns_must_fill_the_template(columns, rows, cause):
    with pytest.raises(SourceError, match="metric 'x.{plan}'") as raised:
        read_rows("x.{plan}", columns, rows, T0, T0 + ONE_HOUR)
    assert cause in str(raised.value)


def test_a_daily_query_is_refused_days_outside_its_window():
    day = date(2026, 3, 10)
    assert len(read_rows("m", ["d", "v"], [(day, 1)], day, day, period="day")) == 1
    with pytest.raises(SourceError, match="outside its window 2026-03-10..2026-03-10"):
        read_rows("m", ["d", "v"], [(date(2026, 3, 11), 1)], day, day, period="day")
    with pytest.raises(SourceError, match="is not a date"):
        read_rows("m", ["d", "v"], [(T0, 1)], day, day, period="day")


def test_a_query_returning_rows_outside_its_window_fails_its_asset(
    store_url, product_url, monkeypatch
):
    execute(product_url, ORDERS_SQL)
    insert_orders(product_url, [("pro", 1, T0 + 3 * ONE_HOUR)])
    careless = {
        **REVENUE,
        "query": REVENUE["query"].replace("paid_at < %(end)s", "%(end)s IS NOT NULL"),
    }
    result = run_job(
        {"sql_metrics": {"queries": [careless]}},
        store_url,
        product_url,
        "2026-03-10-00:00",
        "2026-03-10-01:00",
        monkeypatch,
    )
    assert not result.success
    message = failure_message(result)
    assert "source 'sql_metrics': metric 'revenue'" in message
    assert "outside its window" in message and "2026-03-10-00:00...2026-03-10-01:00" in message
    assert query(store_url, "SELECT count(*) FROM metrics.hourly_values") == [(0,)]


def test_a_slow_query_is_stopped_by_its_statement_timeout(product_url):
    slow = {
        **REVENUE,
        "query": "SELECT %(start)s::timestamptz, pg_sleep(30)::text::int + 1 "
        "WHERE %(end)s IS NOT NULL",
    }
    reader = queries_for(product_url, slow, statement_timeout_seconds=0.5)
    (q,) = reader.queries
    began = datetime.now(UTC)
    with pytest.raises(SourceError) as raised:
        reader.read(q, T0, T0 + ONE_HOUR)
    assert datetime.now(UTC) - began < timedelta(seconds=20)
    assert "metric 'revenue'" in str(raised.value)
    assert "statement timeout of 0.5 s" in str(raised.value)


@pytest.mark.parametrize(
    "text",
    [
        # a data-modifying CTE: refused by the read-only transaction
        "WITH gone AS (DELETE FROM orders RETURNING paid_at) "
        "SELECT date_trunc('hour', paid_at), count(*) FROM gone "
        "WHERE paid_at >= %(start)s AND paid_at < %(end)s GROUP BY 1",
        # a second statement after the first: a syntax error inside the subquery
        "SELECT %(start)s::timestamptz, 1 WHERE %(end)s IS NOT NULL; DELETE FROM orders",
        "SELECT %(start)s::timestamptz, 1 WHERE %(end)s IS NOT NULL; COMMIT; DELETE FROM orders",
    ],
)
def test_a_query_cannot_write(product_url, text):
    execute(product_url, ORDERS_SQL)
    insert_orders(product_url, [("pro", 1, T0)])
    reader = queries_for(product_url, {**REVENUE, "query": text})
    (q,) = reader.queries
    with pytest.raises(SourceError, match="metric 'revenue'"):
        reader.read(q, T0, T0 + ONE_HOUR)
    assert query(product_url, "SELECT count(*) FROM orders") == [(1,)]


@pytest.mark.parametrize(
    "entry, message",
    [
        ({**REVENUE, "query": "SELECT now(), 1 WHERE now() < %(end)s"}, "does not use %(start)s"),
        (
            {**REVENUE, "query": REVENUE["query"] + " HAVING sum(amount) > %(min)s"},
            "unknown placeholder '%(min)s'",
        ),
        (
            {**REVENUE, "query": REVENUE["query"].replace("sum(amount)", "sum(amount) % 7")},
            "a literal % must be written %%",
        ),
        ({**REVENUE, "aggregation": "recomputed"}, "needs a daily_query"),
        ({**REVENUE, "daily_query": BUYERS_DAILY}, "only a `recomputed` metric has a daily_query"),
        ({**REVENUE, "metric": "revenue.{plan!r}"}, "only plain label fields"),
        ({**REVENUE, "metric": "revenue total"}, "does not make a valid metric name"),
        ({**REVENUE, "aggregation": "avg"}, "queries[0].aggregation"),
        ({**REVENUE, "propagation": "sideways"}, "queries[0].propagation"),
        ({**REVENUE, "url": "postgresql://x"}, "queries[0].url: unknown setting"),
        ({**REVENUE, "url_env": "NOT-A-NAME"}, "queries[0].url_env"),
        ({**REVENUE, "statement_timeout_seconds": 0}, "queries[0].statement_timeout_seconds"),
        ({**REVENUE, "querry": "x"}, "queries[0].querry: unknown setting"),
        ({"metric": "x", "aggregation": "sum"}, "queries[0].query: missing"),
    ],
)
def test_settings_are_checked_when_the_definitions_load(entry, message):
    with pytest.raises(ConfigurationError) as raised:
        build_source({"queries": [entry]}, ENV)
    assert "sql_metrics.queries[0]" in str(raised.value)
    assert message in str(raised.value)


def test_section_settings_are_checked():
    with pytest.raises(ConfigurationError, match=r"sql_metrics\.timeout: unknown setting"):
        build_source({"timeout": 3, "queries": [REVENUE]}, ENV)
    with pytest.raises(ConfigurationError, match="metric 'revenue' is defined twice"):
        build_source({"queries": [REVENUE, REVENUE]}, ENV)


def test_a_source_without_its_database_url_is_disabled():
    other = {**REVENUE, "url_env": "BILLING_DATABASE_URL"}
    source = build_source({"queries": [other]}, ENV)
    assert source.disabled_reason == "BILLING_DATABASE_URL is not set"
    assert build_source({}, ENV).disabled_reason.startswith("no queries listed")
    enabled = build_source(
        {"url_env": "BILLING_DATABASE_URL", "queries": [BY_PLAN]}, {"BILLING_DATABASE_URL": "x"}
    )
    assert enabled.enabled and enabled.metrics == ["orders.*"] and enabled.expected_metrics == []


def test_a_query_reads_the_database_its_url_env_names(
    store_url, product_url, postgres_server, monkeypatch
):
    billing = new_database(postgres_server, "billing")
    execute(billing, ORDERS_SQL)
    insert_orders(billing, [("pro", 7, T0)])
    execute(product_url, ORDERS_SQL)  # the product database's own orders table is empty
    section = {"url_env": "BILLING_DATABASE_URL", "queries": [REVENUE]}
    result = run_job(
        {"sql_metrics": section},
        store_url,
        product_url,
        "2026-03-10-00:00",
        "2026-03-10-00:00",
        monkeypatch,
        env={"BILLING_DATABASE_URL": billing},
    )
    assert result.success
    assert hourly(store_url) == {("revenue", pd.Timestamp(T0)): 7.0}


def test_an_unreachable_database_fails_without_its_password():
    reader = queries_for("postgresql://reader:s3cret-pw@127.0.0.1:1/billing", REVENUE)
    (q,) = reader.queries
    with pytest.raises(SourceError) as raised:
        reader.read(q, T0, T0 + ONE_HOUR)
    assert raised.value.transient
    assert "s3cret-pw" not in str(raised.value) and "***" in str(raised.value)
    assert "METRICS_PLATFORM_PRODUCT_DATABASE_URL" in str(raised.value)


# --- The demo ----------------------------------------------------------------------------------


def test_the_demo_sql_metrics_read_the_demo_tables(store_url, product_url, monkeypatch):
    now = datetime(2026, 3, 12, 10, 20, tzinfo=UTC)
    # The demo's product database comes with its orders and screenshots, seeded once.
    seed_product_database(product_url, now=now, days=2, users=200)
    assert query(product_url, "SELECT count(*) > 0 FROM orders") == [(True,)]
    assert not seed_orders(product_url, now=now, days=2)
    section = load_settings(DEFAULT_CONFIG)["sql_metrics"]
    settings_ = {
        "sql_metrics": section,
        "kpis": [k for k in load_settings(DEFAULT_CONFIG)["kpis"] if "revenue" in k["formula"]],
    }
    result = run_job(
        settings_, store_url, product_url, "2026-03-11-00:00", "2026-03-11-23:00", monkeypatch
    )
    assert result.success
    daily = run_job(
        settings_,
        store_url,
        product_url,
        "2026-03-11",
        "2026-03-11",
        monkeypatch,
        job="daily_metrics",
    )
    assert daily.success
    got = hourly(store_url)
    revenue = query(
        product_url,
        "SELECT sum(amount_cents) / 100.0 FROM orders "
        "WHERE paid_at >= '2026-03-11' AND paid_at < '2026-03-12'",
    )[0][0]
    assert sum(v for (m, _), v in got.items() if m == "revenue.paid") == pytest.approx(
        float(revenue)
    )
    assert {m for m, _ in got} >= {
        "revenue.paid",
        "accounts.active",
        "screenshots.pro.count",
        "accounts.business.count",
    }
    assert len({t for m, t in got if m == "revenue.paid"}) == 24
    days = dict(
        query(store_url, f"SELECT metric, value FROM {SOURCE_DAYS} AND metric = 'accounts.active'")
    )
    active = query(
        product_url,
        "SELECT count(DISTINCT account_id) FROM screenshots "
        "WHERE taken_at >= '2026-03-11' AND taken_at < '2026-03-12'",
    )[0][0]
    assert days == {"accounts.active": float(active)}
    kpi = query(
        store_url,
        "SELECT value FROM metrics.daily_values_by_name WHERE metric = 'kpi.revenue_per_active_account'",
    )
    assert kpi == [(pytest.approx(float(revenue) / active),)]
