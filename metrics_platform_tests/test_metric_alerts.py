"""Metric alerts against a real store and a loopback webhook: rules from the settings, a planted
drop that fires once with the right expected range and resolves, weekly seasonality, low volume
and daylight-saving weeks that do not fire, thresholds for N periods, KPI bounds, the checks in
a real run, and Grafana's provisioned rules generated from the same settings."""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
import yaml

from metrics_platform.definitions import build_definitions
from metrics_platform.defs.automation.alerts import WEBHOOK_ENV, AlertWebhook, check_failure_alerts
from metrics_platform.defs.metrics.assets import HOURLY_VALUES_KEY
from metrics_platform.defs.monitor.episodes import (
    FIRED,
    FIRING,
    NO_DATA,
    OK,
    RESOLVED,
    Links,
    evaluate,
    update_episode,
)
from metrics_platform.lib import alert_rules
from metrics_platform.lib.alert_rules import MAD_SCALE, parse_alerts, parse_rule
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV, connect
from metrics_platform.lib.demo_data import seed_product_database
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.grafana_macros import TimeRange, expand
from metrics_platform.lib.grafana_role import ensure_reader_role
from metrics_platform.lib.settings import DEFAULT_CONFIG, load_settings
from metrics_platform_tests import test_alerts
from metrics_platform_tests.conftest import RANGE_TAGS, execute, query
from metrics_platform_tests.processes import (
    BIN,
    REPO,
    daemon_log,
    dagster_daemon,
    instance_env,
    instance_home,
    wait_for_ticks,
)
from metrics_platform_tests.test_grafana import as_user

UTC = timezone.utc
ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 1, 5, tzinfo=UTC)  # a Monday
LINKS = Links("http://grafana.example:3001")
receiver = test_alerts.receiver  # the loopback webhook receiver fixture


# --- A store with a metric's history ------------------------------------------------------------


def add_metric(url: str, name: str, aggregation: str = "sum", source: str = "events") -> int:
    return query(
        url,
        "INSERT INTO metrics.metric (name, aggregation, source) VALUES (%s, %s, %s) RETURNING id",
        (name, aggregation, source),
    )[0][0]


def put(url: str, metric_id: int, values: dict, table: str = "hourly_values") -> None:
    column = "hour" if table.startswith("hourly") else "day"
    execute(
        url,
        f"INSERT INTO metrics.{table} (metric_id, {column}, value) "
        "SELECT %s, unnest(%s), unnest(%s::float8[])",
        (metric_id, list(values), list(values.values())),
    )


def weekly_signups(hour: datetime, rng: random.Random) -> float:
    """Busy weekday afternoons, quiet nights and weekends, with noise."""
    local = hour.astimezone(UTC)
    weekend = local.weekday() >= 5
    base = 6 if local.hour < 7 else (12 if weekend else 40 + 25 * (12 <= local.hour < 18))
    return float(max(0, round(rng.gauss(base, base**0.5))))


def history(weeks: int = 8, seed: int = 7) -> dict[datetime, float]:
    rng = random.Random(seed)
    return {
        START + timedelta(hours=h): weekly_signups(START + timedelta(hours=h), rng)
        for h in range(weeks * 7 * 24)
    }


class Webhook:
    """The alert webhook, posting to the loopback receiver."""

    def __init__(self, receiver):
        self.url, self.received = receiver
        self.webhook = AlertWebhook(url=self.url)

    def texts(self) -> list[str]:
        return [r["json"]["text"] for r in self.received]


def step(url: str, rule, webhook: Webhook | None, zone: str = "UTC") -> tuple[str, object]:
    conn = connect(url)
    try:
        evaluation = evaluate(conn, rule)
        state = update_episode(
            conn,
            evaluation,
            zone=zone,
            links=LINKS,
            post=webhook.webhook.post if webhook else None,
        )
    finally:
        conn.close()
    return state, evaluation


SIGNUPS_DROPPED = {
    "name": "signups_dropped",
    "metric": "events.signup.count",
    "grain": "hour",
    "change": {"weeks": 6, "deviations": 4, "min_change": 0.5, "direction": "down"},
    "min_volume": 10,
}


