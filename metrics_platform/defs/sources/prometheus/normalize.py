"""Pure normalization of Prometheus range-query answers into metric rows.

An answer is Prometheus's JSON (`{"status": "success", "data": {"resultType": "matrix",
"result": [{"metric": {labels}, "values": [[unix time, "value"], ...]}, ...]}}`), evaluated at
the end of every hour: the sample at time t is the value of hour t - 1h. Each series becomes one
metric, named by filling the query's template with the series' labels (`http.requests.{job}`).

- A sample value is read only as Prometheus writes it (Go's `strconv.FormatFloat`): a decimal
  with an optional exponent (`12`, `-0.5`, `1e+21`, `1e-07`), `NaN`, `+Inf` or `-Inf`; no
  underscores, no spaces, no other spelling. `-0` is stored as 0.
- A `NaN` sample (e.g. a ratio over no requests) has no value: it is dropped and counted as
  rejected, never stored as zero.
- `+Inf` / `-Inf` is the source's fault: the answer fails and nothing is stored.
- A series twice in an answer, two samples of a series at one time, or two series that give the
  same metric for an hour: the answer fails, naming the series.
- No series at all means Prometheus has no data for the window: no rows, no error.
- Anything else that does not fit raises `SourceError`, never a bare KeyError or ValueError.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pandas as pd

from metrics_platform.defs.sources.prometheus import SOURCE
from metrics_platform.lib.errors import ConfigurationError, SourceError
from metrics_platform.lib.metric_rows import (
    check_metric_frame,
    empty_metric_frame,
    metric_frame,
    sanitize_name_part,
)
from metrics_platform.lib.templates import template_fields

ONE_HOUR = timedelta(hours=1)
# A sample value as Prometheus writes it (Go's strconv.FormatFloat, 'f' or 'e' format).
SAMPLE_VALUE = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|NaN|[+-]Inf")
# Prometheus's error types worth asking again for; any other error gives the same answer twice.
TRANSIENT_ERROR_TYPES = ("timeout", "unavailable")


def _short(value: object, limit: int = 300) -> str:
    """A server's text for a message: as it is, cut to `limit` characters (else its repr)."""
    text = value if isinstance(value, str) else reprlib.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def matrix_result(payload: object) -> list[dict]:
    """The series of a `query_range` answer, or `SourceError` saying what is wrong with it."""
    if not isinstance(payload, Mapping):
        raise SourceError(SOURCE, f"the answer is not a JSON object: {reprlib.repr(payload)}")
    status = payload.get("status")
    if status == "error":
        error_type = payload.get("errorType")
        kind = _short(error_type) if error_type else "an error of no type"
        raise SourceError(
            SOURCE,
            f"Prometheus answered {kind}: {_short(payload.get('error'))}",
            transient=error_type in TRANSIENT_ERROR_TYPES,
        )
    if status != "success":
        raise SourceError(SOURCE, f"the answer has status {reprlib.repr(status)}, not 'success'")
    data = payload.get("data")
    result_type = data.get("resultType") if isinstance(data, Mapping) else None
    if result_type != "matrix":
        raise SourceError(SOURCE, f"expected a matrix result, got {reprlib.repr(result_type)}")
    result = data.get("result")
    if not isinstance(result, list):
        raise SourceError(SOURCE, f"the matrix result is not a list: {reprlib.repr(result)}")
    for series in result:
        labels = series.get("metric") if isinstance(series, Mapping) else None
        if (
            not isinstance(labels, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
            or not isinstance(series.get("values"), list)
        ):
            raise SourceError(SOURCE, f"malformed series {reprlib.repr(series)}")
    return result


def merge_matrices(payloads: Iterable[object]) -> dict:
    """One answer from the answers for consecutive chunks of a window, each series once; a
    series twice in one answer fails."""
    merged: dict[tuple, dict] = {}
    for payload in payloads:
        in_answer: set[tuple] = set()
        for series in matrix_result(payload):
            key = tuple(sorted(series["metric"].items()))
            if key in in_answer:
                raise SourceError(
                    SOURCE, f"the series {reprlib.repr(dict(key))} is twice in one answer"
                )
            in_answer.add(key)
            entry = merged.setdefault(key, {"metric": dict(series["metric"]), "values": []})
            entry["values"].extend(series["values"])
    return {"status": "success", "data": {"resultType": "matrix", "result": list(merged.values())}}


def normalize_matrix(
    payload: object, template: str, start: datetime, end: datetime
) -> tuple[pd.DataFrame, int]:
    """An answer for the hours of [start, end) -> (long metric rows, NaN samples dropped)."""
    try:
        fields = template_fields(template)
    except ValueError as exc:
        raise ConfigurationError(f"metric template: {exc}") from None
    first, last = start.timestamp() + 3600, end.timestamp()
    hours, names, values, rejected = [], [], [], 0
    origins: dict[tuple[str, float], Mapping] = {}  # (metric, time) -> labels of its series
    seen_series: set[tuple] = set()
    for series in matrix_result(payload):
        key = tuple(sorted(series["metric"].items()))
        if key in seen_series:
            raise SourceError(
                SOURCE, f"the series {reprlib.repr(dict(key))} is twice in the answer"
            )
        seen_series.add(key)
        labels = series["metric"]
        missing = [field for field in fields if field not in labels]
        if missing:
            raise SourceError(
                SOURCE,
                f"a series has no label {missing[0]!r}, which metric {template!r} needs "
                f"(labels: {reprlib.repr(dict(labels))})",
            )
        # Label values come from the data: made safe for metric names, like GA4 dimension values.
        name = template.format_map({k: sanitize_name_part(v) for k, v in labels.items()})
        for sample in series["values"]:
            if not isinstance(sample, Sequence) or isinstance(sample, str) or len(sample) != 2:
                raise SourceError(SOURCE, f"{name}: malformed sample {reprlib.repr(sample)}")
            at, raw = sample
            if (
                isinstance(at, bool)
                or not isinstance(at, (int, float))
                or not first <= at <= last
                or at % 3600
            ):
                raise SourceError(
                    SOURCE,
                    f"{name}: sample time {reprlib.repr(at)} is not "
                    "the end of an hour of the window",
                )
            value = _value(name, raw)
            if (name, at) in origins:
                other = origins[(name, at)]
                raise SourceError(
                    SOURCE,
                    f"metric {name!r} reported twice for hour {_hour_of(at)}: "
                    + (
                        f"two samples in series {reprlib.repr(dict(labels))}"
                        if other is labels
                        else f"by series {reprlib.repr(dict(other))} and "
                        f"{reprlib.repr(dict(labels))}"
                    ),
                )
            origins[(name, at)] = labels
            if math.isnan(value):
                rejected += 1
                continue
            hours.append(datetime.fromtimestamp(at, timezone.utc) - ONE_HOUR)
            names.append(name)
            values.append(value)
    frame = metric_frame(SOURCE, hours, names, values) if names else empty_metric_frame()
    return frame, rejected


def _hour_of(at: float) -> str:
    """The hour whose value a sample at evaluation time `at` is."""
    return (datetime.fromtimestamp(at, timezone.utc) - ONE_HOUR).isoformat()


def parse_sample_value(raw: object) -> float:
    """A sample value as Prometheus writes it, or ValueError; `-0` is 0."""
    if not isinstance(raw, str) or not SAMPLE_VALUE.fullmatch(raw):
        raise ValueError(f"{reprlib.repr(raw)} is not a Prometheus sample value")
    return float(raw) + 0.0  # -0.0 + 0.0 is 0.0


def _value(name: str, raw: object) -> float:
    try:
        value = parse_sample_value(raw)
    except ValueError:
        raise SourceError(
            SOURCE, f"{name}: sample value {reprlib.repr(raw)} is not a number"
        ) from None
    if math.isinf(value):
        raise SourceError(SOURCE, f"{name}: value {raw} is infinite; refusing to store it")
    return value


def combine_frames(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The rows of all queries, refusing a metric that two queries report for the same hour."""
    parts = [frame for frame in frames if len(frame)]
    if not parts:
        return empty_metric_frame()
    return check_metric_frame(SOURCE, pd.concat(parts, ignore_index=True))


@contextmanager
def naming_query(query: str) -> Iterator[None]:
    """Say which query a `SourceError` raised inside concerns."""
    try:
        yield
    except SourceError as exc:
        raise SourceError(
            SOURCE, f"query {query!r}: {exc.cause}", transient=exc.transient
        ) from None
