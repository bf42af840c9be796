"""Metric alert rules: declared in the settings (`alerts:`), evaluated by the platform after each
hour and day lands, and provisioned to Grafana as alert rules of the same SQL.

    python -m metrics_platform.lib.alert_rules           write grafana/provisioning/alerting/metric_alerts.yaml
    python -m metrics_platform.lib.alert_rules --check   exit 1 if the file differs from the settings

Three kinds of rules, each on one metric (a source's metric or a KPI) at one grain (`hour` or
`day`):

- **threshold**: `operator` (`>` or `<`) and `value`, e.g. p99 latency `> 2000` ms;
- **bounds**: the `bounds` every KPI declares, at both grains (built from the `kpis` section);
- **change**: the period against the same period of the previous weeks (the same hour of the
  week in the business time zone, or the same weekday): outside `median ± max(deviations ×
  1.4826 × MAD, min_change × |median|)` of the last `weeks` weeks, robust to weekly
  seasonality and to a few odd weeks; `direction` limits it to drops or rises.

Every rule fires when its last `for` periods (consecutive) are all outside the expected range,
and only when the period's volume reaches `min_volume` (by default the metric's own value, or
for a change rule the larger of the value and the median, so that a stop is loud and a quiet
hour is not; `volume_metric` names another metric, e.g. the denominator of a rate).

One SQL query per rule does the evaluation (`evaluation_sql`): it returns one row with the
latest period, its value, the expected range, the volume and whether the rule is breached. The
platform's checks run it and keep the episodes (`defs/monitor/`); Grafana's alert rules run it
as the read-only role (the file this module writes), so both say the same thing.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.metric_rows import validate_metric_name

GRAINS = ("hour", "day")
# Marks the check evaluations of metric alerts: they post once per episode themselves, so the
# generic failed-checks alert leaves them out.
METRIC_ALERT_METADATA = "metrics_platform/metric_alert"
OPERATORS = (">", "<")
DIRECTIONS = ("both", "down", "up")
RULE_NAME = re.compile(r"[a-z0-9_]{1,60}")
# 1.4826 x MAD estimates the standard deviation of normally distributed values.
MAD_SCALE = 1.4826
DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "metrics_platform"
GRAFANA_FOLDER = "Metrics platform"
ALERTING_FILE = (
    Path(__file__).resolve().parents[2]
    / "grafana"
    / "provisioning"
    / "alerting"
    / "metric_alerts.yaml"
)
RULE_KEYS = {
    "name",
    "metric",
    "grain",
    "operator",
    "value",
    "change",
    "for",
    "min_volume",
    "volume_metric",
    "dashboard",
    "description",
}
CHANGE_KEYS = {"weeks", "min_weeks", "deviations", "min_change", "direction"}
DEFAULT_CHANGE = {"weeks": 6, "min_weeks": 3, "deviations": 4.0, "min_change": 0.2}
# The dashboard a metric is plotted on, by name prefix (the first match wins).
DASHBOARDS_BY_PREFIX = (
    ("events.", "mp-quality-of-service"),
    ("http.", "mp-quality-of-service"),
    ("spider.", "mp-quality-of-service"),
    ("queue.", "mp-quality-of-service"),
    ("platform.", "mp-platform-health"),
)
DEFAULT_DASHBOARD = "mp-business"


@dataclass(frozen=True)
class Change:
    """Change detection against the same period of the previous `weeks` weeks."""

    weeks: int = 6
    min_weeks: int = 3
    deviations: float = 4.0
    min_change: float = 0.2
    direction: str = "both"


@dataclass(frozen=True)
class AlertRule:
    """One metric alert rule (see the module's docstring)."""

    name: str
    metric: str
    grain: str
    kind: str  # threshold | bounds | change
    low: float | None = None
    high: float | None = None
    change: Change | None = None
    periods: int = 1  # the `for` setting
    min_volume: float | None = None
    volume_metric: str | None = None
    dashboard: str = DEFAULT_DASHBOARD
    description: str = ""

    def reason(self) -> str:
        """The rule in words, for messages and metadata."""
        periods = f"{self.periods} {self.grain}{'s' if self.periods > 1 else ''}"
        if self.kind == "threshold":
            text = (
                f"{self.metric} {'>' if self.high is not None else '<'} "
                f"{_number(self.high if self.high is not None else self.low)} for {periods}"
            )
        elif self.kind == "bounds":
            text = (
                f"{self.metric} outside its declared bounds "
                f"[{_number(self.low)}, {_number(self.high)}] for {periods}"
            )
        else:
            change = self.change
            same = "hour of the week" if self.grain == "hour" else "weekday"
            moves = {"both": "moved", "down": "dropped", "up": "rose"}[change.direction]
            text = (
                f"{self.metric} {moves} against the same {same} of the last {change.weeks} weeks "
                f"(median ± max({_number(change.deviations)} × 1.4826 × MAD, "
                f"{_number(change.min_change * 100)}% of the median)) for {periods}"
            )
        if self.min_volume is not None:
            text += (
                f", at a volume of {self.volume_metric or self.metric} ≥ {_number(self.min_volume)}"
            )
        return text


def _number(value: float | None) -> str:
    if value is None:
        return "none"
    return f"{value:.6g}"


def _finite(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{key}: {value!r} is not a finite number")
    return float(value)


def _whole(value: Any, key: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(f"{key}: {value!r} is not a whole number from {low} to {high}")
    return value


def dashboard_for(metric: str) -> str:
    """The uid of the dashboard that plots `metric`."""
    for prefix, uid in DASHBOARDS_BY_PREFIX:
        if metric.startswith(prefix):
            return uid
    return DEFAULT_DASHBOARD


def _known(metric: str, known: Sequence[str] | None, key: str) -> None:
    if known is not None and not any(fnmatch.fnmatchcase(metric, p) for p in known):
        raise ConfigurationError(
            f"{key}: no configured source or KPI produces the metric {metric!r}"
        )


def _change(entry: Any, key: str) -> Change:
    if entry is True or entry is None:
        entry = {}
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"{key}: expected a mapping of change settings (or `true`)")
    unknown = sorted(set(entry) - CHANGE_KEYS)
    if unknown:
        raise ConfigurationError(f"{key}.{unknown[0]}: unknown setting")
    weeks = _whole(entry.get("weeks", DEFAULT_CHANGE["weeks"]), f"{key}.weeks", 2, 52)
    min_weeks = _whole(entry.get("min_weeks", min(3, weeks)), f"{key}.min_weeks", 1, weeks)
    deviations = _finite(entry.get("deviations", DEFAULT_CHANGE["deviations"]), f"{key}.deviations")
    min_change = _finite(entry.get("min_change", DEFAULT_CHANGE["min_change"]), f"{key}.min_change")
    if deviations <= 0 or min_change < 0:
        raise ConfigurationError(f"{key}: deviations must be > 0 and min_change >= 0")
    direction = entry.get("direction", "both")
    if direction not in DIRECTIONS:
        raise ConfigurationError(
            f"{key}.direction: {direction!r} is not one of {', '.join(DIRECTIONS)}"
        )
    return Change(weeks, min_weeks, deviations, min_change, direction)


def parse_rule(entry: Any, key: str, known: Sequence[str] | None = None) -> AlertRule:
    """One rule of the `alerts` settings."""
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"{key}: expected a mapping with name, metric and a condition")
    unknown = sorted(set(entry) - RULE_KEYS)
    if unknown:
        raise ConfigurationError(f"{key}.{unknown[0]}: unknown setting")
    name = entry.get("name")
    if not isinstance(name, str) or not RULE_NAME.fullmatch(name):
        raise ConfigurationError(
            f"{key}.name: {name!r} is not a rule name (1 to 60 of a-z, 0-9 and _)"
        )
    metric = validate_metric_name(entry.get("metric"), key=f"{key}.metric")
    _known(metric, known, f"{key}.metric")
    grain = entry.get("grain", "hour")
    if grain not in GRAINS:
        raise ConfigurationError(f"{key}.grain: {grain!r} is not one of {', '.join(GRAINS)}")
    periods = _whole(entry.get("for", 1), f"{key}.for", 1, 168)
    has_threshold = "operator" in entry or "value" in entry
    if has_threshold == ("change" in entry):
        raise ConfigurationError(
            f"{key}: give either `operator` and `value` (a threshold) or `change` (change detection)"
        )
    low = high = change = None
    if has_threshold:
        operator = entry.get("operator")
        if operator not in OPERATORS:
            raise ConfigurationError(f"{key}.operator: {operator!r} is not one of > or <")
        value = _finite(entry.get("value"), f"{key}.value")
        low, high = (None, value) if operator == ">" else (value, None)
        kind = "threshold"
    else:
        change = _change(entry["change"], f"{key}.change")
        kind = "change"
    min_volume = entry.get("min_volume")
    if min_volume is not None:
        min_volume = _finite(min_volume, f"{key}.min_volume")
    volume_metric = entry.get("volume_metric")
    if volume_metric is not None:
        volume_metric = validate_metric_name(volume_metric, key=f"{key}.volume_metric")
        _known(volume_metric, known, f"{key}.volume_metric")
        if min_volume is None:
            raise ConfigurationError(f"{key}.volume_metric: needs `min_volume`")
        if volume_metric == metric:
            volume_metric = None
    dashboard = entry.get("dashboard", dashboard_for(metric))
    if not isinstance(dashboard, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard):
        raise ConfigurationError(f"{key}.dashboard: {dashboard!r} is not a dashboard uid")
    return AlertRule(
        name,
        metric,
        grain,
        kind,
        low,
        high,
        change,
        periods,
        min_volume,
        volume_metric,
        dashboard,
        str(entry.get("description", "")),
    )


def bounds_rules(kpis: Iterable[tuple[str, tuple[float, float]]]) -> list[AlertRule]:
    """A rule per grain for every KPI with declared bounds."""
    return [
        AlertRule(
            f"{re.sub(r'[^a-z0-9_]+', '_', name.lower()).strip('_')[:45]}_bounds_{grain}",
            name,
            grain,
            "bounds",
            low,
            high,
            dashboard=dashboard_for(name),
            description=f"{name} stays within the bounds its KPI declares.",
        )
        for name, (low, high) in kpis
        for grain in GRAINS
    ]


def parse_alerts(
    section: Any,
    kpis: Iterable[tuple[str, tuple[float, float]]] = (),
    known: Sequence[str] | None = None,
) -> list[AlertRule]:
    """Every alert rule: those of the `alerts` settings (a list) and the KPIs' bounds (name and
    bounds of every KPI that declares them). `known` are the metric names (or glob patterns)
    the configured sources and KPIs produce; None accepts any name."""
    section = section or []
    if not isinstance(section, list):
        raise ConfigurationError("alerts: expected a list of alert rules")
    rules = [parse_rule(entry, f"alerts[{i}]", known) for i, entry in enumerate(section)]
    rules += bounds_rules(kpis)
    names = [rule.name for rule in rules]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigurationError(f"alerts: two rules are named {duplicated[0]!r}")
    return rules


def kpi_bounds(kpis_section: Any) -> list[tuple[str, tuple[float, float]]]:
    """(name, bounds) of the KPIs of the settings that declare bounds (the KPIs themselves are
    validated where they are built)."""
    bounds = []
    for entry in kpis_section or []:
        if isinstance(entry, Mapping) and entry.get("bounds") is not None:
            low, high = entry["bounds"]
            bounds.append((str(entry["name"]), (float(low), float(high))))
    return bounds


def rules_from_settings(settings: Mapping) -> list[AlertRule]:
    return parse_alerts(settings.get("alerts"), kpi_bounds(settings.get("kpis")))


# --- The evaluation, in SQL -------------------------------------------------------------------


def _literal(value: float | None) -> str:
    return "NULL::float8" if value is None else f"{float(value)!r}::float8"


def _name(metric: str) -> str:
    """A validated metric name as an SQL string literal (it cannot hold a quote)."""
    return "'" + validate_metric_name(metric, key="alert rule metric") + "'"


def _series(metric: str, grain: str) -> str:
    period = "hour" if grain == "hour" else "day"
    values, kpis = (
        ("hourly_values", "hourly_kpis") if grain == "hour" else ("daily_values", "daily_kpis")
    )
    return (
        f"SELECT v.{period} AS period, v.value\n"
        f"        FROM (SELECT metric_id, {period}, value FROM metrics.{values}\n"
        f"              UNION ALL\n"
        f"              SELECT metric_id, {period}, value FROM metrics.{kpis}) v\n"
        f"        WHERE v.metric_id = (SELECT id FROM metrics.metric WHERE name = {_name(metric)})"
    )


def evaluation_sql(rule: AlertRule) -> str:
    """The query that evaluates `rule` on the store: one row (metric, period, value,
    expected_low, expected_high, volume, latest_breached, breached), for the metric's latest
    `for` periods; `period` is null when the metric has no value yet."""
    ctes = [f"series AS NOT MATERIALIZED (\n        {_series(rule.metric, rule.grain)}\n    )"]
    ctes.append(
        f"latest AS (SELECT period, value FROM series ORDER BY period DESC LIMIT {rule.periods})"
    )
    joins = ""
    if rule.volume_metric:
        ctes.append(
            f"volume AS NOT MATERIALIZED (\n        {_series(rule.volume_metric, rule.grain)}\n    )"
        )
        joins += " LEFT JOIN volume u USING (period)"
    if rule.kind == "change":
        change = rule.change
        if rule.grain == "hour":
            # The same local hour of the week: wall-clock weeks in the business time zone.
            ctes.append(
                "zone AS (SELECT coalesce((SELECT time_zone FROM metrics.business_calendar "
                "LIMIT 1), 'UTC') AS name)"
            )
            source = "latest l CROSS JOIN zone z CROSS JOIN generate_series"
            shift = "((l.period AT TIME ZONE z.name) - w.k * interval '7 days') AT TIME ZONE z.name"
        else:
            source = "latest l CROSS JOIN generate_series"
            shift = "l.period - 7 * w.k"
        ctes += [
            f"history AS (\n        SELECT l.period, h.value\n        FROM {source}(1, "
            f"{change.weeks}) AS w(k)\n        JOIN series h ON h.period = {shift}\n    )",
            "stats AS (\n        SELECT period, count(*) AS weeks,\n"
            "               percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS median\n"
            "        FROM history GROUP BY period\n    )",
            "spread AS (\n        SELECT h.period,\n"
            "               percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(h.value - s.median))"
            " AS mad\n        FROM history h JOIN stats s USING (period) GROUP BY h.period\n    )",
        ]
        joins = " LEFT JOIN stats s USING (period) LEFT JOIN spread d USING (period)" + joins
        half = (
            f"greatest({change.deviations!r} * {MAD_SCALE!r} * d.mad, "
            f"{change.min_change!r} * abs(s.median))"
        )
        enough = f"s.weeks >= {change.min_weeks}"
        low = (
            f"CASE WHEN {enough} THEN s.median - {half} END"
            if change.direction in ("both", "down")
            else "NULL::float8"
        )
        high = (
            f"CASE WHEN {enough} THEN s.median + {half} END"
            if change.direction in ("both", "up")
            else "NULL::float8"
        )
        own_volume = "greatest(l.value, s.median)"
    else:
        low, high = _literal(rule.low), _literal(rule.high)
        own_volume = "l.value"
    volume = "u.value" if rule.volume_metric else own_volume
    ctes.append(
        "judged AS (\n"
        f"        SELECT l.period, l.value, {low} AS low, {high} AS high, {volume} AS volume\n"
        f"        FROM latest l{joins}\n    )"
    )
    loud = f"volume >= {_literal(rule.min_volume)} AND " if rule.min_volume is not None else ""
    ctes.append(
        "checked AS (\n"
        "        SELECT period, value, low, high, volume,\n"
        f"               coalesce({loud}(value < low OR value > high), false) AS breached\n"
        "        FROM judged\n    )"
    )
    span = (
        f"interval '1 hour' * {rule.periods - 1}" if rule.grain == "hour" else str(rule.periods - 1)
    )
    return (
        "WITH "
        + ",\n    ".join(ctes)
        + f"""
SELECT {_name(rule.metric)}::text AS metric,
       max(period) AS period,
       (array_agg(value ORDER BY period DESC))[1] AS value,
       (array_agg(low ORDER BY period DESC))[1] AS expected_low,
       (array_agg(high ORDER BY period DESC))[1] AS expected_high,
       (array_agg(volume ORDER BY period DESC))[1] AS volume,
       coalesce((array_agg(breached ORDER BY period DESC))[1], false)::int AS latest_breached,
       coalesce(count(*) = {rule.periods} AND bool_and(breached)
                AND max(period) - min(period) = {span}, false)::int AS breached
FROM checked"""
    )


def grafana_sql(rule: AlertRule) -> str:
    """The rule's query for Grafana: 1 while breached, else 0, labelled by the metric."""
    return f"SELECT metric, breached\nFROM (\n{evaluation_sql(rule)}\n) AS evaluation"


# --- Grafana's file provisioning ------------------------------------------------------------------


def rule_uid(rule: AlertRule) -> str:
    """A stable Grafana uid (at most 40 of [A-Za-z0-9_-])."""
    base = f"mp-{rule.name.replace('_', '-')}"
    if len(base) <= 40:
        return base
    digest = hashlib.sha256(rule.name.encode()).hexdigest()[:8]
    return f"{base[:31]}-{digest}"


def _grafana_rule(rule: AlertRule) -> dict:
    # The query reads the metric's latest periods whatever the range; the range only says so.
    period = 3600 if rule.grain == "hour" else 86400
    lookback = period * rule.periods + (7 * 86400 * rule.change.weeks if rule.change else 0)
    return {
        "uid": rule_uid(rule),
        "title": rule.name,
        "condition": "C",
        "data": [
            {
                "refId": "A",
                "relativeTimeRange": {"from": lookback, "to": 0},
                "datasourceUid": DATASOURCE_UID,
                "model": {
                    "refId": "A",
                    "datasource": {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID},
                    "editorMode": "code",
                    "format": "table",
                    "rawQuery": True,
                    "rawSql": grafana_sql(rule),
                },
            },
            {
                "refId": "B",
                "datasourceUid": "__expr__",
                "model": {"refId": "B", "type": "reduce", "expression": "A", "reducer": "last"},
            },
            {
                "refId": "C",
                "datasourceUid": "__expr__",
                "model": {
                    "refId": "C",
                    "type": "threshold",
                    "expression": "B",
                    "conditions": [{"evaluator": {"type": "gt", "params": [0.5]}}],
                },
            },
        ],
        "noDataState": "OK",
        "execErrState": "Error",
        "for": "0s",
        "labels": {"metric": rule.metric, "grain": rule.grain, "rule": rule.name},
        "annotations": {
            "summary": rule.reason(),
            "description": rule.description or rule.reason(),
            "dashboard": f"/d/{rule.dashboard}",
        },
        "isPaused": False,
    }


def provisioning(rules: Sequence[AlertRule]) -> dict:
    """Grafana's alerting provisioning document: one group per grain."""
    groups = []
    for grain, interval in (("hour", "5m"), ("day", "15m")):
        members = [rule for rule in rules if rule.grain == grain]
        if members:
            groups.append(
                {
                    "orgId": 1,
                    "name": f"metric alerts ({grain}ly)".replace("dayly", "daily"),
                    "folder": GRAFANA_FOLDER,
                    "interval": interval,
                    "rules": [_grafana_rule(rule) for rule in members],
                }
            )
    return {"apiVersion": 1, "groups": groups}


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)