def expected_range(values: list[float], deviations=4.0, min_change=0.5) -> tuple[float, float]:
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    half = max(deviations * MAD_SCALE * mad, min_change * abs(median))
    return median - half, median + half


# --- Change detection ---------------------------------------------------------------------------


def test_a_planted_drop_fires_once_with_its_expected_range_and_resolves(store_url, receiver):
    webhook = Webhook(receiver)
    rule = parse_rule(SIGNUPS_DROPPED, "alerts[0]")
    metric = add_metric(store_url, rule.metric)
    series = history()
    weeks_before = [h for h in series if h < START + timedelta(weeks=7)]
    put(store_url, metric, {h: series[h] for h in weeks_before})
    # The eighth week lands hour by hour; Wednesday 13:00-16:00 sign-ups stop.
    drop = [START + timedelta(weeks=7, days=2, hours=13 + n) for n in range(4)]
    states = []
    for hour in sorted(set(series) - set(weeks_before)):
        value = 0.0 if hour in drop else series[hour]
        put(store_url, metric, {hour: value})
        state, evaluation = step(store_url, rule, webhook)
        states.append((hour, state))
        if hour == drop[0]:
            fired = evaluation
    assert [h for h, s in states if s == FIRED] == [drop[0]]
    assert [h for h, s in states if s == FIRING] == drop[1:]
    assert [h for h, s in states if s == RESOLVED] == [drop[-1] + timedelta(hours=1)]
    assert {s for _, s in states} == {OK, FIRED, FIRING, RESOLVED}

    # The expected range is the median ± the MAD of the same hour of the six weeks before.
    same_hour = [series[drop[0] - timedelta(weeks=k)] for k in range(1, 7)]
    low, _ = expected_range(same_hour)
    assert fired.low == pytest.approx(low) and fired.high is None  # direction: down
    assert fired.value == 0 and fired.breached

    # The webhook got exactly two messages: the alert (metric, value, expected range, a link
    # to the dashboard around the hour) and its resolution.
    first, last = webhook.texts()
    assert "*events.signup.count* hour 2026-02-25T13:00Z: 0 is outside the expected range" in first
    assert f"≥ {low:.6g}" in first and "Rule `signups_dropped`" in first
    assert "<http://grafana.example:3001/d/mp-quality-of-service?from=" in first
    assert "back within the expected range at hour 2026-02-25T17:00Z" in last
    assert "fired at 2026-02-25T13:00Z" in last
    episodes = query(
        store_url,
        "SELECT rule, fired_period, fired_value, resolved_period FROM metrics.alert_episodes",
    )
    assert episodes == [("signups_dropped", drop[0], 0.0, drop[-1] + timedelta(hours=1))]
    # The Platform health board lists the episode, read as Grafana's read-only role.
    board = json.loads((ROOT / "grafana/dashboards/platform_health.json").read_text())
    (panel,) = [p for p in board["panels"] if p.get("title") == "Metric alerts"]
    conn = connect(store_url)
    try:
        ensure_reader_role(conn, "grafana_reader")
    finally:
        conn.close()
    reader = as_user(store_url, "grafana_reader")
    listed = query(reader, expand(panel["targets"][0]["rawSql"], TimeRange(START, drop[-1])))
    assert [(row[0], row[3], row[7]) for row in listed] == [
        ("signups_dropped", drop[0], drop[-1] + timedelta(hours=1))
    ]


def test_weekly_seasonality_does_not_fire(store_url):
    """Weekends are a third of weekdays and nights a tenth of afternoons: against the same hour
    of the week none of it is a drop, while against the day before every Saturday would be."""
    rule = parse_rule({**SIGNUPS_DROPPED, "min_volume": 20}, "a")
    metric = add_metric(store_url, rule.metric)
    series = history(weeks=9, seed=11)
    landed = {h: v for h, v in series.items() if h < START + timedelta(weeks=7)}
    put(store_url, metric, landed)
    states = []
    for hour in sorted(set(series) - set(landed)):
        put(store_url, metric, {hour: series[hour]})
        states.append(step(store_url, rule, None)[0])
    assert set(states) == {OK} and len(states) == 14 * 24
    day_before = [
        h
        for h in series
        if h >= START + timedelta(weeks=7)
        and series[h - timedelta(days=1)] >= 20
        and series[h] < 0.5 * series[h - timedelta(days=1)]
    ]
    saturdays = {h.date() for h in day_before if h.weekday() == 5}
    assert len(saturdays) == 2  # both Saturdays of the fortnight


