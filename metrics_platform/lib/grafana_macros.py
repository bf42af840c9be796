"""Grafana's query interpolation for its PostgreSQL data source, reproduced to run dashboard SQL.

A dashboard query reaches Postgres after three rewrites, in this order:

1. **Template variables** (in the browser, `templateSrv.replace` with the SQL data source's
   formatter): `$var`, `${var}`, `[[var]]`, `${var:format}`, plus the scoped variables
   `$__interval` / `$__interval_ms` and the macros `$__from` / `$__to`. Without an explicit format,
   the SQL formatter applies: a multi-value or include-all variable is quoted as SQL literals
   (`'a','b'`, quotes doubled), a plain single value only has its quotes doubled, a number stays a
   number. `${var:csv}`, `${var:sqlstring}`, `${var:singlequote}`, ... use Grafana's format
   registry. An unknown variable is left as written.
2. **Global substitutions** (backend, `sqleng.Interpolate`): `$__interval_ms`, `$__interval`,
   `$__unixEpochFrom()`, `$__unixEpochTo()`.
3. **Postgres macros** (backend, `postgresMacroEngine`): `$__time`, `$__timeEpoch`,
   `$__timeFilter`, `$__timeFrom`, `$__timeTo`, `$__timeGroup`, `$__timeGroupAlias`,
   `$__unixEpochFilter`, `$__unixEpochNanoFilter`, `$__unixEpochNanoFrom`, `$__unixEpochNanoTo`,
   `$__unixEpochGroup`, `$__unixEpochGroupAlias`; any other `$name(...)` is an error.

The expansions are character for character Grafana's (Go's formatting included: times in
RFC 3339 with trimmed nanoseconds, interval seconds with `%v`), including its quirks: a macro's
arguments end at the first `)`, and a `$__timeGroup(...)` whose first occurrence in the query is
followed by a comma gets ` AS "time"` (the pre-5.3 form) wherever it appears. The TimescaleDB
variant of `$__timeGroup` is not reproduced: the platform's data source has `timescaledb: false`.

Plain Python, no Grafana: the tests use it to run every dashboard query against a real store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from urllib.parse import quote

ALL_VALUE = "$__all"  # the value Grafana stores when "All" is selected
ALL_TEXT = "All"


class MacroError(ValueError):
    """A macro Grafana would refuse: unknown, missing arguments, or an unparsable interval."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range; both ends timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self):
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a Grafana time range needs timezone-aware datetimes")


@dataclass(frozen=True)
class TemplateVariable:
    """A dashboard variable and its current value, as the template service sees it.

    `value` is a string, a number, or a list of strings (a multi-value selection); `ALL_VALUE`
    (or `[ALL_VALUE]`) means "All", which stands for every one of `options` unless the variable
    has a custom `all_value`.
    """

    name: str
    value: str | int | float | Sequence[str]
    options: Sequence[str] = field(default_factory=tuple)
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    text: str | Sequence[str] | None = None

    def is_all(self) -> bool:
        value = self.value
        return value == ALL_VALUE or (
            isinstance(value, (list, tuple)) and len(value) > 0 and value[0] == ALL_VALUE
        )


# --- Go formatting --------------------------------------------------------------------------------


def go_rfc3339nano(moment: datetime) -> str:
    """`t.UTC().Format(time.RFC3339Nano)`: trailing zeros of the fraction dropped, `Z` for UTC."""
    utc = moment.astimezone(timezone.utc)
    text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    if utc.microsecond:
        text += "." + f"{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def go_float(value: float) -> str:
    """Go's `fmt.Sprint(float64)` (`%v`, i.e. `%g` with the shortest digits; `%e` from 1e+06)."""
    if value == 0:
        return "0"
    negative = value < 0
    digits_tuple = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(str(d) for d in digits_tuple.digits)
    point = len(digits) + digits_tuple.exponent  # position of the decimal point in `digits`
    exponent = point - 1
    if exponent < -4 or exponent >= 6:  # strconv: shortest precision decides with eprec = 6
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        text = f"{mantissa}e{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    elif point <= 0:
        text = "0." + "0" * -point + digits
    elif point >= len(digits):
        text = digits + "0" * (point - len(digits))
    else:
        text = digits[:point] + "." + digits[point:]
    return "-" + text if negative else text