HEADER = """\
# Grafana alert rules of the metric alerts declared in the settings (`alerts:` and the KPIs'
# bounds), generated by `python -m metrics_platform.lib.alert_rules`: do not edit. Each rule
# runs the query the platform's own checks run (metric, latest period, expected range), as the
# read-only role on the data source `metrics_platform`, and fires while it returns 1.
"""


def render(rules: Sequence[AlertRule]) -> str:
    return HEADER + yaml.dump(
        provisioning(rules), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100
    )


def main(argv: list[str] | None = None) -> int:
    from metrics_platform.lib.settings import config_path, load_settings

    parser = argparse.ArgumentParser(
        prog="python -m metrics_platform.lib.alert_rules",
        description="Generate Grafana's alert rules (grafana/provisioning/alerting) from the settings.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 on a difference"
    )
    parser.add_argument(
        "--settings",
        type=Path,
        default=None,
        help="the settings file (default: METRICS_PLATFORM_CONFIG)",
    )
    parser.add_argument(
        "--output", type=Path, default=ALERTING_FILE, help=f"default: {ALERTING_FILE}"
    )
    args = parser.parse_args(argv)
    path = args.settings or config_path()
    text = render(rules_from_settings(load_settings(path)))
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else None
    if args.check:
        if current != text:
            print(
                f"{args.output} is out of date with {path}; run `python -m "
                "metrics_platform.lib.alert_rules`",
                file=sys.stderr,
            )
            return 1
        print(f"alert rules up to date in {args.output}")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} from {path}{' (no change)' if current == text else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