def test_quiet_hours_do_not_page_anyone(store_url):
    """At night a handful of sign-ups swing from 0 to 6: below the minimum volume, a zero is
    not an alert; the same rule without the minimum would fire."""
    quiet = {"name": "quiet", "metric": "events.signup.count", "change": {"min_change": 0.5}}
    metric = add_metric(store_url, "events.signup.count")
    hour = START + timedelta(weeks=6, hours=3)
    put(
        store_url,
        metric,
        {hour - timedelta(weeks=k): v for k, v in zip(range(1, 7), [3, 4, 2, 3, 5, 3])},
    )
    put(store_url, metric, {hour: 0.0})
    assert step(store_url, parse_rule({**quiet, "min_volume": 10}, "a"), None)[0] == OK
    state, evaluation = step(store_url, parse_rule(quiet, "a"), None)
    assert state == FIRED and evaluation.volume == 3


def test_the_same_hour_of_the_week_is_local_across_a_daylight_saving_change(store_url):
    """In Europe/Paris, 09:00 is 08:00 UTC before 29 March 2026 and 07:00 UTC after: the hour
    compared with is the local one (a UTC week earlier would be 08:00 local, a quiet hour)."""
    zone = ZoneInfo("Europe/Paris")
    execute(store_url, "UPDATE metrics.business_calendar SET time_zone = 'Europe/Paris'")
    metric = add_metric(store_url, "events.signup.count")
    now = datetime(2026, 4, 1, 9, tzinfo=zone)  # a Wednesday, summer time
    hours = {}
    for k in range(0, 7):
        for local_hour in range(6, 10):
            moment = (now - timedelta(weeks=k)).replace(hour=local_hour)  # wall-clock weeks
            hours[moment.astimezone(UTC)] = 100.0 if local_hour == 9 else 5.0
    put(store_url, metric, hours)
    rule = parse_rule({**SIGNUPS_DROPPED, "change": {"weeks": 6}}, "a")
    conn = connect(store_url)
    try:
        evaluation = evaluate(conn, rule)
    finally:
        conn.close()
    assert evaluation.period == now.astimezone(UTC) == datetime(2026, 4, 1, 7, tzinfo=UTC)
    assert evaluation.value == 100 and not evaluation.breached
    assert evaluation.low == pytest.approx(80.0) and evaluation.high == pytest.approx(120.0)


def test_daily_change_against_the_same_weekday(store_url):
    rule = parse_rule(
        {"name": "daily", "metric": "kpi.rate", "grain": "day", "change": {"weeks": 4}}, "a"
    )
    metric = add_metric(store_url, "kpi.rate", "recomputed", "kpi")
    day = datetime(2026, 3, 4).date()
    rates = {
        day - timedelta(days=n): (0.2 if (day - timedelta(days=n)).weekday() < 5 else 0.05)
        for n in range(1, 29)
    }
    rates[day] = 0.1  # the activation rate halved on a Wednesday
    put(store_url, metric, rates, table="daily_kpis")
    state, evaluation = step(store_url, rule, None)
    assert state == FIRED and evaluation.period == day
    assert (evaluation.low, evaluation.high) == pytest.approx((0.16, 0.24))


# --- Thresholds, bounds -------------------------------------------------------------------------


def test_a_threshold_for_two_hours_fires_on_the_second_and_resolves(store_url, receiver):
    webhook = Webhook(receiver)
    rule = parse_rule(
        {
            "name": "p99_slow",
            "metric": "events.api_call.duration.p99",
            "operator": ">",
            "value": 2000,
            "for": 2,
        },
        "a",
    )
    metric = add_metric(store_url, rule.metric, "recomputed")
    states = []
    for n, p99 in enumerate([900, 2500, 1200, 2100, 3000, 2600, 1500, 1400]):
        put(store_url, metric, {START + timedelta(hours=n): float(p99)})
        states.append(step(store_url, rule, webhook)[0])
    assert states == [OK, OK, OK, OK, FIRED, FIRING, RESOLVED, OK]
    fired, resolved = webhook.texts()
    assert (
        "hour 2026-01-05T04:00Z (and the 1 hours before): 3000 is outside the expected range ≤ 2000"
        in fired
    )
    assert "events.api_call.duration.p99 > 2000 for 2 hours" in fired
    assert "at hour 2026-01-05T06:00Z: 1500" in resolved


