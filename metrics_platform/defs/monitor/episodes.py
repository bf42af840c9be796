"""Alert episodes: a rule's evaluation, the episode it opens or closes, and the messages.

An episode opens when a rule is breached and no episode of the rule is open, and closes when
the rule's latest period is back within the expected range. Both are rows of
`metrics.alert_episodes`, written in the transaction that posts the message: a message that
cannot be posted rolls the change back, so the next evaluation tries again, and a rule has at
most one open episode (a unique index), so two evaluations at once fire it once. The store
keeps the state, not Dagster: it survives restarts, a wiped instance and concurrent runs, and
Grafana's read-only role can show it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg2.extensions

from metrics_platform.lib.alert_rules import AlertRule, evaluation_sql

FIRED, FIRING, RESOLVED, OK, NO_DATA = "fired", "firing", "resolved", "ok", "no data"


@dataclass(frozen=True)
class Evaluation:
    """A rule's result on the store: its metric's latest period and value, the expected range
    (None for an open end), the volume, and whether the rule (all of its `for` periods) and
    the latest period are breached."""

    rule: AlertRule
    period: datetime | date | None
    value: float | None
    low: float | None
    high: float | None
    volume: float | None
    latest_breached: bool
    breached: bool

    def expected(self) -> str:
        if self.low is None and self.high is None:
            return "none yet (not enough history)" if self.rule.kind == "change" else "none"
        if self.low is None:
            return f"≤ {self.high:.6g}"
        if self.high is None:
            return f"≥ {self.low:.6g}"
        return f"{self.low:.6g} – {self.high:.6g}"

    def period_label(self) -> str:
        return period_label(self.period)


def period_label(period: datetime | date | None) -> str:
    if period is None:
        return "no value yet"
    if isinstance(period, datetime):
        return f"{period.astimezone(timezone.utc):%Y-%m-%dT%H:%MZ}"
    return period.isoformat()


def period_start(period: datetime | date, zone: str) -> datetime:
    """The start of an hour, or of a business day in `zone`, as an aware datetime."""
    if isinstance(period, datetime):
        return period
    return datetime.combine(period, time(), ZoneInfo(zone))


def evaluate(conn: psycopg2.extensions.connection, rule: AlertRule) -> Evaluation:
    with conn, conn.cursor() as cur:
        cur.execute(evaluation_sql(rule))
        _, period, value, low, high, volume, latest, breached = cur.fetchone()
    return Evaluation(rule, period, value, low, high, volume, bool(latest), bool(breached))


def record_business_timezone(conn: psycopg2.extensions.connection, zone: str) -> None:
    """Record the zone the daily values are rolled up in, which the store's `daily_series` and
    the change rules' same hour of the week use."""
    with conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE metrics.business_calendar SET time_zone = %s WHERE time_zone IS DISTINCT FROM %s",
            (zone, zone),
        )


@dataclass(frozen=True)
class Links:
    """Where a message points: the Grafana board of the metric, around the period."""

    grafana_url: str

    def dashboard(self, rule: AlertRule, period: datetime) -> str:
        width = timedelta(days=2) if rule.grain == "hour" else timedelta(days=35)
        end = period + (timedelta(hours=6) if rule.grain == "hour" else timedelta(days=2))
        start_ms, end_ms = (int((t).timestamp() * 1000) for t in (end - width, end))
        url = f"{self.grafana_url.rstrip('/')}/d/{rule.dashboard}?from={start_ms}&to={end_ms}"
        return f"<{url}|open the dashboard>"


def firing_message(evaluation: Evaluation, link: str) -> str:
    rule = evaluation.rule
    periods = "" if rule.periods == 1 else f" (and the {rule.periods - 1} {rule.grain}s before)"
    return (
        f":rotating_light: *{rule.metric}* {rule.grain} {evaluation.period_label()}{periods}: "
        f"{evaluation.value:.6g} is outside the expected range {evaluation.expected()} — "
        f"{rule.reason()}. Rule `{rule.name}` ({link})"
    )


def resolved_message(evaluation: Evaluation, fired_label: str, link: str) -> str:
    rule = evaluation.rule
    return (
        f":white_check_mark: *{rule.metric}* is back within the expected range at "
        f"{rule.grain} {evaluation.period_label()}: {evaluation.value:.6g} (expected "
        f"{evaluation.expected()}). Rule `{rule.name}` fired at {fired_label} ({link})"
    )


def update_episode(
    conn: psycopg2.extensions.connection,
    evaluation: Evaluation,
    *,
    zone: str,
    links: Links,
    post: Callable[[str], None] | None,
) -> str:
    """Open or close the rule's episode for `evaluation`, posting the message (with `post`,
    when alerts are on) in the same transaction; returns what happened (`fired`, `firing`,
    `resolved`, `ok` or `no data`)."""
    rule = evaluation.rule
    if evaluation.period is None:
        return NO_DATA
    period = period_start(evaluation.period, zone)
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT id, fired_period FROM metrics.alert_episodes "
            "WHERE rule = %s AND resolved_at IS NULL FOR UPDATE",
            (rule.name,),
        )
        open_episode = cur.fetchone()
        if open_episode is None:
            if not evaluation.breached:
                return OK
            cur.execute(
                """INSERT INTO metrics.alert_episodes
                       (rule, metric, grain, fired_period, fired_value, expected_low,
                        expected_high, reason, last_period, last_value)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (rule) WHERE resolved_at IS NULL DO NOTHING
                   RETURNING id""",
                (
                    rule.name,
                    rule.metric,
                    rule.grain,
                    period,
                    evaluation.value,
                    evaluation.low,
                    evaluation.high,
                    rule.reason(),
                    period,
                    evaluation.value,
                ),
            )
            if cur.fetchone() is None:  # another evaluation opened it a moment ago
                return FIRING
            if post is not None:
                post(firing_message(evaluation, links.dashboard(rule, period)))
            return FIRED
        episode, fired = open_episode
        if evaluation.latest_breached or period <= fired:
            cur.execute(
                "UPDATE metrics.alert_episodes SET last_period = %s, last_value = %s WHERE id = %s",
                (period, evaluation.value, episode),
            )
            return FIRING
        cur.execute(
            """UPDATE metrics.alert_episodes
               SET resolved_period = %s, resolved_value = %s, resolved_at = now(),
                   last_period = %s, last_value = %s
               WHERE id = %s""",
            (period, evaluation.value, period, evaluation.value, episode),
        )
        if post is not None:
            fired_label = period_label(
                fired if rule.grain == "hour" else fired.astimezone(ZoneInfo(zone)).date()
            )
            post(resolved_message(evaluation, fired_label, links.dashboard(rule, period)))
        return RESOLVED
