"""Prometheus's HTTP API: each query evaluated at the end of every UTC hour of a window.

Convention: the value of hour H is the query evaluated at H+1h, the end of the hour. A range
selector looks back from the evaluation time, so `increase(x[1h])` evaluated at H+1h covers the
hour [H, H+1h) (a sample exactly on the boundary is seen by both hours' ranges in Prometheus 2),
and `last_over_time(x[1h])` is a gauge's last value in H. The hours of a
window [start, end) are therefore asked for with start=start+1h, end=end and step=1h, and the
sample at time t belongs to hour t-1h: every value belongs to exactly one UTC hour.

Prometheus answers at most 11,000 points per series, so a longer window is split into chunks of
at most 11,000 hours, one request each. A server that is down, slow or answers 5xx is asked again
a few times, with exponential backoff; a query Prometheus refuses fails at once, with its error.

Every request is bounded (`metrics_platform.lib.http`): `timeout` per read, `deadline_seconds`
for the whole request (a server trickling its answer is cut off; that may be passing, so it is
retried) and `max_response_bytes` for its size (an answer over it fails at once, unread past the
limit: asking again gives the same answer). The bearer token is a known secret of the redaction
layer: an error body that echoes it is quoted without it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Literal
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field, ValidationError, field_validator

from metrics_platform.defs.sources.prometheus import SOURCE, TOKEN_ENV, URL_ENV
from metrics_platform.defs.sources.prometheus.normalize import (
    ONE_HOUR,
    matrix_result,
    merge_matrices,
    template_fields,
)
from metrics_platform.lib import redaction
from metrics_platform.lib.errors import ConfigurationError, SourceError
from metrics_platform.lib.http import HttpAnswer, HttpFailure, MiB, request

# Prometheus refuses a range query with more points than this per series.
MAX_POINTS = 11_000
Sleep = Callable[[float], None]


class PrometheusQuery(dg.Config):
    """One PromQL query; each series it returns is one metric."""

    query: str = Field(description="PromQL, e.g. `sum by (job) (increase(requests_total[1h]))`.")
    metric: str = Field(
        description="Metric name template filled from each series' labels: `http.requests.{job}`."
    )
    aggregation: Literal["sum", "last"] = Field(
        description="`sum` for a count per hour (counters), `last` for the hour's end (gauges)."
    )
    unit: str = Field(default="", description="Unit of the values, e.g. `requests`.")
    description: str = Field(default="", description="What the metric measures.")

    @field_validator("query")
    @classmethod
    def _query_is_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the query is empty")
        return value

    @field_validator("metric")
    @classmethod
    def _metric_is_a_template(cls, value: str) -> str:
        template_fields(value)
        return value


def load_queries(entries: object) -> list[PrometheusQuery]:
    """The `prometheus.queries` settings, each checked; an error names the offending key."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigurationError("prometheus.queries: must be a list of queries")
    return [_load_query(entry, f"prometheus.queries[{i}]") for i, entry in enumerate(entries)]


def _load_query(entry: object, key: str) -> PrometheusQuery:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"{key}: must be a mapping with query, metric and aggregation")
    fields = PrometheusQuery.model_fields
    unknown = sorted(str(name) for name in entry if name not in fields)
    if unknown:
        raise ConfigurationError(
            f"{key}.{unknown[0]}: unknown setting (expected {', '.join(fields)})"
        )
    missing = [name for name, field in fields.items() if field.is_required() and name not in entry]
    if missing:
        raise ConfigurationError(f"{key}.{missing[0]}: missing")
    try:
        return PrometheusQuery(**entry)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        cause = error.get("ctx", {}).get("error") or error["msg"]
        raise ConfigurationError(f"{key}.{where}: {cause}") from None