def test_a_gap_breaks_the_periods_a_threshold_needs(store_url):
    rule = parse_rule({"name": "p", "metric": "m.p99", "operator": ">", "value": 1, "for": 2}, "a")
    metric = add_metric(store_url, "m.p99", "recomputed")
    put(store_url, metric, {START: 5.0, START + timedelta(hours=3): 5.0})
    assert step(store_url, rule, None)[0] == OK
    assert (
        step(
            store_url,
            parse_rule({"name": "n", "metric": "none", "operator": "<", "value": 1}, "a"),
            None,
        )[0]
        == NO_DATA
    )


def test_kpi_bounds_are_rules_at_both_grains(store_url):
    rules = parse_alerts([], [("kpi.api_error_rate", (0.0, 1.0))])
    assert [(r.name, r.grain, r.low, r.high) for r in rules] == [
        ("kpi_api_error_rate_bounds_hour", "hour", 0.0, 1.0),
        ("kpi_api_error_rate_bounds_day", "day", 0.0, 1.0),
    ]
    metric = add_metric(store_url, "kpi.api_error_rate", "recomputed", "kpi")
    put(store_url, metric, {START: 1.5}, table="hourly_kpis")
    assert step(store_url, rules[0], None)[0] == FIRED
    assert step(store_url, rules[1], None)[0] == NO_DATA