def _unix(moment: datetime) -> int:
    """Go's `t.Unix()`: whole seconds, rounded towards minus infinity."""
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return delta.days * 86400 + delta.seconds


def _unix_nano(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


# --- Durations: Go's time.ParseDuration and Grafana's gtime -----------------------------------

_NANOS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_DURATION_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")
_DATE_UNIT = re.compile(r"(\d+)([dwMy])")


def go_parse_duration(text: str) -> int:
    """Go's `time.ParseDuration`, in nanoseconds (`1h30m`, `1.5s`, `300ms`, `-2m`, `0`)."""
    original, sign = text, 1
    if text[:1] in ("+", "-"):
        sign, text = (-1 if text[0] == "-" else 1), text[1:]
    if text == "0":
        return 0
    if not text:
        raise MacroError(f"invalid duration {original!r}")
    total = Fraction(0)
    while text:
        whole, fraction, unit = _DURATION_PART.match(text).groups()
        if not whole and not fraction:
            raise MacroError(f"invalid duration {original!r}")
        if not unit:
            raise MacroError(f"missing unit in duration {original!r}")
        if unit not in _NANOS:
            raise MacroError(f"unknown unit {unit!r} in duration {original!r}")
        number = Fraction(int(whole or "0"))
        if fraction:
            number += Fraction(int(fraction), 10 ** len(fraction))
        total += number * _NANOS[unit]
        text = text[_DURATION_PART.match(text).end() :]
    return sign * int(total)  # Go truncates the fractional nanoseconds


def _add_date(moment: datetime, years: int, months: int, days: int) -> datetime:
    """Go's `t.AddDate`: overflowing months and days normalize forward (Jan 31 + 1M = Mar 3)."""
    month_index = moment.year * 12 + (moment.month - 1) + years * 12 + months
    year, month = divmod(month_index, 12)
    first = moment.replace(year=year, month=month + 1, day=1)
    return first + timedelta(days=moment.day - 1 + days)


def parse_interval(text: str, *, now: datetime | None = None) -> int:
    """`gtime.ParseInterval`, in nanoseconds: Go durations, plus `Nd`, `Nw`, `NM`, `Ny` measured
    from now in UTC (days and weeks are exact; months and years depend on the calendar)."""
    match = _DATE_UNIT.fullmatch(text)
    if not match:
        return go_parse_duration(text)
    count, unit = int(match.group(1)), match.group(2)
    current = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    years, months, days = {
        "d": (0, 0, count),
        "w": (0, 0, 7 * count),
        "M": (0, count, 0),
        "y": (count, 0, 0),
    }[unit]
    delta = _add_date(current, years, months, days) - current
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _seconds(nanos: int) -> float:
    """Go's `Duration.Seconds()`."""
    whole, rest = divmod(abs(nanos), 1_000_000_000)
    value = float(whole) + float(rest) / 1e9
    return -value if nanos < 0 else value


def format_interval(interval: timedelta) -> str:
    """`gtime.FormatInterval`: the largest whole unit of y (365d), d, h, m, s, ms."""
    nanos = (
        interval.days * 86400 + interval.seconds
    ) * 1_000_000_000 + interval.microseconds * 1000
    hour = 3600 * 1_000_000_000
    for unit, size in (
        ("y", 365 * 24 * hour),
        ("d", 24 * hour),
        ("h", hour),
        ("m", 60 * 1_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
    ):
        if nanos >= size:
            return f"{nanos // size}{unit}"
    return "1ms"


# The browser's `rangeUtil.intervalToMs` (months are 30 days, years 365).
_FRONTEND_UNIT_MS = {
    "y": 31_536_000_000,
    "M": 2_592_000_000,
    "w": 604_800_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}


def interval_to_ms(text: str) -> int:
    """The browser's `rangeUtil.intervalToMs` for a simple interval such as `1h` or `15m`."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|M|y)", text.strip())
    if not match:
        raise MacroError(f"invalid interval {text!r}")
    return int(match.group(1)) * _FRONTEND_UNIT_MS[match.group(2)]


# The browser's `rangeUtil.roundInterval`: (below, in ms) -> the interval it rounds to.
_ROUNDED_INTERVALS = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000),
    (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000),
    (45_000, 30_000), (90_000, 60_000), (210_000, 120_000), (450_000, 300_000),
    (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000), (2_700_000, 1_800_000),
    (5_400_000, 3_600_000), (9_000_000, 7_200_000), (16_200_000, 10_800_000),
    (32_400_000, 21_600_000), (86_400_000, 43_200_000), (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000), (3_628_800_000, 2_592_000_000),
)  # fmt: skip


def panel_interval(time_range: TimeRange, max_data_points: int, min_interval: str = "1ms") -> str:
    """A panel's `$__interval` as the browser computes it (`rangeUtil.calculateInterval`): the
    range over the panel's data points (its width in pixels by default), rounded to Grafana's
    steps, at least the panel's minimum interval; as Grafana's text (`secondsToHms`)."""
    raw = (time_range.end - time_range.start).total_seconds() * 1000 / max_data_points
    rounded = next((to for below, to in _ROUNDED_INTERVALS if raw < below), 31_536_000_000)
    milliseconds = max(rounded, interval_to_ms(min_interval))
    for unit in ("y", "d", "h", "m", "s"):
        if milliseconds >= _FRONTEND_UNIT_MS[unit]:
            return f"{milliseconds // _FRONTEND_UNIT_MS[unit]}{unit}"
    return f"{milliseconds}ms"


# --- 1. Template variables (browser) --------------------------------------------------------------

# Grafana's VARIABLE_REGEX: $var | [[var]] / [[var:fmt]] | ${var} / ${var.path} / ${var:fmt}
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}", re.ASCII
)


def _quote_literal(value: str) -> str:
    """`PostgresQueryModel.quoteLiteral`."""
    return "'" + str(value).replace("'", "''") + "'"


def _js_string(value) -> str:
    """JavaScript's `String(value)` for the values variables hold."""
    if isinstance(value, (list, tuple)):
        return ",".join(_js_string(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def sql_formatter(value, variable: TemplateVariable) -> str:
    """The SQL data sources' `interpolateVariable`, used when a reference names no format."""
    if isinstance(value, str):
        if variable.multi or variable.include_all:
            return _quote_literal(value)
        return value.replace("'", "''")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _js_string(value)
    if isinstance(value, (list, tuple)):
        return ",".join(_quote_literal(v) for v in value)
    return _js_string(value)


def _escape_regex(text: str) -> str:
    return re.sub(r"([\\^$*+?.()|\[\]{}/])", r"\\\1", text)


def _lucene_escape(text: str) -> str:
    try:
        float(text)
        return text
    except ValueError:
        return re.sub(r'([!*+\-=<>\s&|()\[\]{}^~?:\\/"])', r"\\\1", text)


def _encode_uri_component_strict(text) -> str:
    return quote(_js_string(text), safe="-_.~")


def _encode_uri_strict(text) -> str:
    return quote(_js_string(text), safe=";,/?:@&=+$#-_.~")


def _sql_string(value) -> str:
    def one(v) -> str:
        return (
            "'"
            + re.sub(r"'|\"", lambda m: "''" if m.group(0) == "'" else '\\"', _js_string(v))
            + "'"
        )

    if isinstance(value, (list, tuple)):
        return ",".join(one(v) for v in value)
    return one(value)


def _date_format(value, args: list[str]) -> str:
    try:
        number = int(value) if not isinstance(value, str) else int(value.strip() or "x")
    except ValueError:
        return "NaN"
    arg = args[0] if args else "iso"
    if arg == "ms":
        return _js_string(value)
    if arg == "seconds":
        return str(round(number / 1000))
    if arg == "iso":
        moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=number)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    raise MacroError(f"date format {':'.join(args)!r} is not reproduced here")


def _variable_text(variable: TemplateVariable) -> str:
    if variable.text is not None:
        text = variable.text
    elif variable.is_all():
        return ALL_TEXT
    else:
        text = variable.value
    if isinstance(text, (list, tuple)):
        return " + ".join(_js_string(t) for t in text)
    return _js_string(text)


def _format(value, fmt: str, variable: TemplateVariable) -> str:
    """Grafana's format registry (`${var:fmt}`); an unknown format falls back to glob."""
    name, *args = fmt.split(":")
    is_list = isinstance(value, (list, tuple))
    if name == "raw":
        return _js_string(value)
    if name in ("csv", "join"):
        separator = args[0] if (name == "join" and args) else ","
        return separator.join(_js_string(v) for v in value) if is_list else _js_string(value)
    if name == "pipe":
        return "|".join(_js_string(v) for v in value) if is_list else _js_string(value)
    if name == "distributed":
        if not is_list:
            return _js_string(value)
        return ",".join(
            _js_string(v) if i == 0 else f"{variable.name}={_js_string(v)}"
            for i, v in enumerate(value)
        )
    if name == "json":
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    if name == "regex":
        if is_list:
            escaped = [_escape_regex(_js_string(v)) for v in value]
            return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
        return _escape_regex(_js_string(value))
    if name == "lucene":
        if is_list:
            if not value:
                return "__empty__"
            return "(" + " OR ".join('"' + _lucene_escape(_js_string(v)) + '"' for v in value) + ")"
        return _lucene_escape(_js_string(value))
    if name == "singlequote":
        items = value if is_list else [value]
        return ",".join("'" + _js_string(v).replace("'", "\\'") + "'" for v in items)
    if name == "doublequote":
        items = value if is_list else [value]
        return ",".join('"' + _js_string(v).replace('"', '\\"') + '"' for v in items)
    if name == "sqlstring":
        return _sql_string(value)
    if name == "percentencode":
        if is_list:
            return _encode_uri_component_strict("{" + ",".join(_js_string(v) for v in value) + "}")
        return _encode_uri_component_strict(value)
    if name == "uriencode":
        if is_list:
            return _encode_uri_strict("{" + ",".join(_js_string(v) for v in value) + "}")
        return _encode_uri_strict(value)
    if name == "queryparam":
        items = value if is_list else [value]
        return "&".join(f"var-{variable.name}={_encode_uri_component_strict(v)}" for v in items)
    if name == "text":
        return _variable_text(variable)
    if name == "date":
        return _date_format(value, args)
    # glob, and Grafana's fallback for a format it does not know
    if is_list and len(value) > 1:
        return "{" + ",".join(_js_string(v) for v in value) + "}"
    return _js_string(value)


def interpolate_variables(
    sql: str,
    variables: Mapping[str, TemplateVariable] | Sequence[TemplateVariable] = (),
    *,
    time_range: TimeRange | None = None,
    interval: str | None = None,
) -> str:
    """Step 1: the browser's template-variable replacement for a SQL data source query.

    `interval` is the panel's `$__interval` text (e.g. `1h`); `$__interval_ms` follows from it.
    `time_range` provides `$__from` / `$__to` (epoch milliseconds).
    """
    if not isinstance(variables, Mapping):
        variables = {v.name: v for v in variables}
    scoped: dict[str, TemplateVariable] = {}
    if interval is not None:
        scoped["__interval"] = TemplateVariable("__interval", interval)
        scoped["__interval_ms"] = TemplateVariable("__interval_ms", interval_to_ms(interval))
    if time_range is not None:
        for name, moment in (("__from", time_range.start), ("__to", time_range.end)):
            millis = _unix(moment) * 1000 + moment.astimezone(timezone.utc).microsecond // 1000
            scoped[name] = TemplateVariable(name, millis)
    return _replace_variables(sql, {**variables, **scoped}, default_format=None)


def _replace_variables(
    sql: str, variables: Mapping[str, TemplateVariable], *, default_format: str | None
) -> str:
    def replace(match: re.Match) -> str:
        var1, var2, fmt2, var3, _field_path, fmt3 = match.groups()
        variable = variables.get(var1 or var2 or var3)
        if variable is None:
            return match.group(0)
        fmt = fmt2 or fmt3 or default_format
        value = variable.value
        if variable.is_all():
            if variable.all_value is not None:
                # A custom all value is used as written, then interpolated again (glob format);
                # only the text and percentencode formats look at it.
                if fmt == "text":
                    return ALL_TEXT
                if fmt == "percentencode":
                    return _format(variable.all_value, fmt, variable)
                return _replace_variables(variable.all_value, variables, default_format="glob")
            value = list(variable.options)
        if value is None:
            return ""
        if fmt:
            return _format(value, fmt, variable)
        return sql_formatter(value, variable)

    return _VARIABLE.sub(replace, sql)


# --- 2. Global substitutions (backend) ------------------------------------------------------------


def interpolate_global(sql: str, time_range: TimeRange, interval: timedelta) -> str:
    """Step 2: `sqleng.Interpolate`, for what the browser left (or for queries not from it)."""
    interval_ms = (interval.days * 86400 + interval.seconds) * 1000 + interval.microseconds // 1000
    sql = sql.replace("$__interval_ms", str(interval_ms))
    sql = sql.replace("$__interval", format_interval(interval))
    sql = sql.replace("$__unixEpochFrom()", str(_unix(time_range.start)))
    return sql.replace("$__unixEpochTo()", str(_unix(time_range.end)))


# --- 3. Postgres macros (backend) -----------------------------------------------------------------

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


def _group_seconds(name: str, args: list[str], now: datetime | None) -> str:
    if len(args) < 2:
        raise MacroError(f"macro {name} needs time column and interval and optional fill value")
    try:
        nanos = parse_interval(args[1].strip("'"), now=now)
    except MacroError:
        raise MacroError(f"error parsing interval {args[1]}") from None
    if len(args) == 3 and args[2] not in ("NULL", "previous"):
        try:
            float(args[2])
        except ValueError:
            raise MacroError(f"error parsing fill value {args[2]}") from None
    return go_float(_seconds(nanos))


def _evaluate_macro(name: str, args: list[str], time_range: TimeRange, now: datetime | None) -> str:
    start, end = time_range.start, time_range.end
    if (
        name
        in ("__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter", "__unixEpochNanoFilter")
        and len(args) == 0
    ):
        raise MacroError(f"missing time column argument for macro {name}")
    if name == "__time":
        return f'{args[0]} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "__timeFilter":
        return f"{args[0]} BETWEEN '{go_rfc3339nano(start)}' AND '{go_rfc3339nano(end)}'"
    if name == "__timeFrom":
        return f"'{go_rfc3339nano(start)}'"
    if name == "__timeTo":
        return f"'{go_rfc3339nano(end)}'"
    if name == "__timeGroup":
        seconds = _group_seconds(name, args, now)
        return f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
    if name == "__timeGroupAlias":
        return _evaluate_macro("__timeGroup", args, time_range, now) + ' AS "time"'
    if name == "__unixEpochFilter":
        return f"{args[0]} >= {_unix(start)} AND {args[0]} <= {_unix(end)}"
    if name == "__unixEpochNanoFilter":
        return f"{args[0]} >= {_unix_nano(start)} AND {args[0]} <= {_unix_nano(end)}"
    if name == "__unixEpochNanoFrom":
        return str(_unix_nano(start))
    if name == "__unixEpochNanoTo":
        return str(_unix_nano(end))
    if name == "__unixEpochGroup":
        seconds = _group_seconds(name, args, now)
        return f"floor(({args[0]})/{seconds})*{seconds}"
    if name == "__unixEpochGroupAlias":
        return _evaluate_macro("__unixEpochGroup", args, time_range, now) + ' AS "time"'
    raise MacroError(f'unknown macro "{name}"')


def interpolate_macros(sql: str, time_range: TimeRange, *, now: datetime | None = None) -> str:
    """Step 3: the Postgres macro engine. `now` only matters for `d`/`w`/`M`/`y` intervals."""

    def replace(match: re.Match) -> str:
        name, raw_args = match.group(1), match.group(2)
        if name == "__timeGroup":
            # Pre-5.3 compatibility: judged on the first occurrence of the same text.
            index = sql.find(match.group(0))
            if index >= 0:
                index += len(match.group(0))
                if len(sql) > index and sql[index] == ",":
                    name = "__timeGroupAlias"
        args = [arg.strip(" ") for arg in raw_args.split(",")]
        return _evaluate_macro(name, args, time_range, now)

    return _MACRO.sub(replace, sql)


# --- All three ------------------------------------------------------------------------------------


def expand(
    sql: str,
    time_range: TimeRange,
    *,
    interval: str = "1h",
    variables: Mapping[str, TemplateVariable] | Sequence[TemplateVariable] = (),
    now: datetime | None = None,
) -> str:
    """A panel query as Postgres receives it from Grafana, for `time_range` and `$__interval`."""
    sql = interpolate_variables(sql, variables, time_range=time_range, interval=interval)
    interval_delta = timedelta(milliseconds=interval_to_ms(interval))
    sql = interpolate_global(sql, time_range, interval_delta)
    return interpolate_macros(sql, time_range, now=now)