def evaluation_chunks(start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """(first, last) evaluation times of the requests for the hours of [start, end)."""
    chunks = []
    while start < end:
        chunk_end = min(start + MAX_POINTS * ONE_HOUR, end)
        chunks.append((start + ONE_HOUR, chunk_end))
        start = chunk_end
    return chunks


class Prometheus(dg.ConfigurableResource):
    """A Prometheus server's HTTP API, and the queries read from it every hour."""

    base_url: str = Field(description=f"Server URL, e.g. http://prometheus:9090 ({URL_ENV}).")
    queries: list[PrometheusQuery] = Field(default_factory=list, description="Queries to read.")
    timeout: float = Field(
        default=30.0, gt=0, description="Seconds to connect, and to wait for each read."
    )
    deadline_seconds: float = Field(
        default=120.0, gt=0, description="Seconds for a whole request, first byte to last."
    )
    max_response_bytes: int = Field(
        default=64 * MiB, ge=1, description="Largest answer read; a larger one fails."
    )
    max_retries: int = Field(default=3, ge=0, description="Retries of a transient failure.")
    retry_backoff: float = Field(
        default=2.0, ge=0, description="Seconds before the first retry; doubled for each next one."
    )
    token: str | None = Field(
        default=None, repr=False, description=f"Bearer token, if one is needed ({TOKEN_ENV})."
    )

    def query_range(
        self, query: str, start: datetime, end: datetime, *, sleep: Sleep = time.sleep
    ) -> dict:
        """The query at the end of every hour of [start, end), as one Prometheus answer."""
        return merge_matrices(
            self._get(
                {
                    "query": query,
                    "start": int(first.timestamp()),
                    "end": int(last.timestamp()),
                    "step": int(ONE_HOUR.total_seconds()),
                },
                sleep,
            )
            for first, last in evaluation_chunks(start, end)
        )

    def _get(self, params: dict, sleep: Sleep) -> dict:
        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                return _answer(self._request(params))
            except SourceError as exc:
                if not exc.transient:
                    raise
                if attempt + 1 == attempts:
                    raise SourceError(
                        SOURCE, f"{exc.cause} (attempts: {attempts})", transient=True
                    ) from None
                delay = self.retry_backoff * 2**attempt
                redaction.platform_logger().warning(
                    f"source {SOURCE!r}: {exc.cause}; retrying in {delay:g}s"
                )
                sleep(delay)

    def _request(self, params: dict) -> HttpAnswer:
        redaction.register(self.token)
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            return request(
                "GET",
                f"{self.base_url.rstrip('/')}/api/v1/query_range",
                params=params,
                headers=headers,
                timeout=self.timeout,
                deadline=self.deadline_seconds,
                max_bytes=self.max_response_bytes,
            )
        except HttpFailure as exc:
            raise SourceError(SOURCE, self._failure(exc), transient=exc.transient) from None

    def _failure(self, exc: HttpFailure) -> str:
        server = self._server
        return {
            "connect": f"cannot connect to {server}",
            "timeout": f"no answer from {server} within {self.timeout:g}s",
            "too_large": f"the answer from {server} is over prometheus.max_response_bytes: {exc}",
        }.get(exc.kind, f"{server}: {exc}")

    @property
    def _server(self) -> str:
        """The server's address without any credentials in the URL."""
        try:
            parts = urlsplit(self.base_url)
            return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        except ValueError:
            return "the Prometheus server"


def _answer(response: HttpAnswer) -> dict:
    """A checked answer, or `SourceError`: Prometheus's own error type decides whether trying
    again may help; without one, a 5xx may and a 4xx or an unreadable body may not."""
    try:
        payload = json.loads(response.body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and payload.get("status") == "error":
        matrix_result(payload)  # raises, naming Prometheus's error type and message
    if response.status >= 500:
        raise SourceError(SOURCE, f"HTTP {response.status} from the server", transient=True)
    quoted = redaction.redact(response.text)[:200]
    if response.status >= 400:
        raise SourceError(SOURCE, f"HTTP {response.status}: {quoted!r}")
    if payload is None:
        raise SourceError(SOURCE, f"the answer is not JSON: {quoted!r}")
    matrix_result(payload)
    return payload