@pytest.mark.parametrize(
    "entry, message",
    [
        ({"metric": "m", "operator": ">", "value": 1}, "alerts[0].name"),
        ({"name": "Bad-Name", "metric": "m", "operator": ">", "value": 1}, "is not a rule name"),
        (
            {"name": "a", "metric": "m; DROP", "operator": ">", "value": 1},
            "not a valid metric name",
        ),
        ({"name": "a", "metric": "m", "operator": ">=", "value": 1}, "alerts[0].operator"),
        ({"name": "a", "metric": "m", "operator": ">", "value": "1"}, "alerts[0].value"),
        ({"name": "a", "metric": "m", "operator": ">", "value": 1, "change": {}}, "either"),
        ({"name": "a", "metric": "m"}, "either"),
        ({"name": "a", "metric": "m", "change": {"weeks": 1}}, "alerts[0].change.weeks"),
        ({"name": "a", "metric": "m", "change": {"direction": "sideways"}}, "direction"),
        ({"name": "a", "metric": "m", "change": {"typo": 1}}, "alerts[0].change.typo"),
        ({"name": "a", "metric": "m", "operator": ">", "value": 1, "for": 0}, "alerts[0].for"),
        ({"name": "a", "metric": "m", "operator": ">", "value": 1, "grain": "week"}, "grain"),
        (
            {"name": "a", "metric": "m", "operator": ">", "value": 1, "volume_metric": "v"},
            "min_volume",
        ),
        ({"name": "a", "metric": "m", "operator": ">", "value": 1, "treshold": 1}, "treshold"),
        ({"name": "a", "metric": "other.m", "operator": ">", "value": 1}, "no configured source"),
    ],
)
def test_bad_rules_are_refused_naming_the_key(entry, message):
    with pytest.raises(ConfigurationError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_alerts([entry], known=["m", "v"])


def test_the_demo_settings_declare_alerts_on_known_metrics():
    defs = build_definitions(load_settings(DEFAULT_CONFIG), env={PRODUCT_DATABASE_URL_ENV: "x"})
    names = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert {
        "alert_api_call_p99_slow",
        "alert_signups_dropped",
        "alert_activation_rate_moved",
        "alert_kpi_returning_sessions_share_bounds_day",
    } <= names
    with pytest.raises(ConfigurationError, match="two rules are named 'x'"):
        parse_alerts([{"name": "x", "metric": "m", "operator": ">", "value": 1}] * 2)


# --- The checks in a real run -------------------------------------------------------------------


def test_the_checks_run_after_the_hour_lands_and_post_once(
    store_url, product_url, receiver, monkeypatch
):
    """The hourly job writes the hours and runs their alert checks; the failed-checks alert
    leaves metric alerts to their episodes: one message, however many runs see the breach."""
    url, received = receiver
    now = datetime(2026, 3, 12, tzinfo=UTC)
    seed_product_database(product_url, now=now, days=2, users=200)
    settings = {
        "product_db": {"tables": [{"table": "users", "created_at_column": "created_at"}]},
        "alerts": [
            {"name": "too_many_users", "metric": "objects.users.count", "operator": ">", "value": 1}
        ],
    }
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    monkeypatch.setenv(PRODUCT_DATABASE_URL_ENV, product_url)
    monkeypatch.setenv(WEBHOOK_ENV, url)
    defs = build_definitions(
        settings, env={PRODUCT_DATABASE_URL_ENV: product_url, WEBHOOK_ENV: url}
    )
    with dg.instance_for_test() as instance:
        for window in (
            ("2026-03-11-10:00", "2026-03-11-11:00"),
            ("2026-03-11-12:00", "2026-03-11-12:00"),
        ):
            result = defs.resolve_job_def("hourly_metrics").execute_in_process(
                instance=instance, tags=dict(zip(RANGE_TAGS, window))
            )
            assert result.success
            (evaluation,) = [
                e
                for e in result.get_asset_check_evaluations()
                if e.check_name == "alert_too_many_users"
            ]
            assert evaluation.asset_key == HOURLY_VALUES_KEY and not evaluation.passed
            metadata = {k: v.value for k, v in evaluation.metadata.items()}
            assert metadata["expected_range"] == "≤ 1" and metadata["value"] > 1
            assert metadata["reason"] == "objects.users.count > 1 for 1 hour"
            run = instance.get_run_by_id(result.run_id)
            event = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)[0]
            context = dg.build_run_status_sensor_context(
                sensor_name="check_failure_alerts",
                dagster_event=event.dagster_event,
                dagster_instance=instance,
                dagster_run=run,
            )
            # (it reports the other checks of the run: the freshness of these old hours fails)
            check_failure_alerts(context, alert_webhook=AlertWebhook(url=url))
        assert metadata["episode"] == FIRING and metadata["period"] == "2026-03-11T12:00Z"
    texts = [r["json"]["text"] for r in received]
    assert not any("alert_too_many_users" in text for text in texts)
    (alert,) = [text for text in texts if text.startswith(":rotating_light:")]
    assert "*objects.users.count* hour 2026-03-11T11:00Z" in alert
    assert query(store_url, "SELECT time_zone FROM metrics.business_calendar") == [("UTC",)]


# --- Grafana's alert rules ----------------------------------------------------------------------


