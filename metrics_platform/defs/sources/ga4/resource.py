"""The GA4 Data API client: paged `runReport`s of one property's metrics, by hour and by day.

Every call is bounded. Each HTTP request (the report's pages and the service account's token
exchange) goes through `metrics_platform.lib.http.BoundedHttp`: `timeout_seconds` per read,
`deadline_seconds` for the whole request, `max_response_bytes` for its answer. A report reads at
most `max_pages` pages, and stops at once on an API whose paging does not advance (a page that
repeats an earlier one, a `rowCount` that changes between pages, a page longer than asked for).
A deadline exceeded may be passing and is retried; an oversized answer or a pager that does not
end is not: asking again gives the same answer.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import google.auth.exceptions
import google_auth_httplib2
import httplib2
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from pydantic import Field, ValidationError, field_validator, model_validator

from metrics_platform.defs.sources.ga4 import CREDENTIALS_FILE_ENV, ENDPOINT_ENV, SOURCE
from metrics_platform.defs.sources.ga4.normalize import DATE, DATE_HOUR
from metrics_platform.lib import redaction
from metrics_platform.lib.errors import ConfigurationError, SourceError
from metrics_platform.lib.http import BoundedHttp, HttpFailure, MiB
from metrics_platform.lib.metric_rows import validate_metric_name

SCOPES = ["https://www.googleapis.com/auth/analytics.readonly"]
API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_:]*")
# The Data API's limits: 10 metrics and 9 dimensions per request, 250,000 rows per page.
MAX_METRICS, MAX_EXTRA_DIMENSIONS, MAX_PAGE_SIZE = 10, 8, 250_000
# Bounds of each request and report, as the resource's fields of the same name.
LIMITS = ("page_size", "timeout_seconds", "deadline_seconds", "max_response_bytes", "max_pages")
SETTINGS = ("property_id", "metrics", "dimensions", "aggregations", *LIMITS)
# How a day is made of a GA4 metric's hours; `recomputed`: not from its hours, but from GA4's own
# report by `date` (distinct users: a day's active users are not the sum of its hours').
AGGREGATIONS = ("sum", "last", "recomputed")
RECOMPUTED = "recomputed"


class GoogleAnalytics(dg.ConfigurableResource):
    """Read-only access to one Google Analytics 4 property through the GA4 Data API."""

    property_id: str = Field(description="Numeric GA4 property id.")
    metrics: dict[str, str] = Field(description="GA4 API metric name -> platform metric name.")
    dimensions: list[str] = Field(
        default_factory=list,
        description="Extra GA4 dimensions; their values are appended to the metric names.",
    )
    aggregations: dict[str, str] = Field(
        default_factory=dict,
        description="GA4 metric -> daily value (`sum` or `last` of its hours, or `recomputed` "
        "from GA4's daily report); `sum` when not listed.",
    )
    credentials_file: str | None = Field(
        default=None, description=f"Service-account key file ({CREDENTIALS_FILE_ENV})."
    )
    endpoint: str | None = Field(
        default=None, description=f"API root URL instead of Google's ({ENDPOINT_ENV})."
    )
    timeout_seconds: float = Field(
        default=60.0, gt=0, description="Seconds to connect, and to wait for each read."
    )
    deadline_seconds: float = Field(
        default=300.0, gt=0, description="Seconds for a whole request, first byte to last."
    )
    max_response_bytes: int = Field(
        default=128 * MiB, ge=1, description="Largest answer read; a larger one fails."
    )
    max_pages: int = Field(default=200, ge=1, description="Most pages read for one report.")
    max_retries: int = Field(default=4, ge=0, description="Retries of a 429, a 5xx or a timeout.")
    backoff_seconds: float = Field(default=2.0, ge=0, description="First retry delay; doubles.")
    max_retry_after_seconds: float = Field(
        default=120.0,
        ge=0,
        description="Longest `Retry-After` waited for in the run; a longer one fails the "
        "attempt as transient (the asset's retry policy tries again later).",
    )
    page_size: int = Field(default=100_000, ge=1, le=MAX_PAGE_SIZE, description="Rows per page.")

    @classmethod
    def from_settings(
        cls, section: Mapping, *, credentials_file: str | None, endpoint: str | None
    ) -> GoogleAnalytics:
        """The resource from the settings file's `ga4` section; errors name the key."""
        unknown = sorted(set(section) - set(SETTINGS))
        if unknown:
            raise ConfigurationError(
                f"ga4.{unknown[0]}: unknown setting; expected {', '.join(SETTINGS)}"
            )
        if not section.get("metrics"):
            raise ConfigurationError("ga4.metrics: map each GA4 metric to a platform metric name")
        settings = {key: section[key] for key in SETTINGS if section.get(key) is not None}
        if isinstance(settings.get("property_id"), int):  # unquoted in the YAML
            settings["property_id"] = str(settings["property_id"])
        try:
            return cls(
                **settings, credentials_file=credentials_file or None, endpoint=endpoint or None
            )
        except ValidationError as exc:
            error = exc.errors()[0]
            key = ".".join(str(part) for part in error["loc"])
            raise ConfigurationError(f"ga4.{key}: {error['msg']}") from None

    @field_validator("property_id")
    @classmethod
    def _property_id_is_numeric(cls, value: str) -> str:
        if not value.isascii() or not value.isdigit():
            raise ConfigurationError(f"ga4.property_id: {value!r} is not a numeric GA4 property id")
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics_are_valid(cls, value: dict[str, str]) -> dict[str, str]:
        if not 1 <= len(value) <= MAX_METRICS:
            raise ConfigurationError(f"ga4.metrics: list 1 to {MAX_METRICS} GA4 metrics")
        for ga_name, name in value.items():
            _check_api_name(ga_name, key="ga4.metrics")
            validate_metric_name(name, key=f"ga4.metrics.{ga_name}")
        if len(set(value.values())) < len(value):
            raise ConfigurationError("ga4.metrics: two GA4 metrics have the same platform name")
        return value

    @field_validator("dimensions")
    @classmethod
    def _dimensions_are_valid(cls, value: list[str]) -> list[str]:
        for name in value:
            _check_api_name(name, key="ga4.dimensions")
        if (
            {DATE_HOUR, DATE} & set(value)
            or len(set(value)) < len(value)
            or len(value) > MAX_EXTRA_DIMENSIONS
        ):
            raise ConfigurationError(
                f"ga4.dimensions: up to {MAX_EXTRA_DIMENSIONS} distinct dimensions other than "
                f"{DATE_HOUR} and {DATE}, which the hourly and daily reports use"
            )
        return value

    @field_validator("credentials_file")
    @classmethod
    def _credentials_file_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ConfigurationError(f"{CREDENTIALS_FILE_ENV}: no file at {value}")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_a_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"https?://[^/]+", value):
            raise ConfigurationError(f"{ENDPOINT_ENV}: {value!r} is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _aggregations_are_valid(self):
        for ga_name, aggregation in self.aggregations.items():
            if ga_name not in self.metrics:
                raise ConfigurationError(f"ga4.aggregations.{ga_name}: not one of ga4.metrics")
            if aggregation not in AGGREGATIONS:
                raise ConfigurationError(
                    f"ga4.aggregations.{ga_name}: {aggregation!r} is not one of {', '.join(AGGREGATIONS)}"
                )
        return self

    @property
    def recomputed_metrics(self) -> dict[str, str]:
        """The metrics whose daily values come from GA4's daily report, as `metrics` maps them."""
        return {
            ga_name: name
            for ga_name, name in self.metrics.items()
            if self.aggregations.get(ga_name) == RECOMPUTED
        }

    def run_report(
        self, start: datetime, end: datetime, *, sleep: Callable[[float], None] = time.sleep
    ) -> list[dict]:
        """The raw `runReport` pages covering the UTC window [start, end), every row read.

        `dateHour` is in the property's time zone, unknown until the first answer: the dates
        asked for pad the window's UTC dates by a day each side, which covers any zone.
        """
        first = start.astimezone(timezone.utc).date() - timedelta(days=1)
        last = (end - timedelta(microseconds=1)).astimezone(timezone.utc).date() + timedelta(days=1)
        return self._run_pages(first, last, DATE_HOUR, list(self.metrics), sleep)

    def run_daily_report(
        self, first: date, last: date, *, sleep: Callable[[float], None] = time.sleep
    ) -> list[dict]:
        """The raw `runReport` pages of the `recomputed` metrics by `date`, the property's local
        date, from day `first` to day `last` included, every row read."""
        return self._run_pages(first, last, DATE, list(self.recomputed_metrics), sleep)

    def _run_pages(
        self,
        first: date,
        last: date,
        period: str,
        metrics: list[str],
        sleep: Callable[[float], None],
    ) -> list[dict]:
        """Every page of one report of `metrics` by `period` (and the extra dimensions)."""
        dimensions = [period, *self.dimensions]
        body = {
            "dateRanges": [{"startDate": first.isoformat(), "endDate": last.isoformat()}],
            "dimensions": [{"name": name} for name in dimensions],
            "metrics": [{"name": name} for name in metrics],
            # A fixed order keeps the pages of one report from overlapping.
            "orderBys": [{"dimension": {"dimensionName": name}} for name in dimensions],
            "keepEmptyRows": False,
            "limit": self.page_size,
        }
        reports, credentials = self._reports()
        pages: list[dict] = []
        page_digests: dict[str, int] = {}  # a page's rows -> the number of the page
        offset, first_count = 0, None
        while True:
            if len(pages) == self.max_pages:
                raise SourceError(
                    SOURCE,
                    f"the report needs more than ga4.max_pages ({self.max_pages}) pages of "
                    f"{self.page_size} rows ({offset} of {first_count} rows read); raise "
                    "ga4.max_pages or ga4.page_size",
                )
            request = reports.runReport(
                property=f"properties/{self.property_id}", body={**body, "offset": offset}
            )
            page = self._execute(request, sleep, credentials)
            pages.append(page)
            number = len(pages)
            rows, row_count = page.get("rows", []), page.get("rowCount", 0)
            if not isinstance(rows, list) or not isinstance(row_count, int):
                raise SourceError(SOURCE, f"page {number}: `rows` or `rowCount` is malformed")
            first_count = row_count if first_count is None else first_count
            _check_paging(number, offset, rows, row_count, first_count, self.page_size)
            if rows:
                digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
                if digest in page_digests:
                    raise SourceError(
                        SOURCE,
                        f"page {number} (offset {offset}) repeats page {page_digests[digest]}: "
                        "the API's paging does not advance",
                    )
                page_digests[digest] = number
            offset += len(rows)
            if offset >= row_count:
                return pages
            if not rows:
                raise SourceError(SOURCE, f"GA page ended early: {offset} of {row_count} rows read")

    def _reports(self):
        """The API's `properties` collection, and the credentials it signs with (or None)."""
        service, credentials = self._service()
        return service.properties(), credentials

    def _service(self):
        http = BoundedHttp(
            timeout=self.timeout_seconds,
            deadline=self.deadline_seconds,
            max_bytes=self.max_response_bytes,
        )
        credentials = None
        if self.credentials_file:
            redaction.register(*redaction.key_file_secrets(self.credentials_file))
            try:
                credentials = service_account.Credentials.from_service_account_file(
                    self.credentials_file, scopes=SCOPES
                )
            except (OSError, ValueError, KeyError):
                # The file's contents stay out of the message: it holds a private key.
                raise SourceError(
                    SOURCE,
                    f"{CREDENTIALS_FILE_ENV} does not name a readable service-account key file",
                ) from None
            http = google_auth_httplib2.AuthorizedHttp(credentials, http=http)
        options = {"api_endpoint": self.endpoint.rstrip("/") + "/"} if self.endpoint else None
        service = build(
            "analyticsdata",
            "v1beta",
            http=http,
            client_options=options,
            static_discovery=True,
            cache_discovery=False,
        )
        return service, credentials

    def _execute(self, request, sleep: Callable[[float], None], credentials=None) -> dict:
        """One request; a 429, a 5xx or a network failure is retried with exponential backoff,
        or after the server's `Retry-After` when it asks for longer."""
        asked = 0.0
        for attempt in range(self.max_retries + 1):
            if attempt:
                sleep(max(self.backoff_seconds * 2 ** (attempt - 1), asked))
            try:
                # The client hands back a body that is not JSON as it came, a string.
                page = request.execute()
            except HttpFailure as exc:
                if not exc.transient:
                    raise SourceError(SOURCE, self._failure(exc)) from None
                cause = self._failure(exc)
                continue
            except HttpError as exc:
                # The access token the key was exchanged for is a secret too.
                redaction.register(getattr(credentials, "token", None))
                status = exc.resp.status
                cause = f"the GA4 Data API answered {status}: {_api_message(exc)}"
                if status != 429 and status < 500:
                    raise SourceError(SOURCE, cause) from None
                asked = _retry_after(exc)
                if asked > self.max_retry_after_seconds:
                    raise SourceError(
                        SOURCE, f"{cause} (asked to retry after {asked:.0f} s)", transient=True
                    ) from None
                continue
            except google.auth.exceptions.RefreshError:
                raise SourceError(
                    SOURCE, f"the service-account key in {CREDENTIALS_FILE_ENV} was refused"
                ) from None
            except (OSError, httplib2.HttpLib2Error, google.auth.exceptions.TransportError) as exc:
                cause = f"the GA4 Data API could not be reached: {type(exc).__name__}"
                continue
            except ValueError:  # a body that is not even UTF-8
                page = None
            if not isinstance(page, dict):
                raise SourceError(
                    SOURCE, "the GA4 Data API answered with something that is not a JSON object"
                )
            return page
        raise SourceError(SOURCE, f"{cause} ({self.max_retries + 1} tries)", transient=True)

    def _failure(self, exc: HttpFailure) -> str:
        if exc.kind == "too_large":
            return (
                f"the GA4 Data API's answer is over ga4.max_response_bytes: {exc}; lower "
                "ga4.page_size or raise ga4.max_response_bytes"
            )
        if exc.kind == "deadline":
            return f"the GA4 Data API did not answer in time: {exc}"
        return f"the GA4 Data API could not be reached: {exc.error or exc}"


def _check_paging(
    number: int, offset: int, rows: list, row_count: int, first_count: int, page_size: int
) -> None:
    """Refuse a page that shows the API's paging cannot end: a `rowCount` that changed since
    the first page, or more rows than asked for."""
    if row_count != first_count:
        raise SourceError(
            SOURCE,
            f"page {number} (offset {offset}) says rowCount {row_count}, the first page said "
            f"{first_count}: the report changed while it was read",
            transient=True,
        )
    if len(rows) > page_size:
        raise SourceError(
            SOURCE,
            f"page {number} (offset {offset}) has {len(rows)} rows, more than the "
            f"{page_size} asked for",
        )


def _check_api_name(name: str, *, key: str) -> None:
    if not API_NAME.fullmatch(name):
        raise ConfigurationError(f"{key}: {name!r} is not a GA4 API name ([A-Za-z][A-Za-z0-9_:]*)")


def _retry_after(exc: HttpError) -> float:
    """The seconds an answer's `Retry-After` header asks to wait (0 if none, or a date)."""
    try:
        return max(0.0, float(exc.resp.get("retry-after", 0)))
    except (TypeError, ValueError):
        return 0.0


def _api_message(exc: HttpError) -> str:
    """The `error.message` of the API's JSON error body, else the HTTP reason."""
    try:
        message = json.loads(exc.content)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = exc.resp.reason
    return str(message or "no message")[:500]