def test_the_provisioned_alert_rules_are_generated_from_the_settings(tmp_path):
    committed = alert_rules.ALERTING_FILE
    rules = alert_rules.rules_from_settings(load_settings(DEFAULT_CONFIG))
    assert committed.read_text(encoding="utf-8") == alert_rules.render(rules)
    check = subprocess.run(
        [
            sys.executable,
            "-m",
            "metrics_platform.lib.alert_rules",
            "--check",
            "--settings",
            str(DEFAULT_CONFIG),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    changed = tmp_path / "platform.yaml"
    settings = load_settings(DEFAULT_CONFIG)
    settings["alerts"][0]["value"] = 3000
    changed.write_text(yaml.safe_dump(settings))
    out = tmp_path / "rules.yaml"
    assert alert_rules.main(["--settings", str(changed), "--output", str(out)]) == 0
    assert alert_rules.main(["--check", "--settings", str(changed), "--output", str(out)]) == 0
    assert (
        alert_rules.main(["--check", "--settings", str(DEFAULT_CONFIG), "--output", str(out)]) == 1
    )


def test_the_provisioned_alert_rules_have_grafanas_shape():
    document = yaml.safe_load(alert_rules.ALERTING_FILE.read_text())
    assert document["apiVersion"] == 1
    uids = []
    for group in document["groups"]:
        assert group["folder"] and group["interval"] and group["orgId"] == 1
        for rule in group["rules"]:
            uids.append(rule["uid"])
            assert len(rule["uid"]) <= 40
            refs = {item["refId"]: item for item in rule["data"]}
            assert rule["condition"] in refs
            query_ = refs["A"]
            assert query_["datasourceUid"] == "metrics_platform"
            assert query_["model"]["format"] == "table" and query_["model"]["rawQuery"] is True
            assert {refs["B"]["datasourceUid"], refs["C"]["datasourceUid"]} == {"__expr__"}
            assert (
                refs["C"]["model"]["expression"] == "B" and refs["B"]["model"]["expression"] == "A"
            )
            assert rule["labels"]["metric"] in query_["model"]["rawSql"]
    assert (
        len(uids)
        == len(set(uids))
        == len(alert_rules.rules_from_settings(load_settings(DEFAULT_CONFIG)))
    )


# --- With the real daemon -----------------------------------------------------------------------


@pytest.mark.timeout(600)  # beyond the test's own deadline, which reports the daemon's log
def test_the_daemon_evaluates_the_alerts_when_an_hour_lands(store_url, product_url, receiver):
    """A source lands an hour (a run of its own); the `metrics_automation` sensor then requests
    the hourly values and their alert checks, and the webhook gets the alert once: a second
    hour keeps the episode open without a second message."""
    url, received = receiver
    now = datetime.now(UTC)
    seed_product_database(product_url, now=now, days=1, users=100)
    first = (now - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    home = instance_home("metrics_platform_alerts_")
    settings = {
        "product_db": {"tables": [{"table": "users", "created_at_column": "created_at"}]},
        # No scheduled tick during the test: the runs come from the test and the automation.
        "schedule": {"lag_minutes": {"default": (now.minute + 30) % 60}},
        "alerts": [
            {"name": "users_exist", "metric": "objects.users.count", "operator": ">", "value": 0}
        ],
    }
    env = {**instance_env(home, settings, store_url, product_url), WEBHOOK_ENV: url}

    def land(hour: datetime) -> None:
        done = subprocess.run(
            [
                str(BIN / "dagster"),
                "asset",
                "materialize",
                "-m",
                "metrics_platform.definitions",
                "--select",
                "key:raw/product_db_row_counts",
                "--partition",
                f"{hour:%Y-%m-%d-%H:%M}",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]

    def wait_for(condition, what: str, deadline: float):
        while not condition():
            assert daemon.poll() is None, daemon_log(home)
            assert time.monotonic() < deadline, (
                f"{what} did not happen in time; episodes "
                f"{query(store_url, 'SELECT * FROM metrics.alert_episodes')}, "
                f"messages {[r['json']['text'] for r in received]}:\n{daemon_log(home)}"
            )
            time.sleep(3)

    def alerts(kind: str) -> list[str]:
        return [r["json"]["text"] for r in received if r["json"]["text"].startswith(kind)]

    def last_period():
        rows = query(store_url, "SELECT last_period FROM metrics.alert_episodes")
        return rows[0][0] if rows else None

    with dagster_daemon(home, env) as daemon:
        deadline = time.monotonic() + 480
        wait_for_ticks(home, daemon, 1, deadline)
        land(first)
        # (The webhook gets the sensors' messages too: failed checks, failed runs.)
        wait_for(lambda: alerts(":rotating_light:"), "the alert", deadline)
        # The episode commits right after the message is posted.
        wait_for(lambda: last_period() == first, "the episode", deadline)
        land(first + timedelta(hours=1))
        wait_for(
            lambda: last_period() == first + timedelta(hours=1), "the second evaluation", deadline
        )
        launched = query(
            store_url,
            "SELECT DISTINCT t.value FROM run_tags t JOIN runs r ON r.run_id = t.run_id "
            "WHERE t.key = 'dagster/sensor_name' AND r.status = 'SUCCESS'",
        )
    assert ("metrics_automation",) in launched
    texts = alerts(":rotating_light:")
    assert len(texts) == 1 and f"hour {first:%Y-%m-%dT%H:%M}Z" in texts[0]
