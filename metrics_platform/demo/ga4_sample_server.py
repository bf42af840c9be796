"""SAMPLE data, not real analytics: a loopback stand-in for the GA4 Data API's `runReport`.

The server answers `POST /v1beta/properties/{id}:runReport` in the API's JSON shape
(dimensionHeaders, typed metricHeaders, rows of string values, rowCount, metadata.timeZone), for
a made-up property in `time_zone` (Europe/Paris unless told). Its numbers of `sessions`,
`newUsers` and `activeUsers` are invented: a deterministic daily curve (`sample_values`), quiet
at night, busiest in the Paris afternoon. Like GA4 it reports local `dateHour`s, combines the
repeated hour of the autumn change into one row, honors offset/limit paging and leaves out empty
rows. By local `date`, a day's `sessions` and `newUsers` are its hours' sums, and its
`activeUsers` are distinct users, not a sum (`daily_values`).

The demo points METRICS_PLATFORM_GA4_ENDPOINT at it; tests script its answers (`Reply`): an error
status, a body that is not JSON, a page cut short, a slow answer. `POST /token` plays Google's
OAuth token endpoint for a service-account key whose `token_uri` points here.

    python -m metrics_platform.demo.ga4_sample_server --port 8642
"""

from __future__ import annotations

import argparse
import json
import math
import re
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

SAMPLE_TIME_ZONE = "Europe/Paris"
SAMPLE_METRICS = ("sessions", "newUsers", "activeUsers")
# The time dimensions it reports by, and the format of their values.
PERIODS = {"dateHour": "%Y%m%d%H", "date": "%Y%m%d"}
_REPORT_PATH = re.compile(r"/v1beta/properties/(\d+):runReport")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
ONE_HOUR = timedelta(hours=1)


def sample_values(hour: datetime) -> dict[str, int]:
    """The SAMPLE numbers of one UTC hour, by GA4 metric."""
    local = hour.astimezone(ZoneInfo(SAMPLE_TIME_ZONE))
    daily_curve = (1 - math.cos(2 * math.pi * (local.hour - 4) / 24)) / 2  # 0 at 4:00, 1 at 16:00
    jitter = (hour.toordinal() * 7 + hour.hour * 13) % 17
    sessions = 20 + round(180 * daily_curve) + jitter
    return {"sessions": sessions, "newUsers": sessions * 3 // 10, "activeUsers": sessions * 4 // 5}


def _sums(hourly: Sequence[Mapping[str, int]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for values in hourly:
        for name, value in values.items():
            totals[name] = totals.get(name, 0) + value
    return totals


def daily_values(hourly: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """The SAMPLE numbers of one local day from those of its hours, by GA4 metric.

    Sessions and new users add up. Active users are distinct: a user active in several hours
    counts once, so the day has 3.5 times its busiest hour's, and never more than the hours' sum.
    """
    day = _sums(hourly)
    if "activeUsers" in day:
        busiest = max(values.get("activeUsers", 0) for values in hourly)
        day["activeUsers"] = min(day["activeUsers"], round(busiest * 3.5))
    return day


@dataclass(frozen=True)
class Reply:
    """One scripted answer. By default, the sample report of the request.

    `body` replaces it (a dict is sent as JSON, bytes as they are); `edit` changes it; `delay`
    holds the answer back that many seconds; `headers` are sent with it (`Retry-After`...).
    """

    status: int = 200
    body: dict | bytes | None = None
    edit: Callable[[dict], dict] | None = None
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)


def api_error(status: int, message: str) -> Reply:
    """An error in the API's JSON shape."""
    return Reply(
        status,
        {
            "error": {
                "code": status,
                "message": message,
                "status": _STATUS_NAMES.get(status, "UNKNOWN"),
            }
        },
    )


class _ReportError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.reply = api_error(status, message)


class SampleGA4Server:
    """The loopback server. `script` answers requests in order, then `fallback` answers all.

    `time_zone` is the property's: its `dateHour`s and `date`s are local to it."""

    def __init__(
        self,
        *,
        port: int = 0,
        now: Callable[[], datetime] | None = None,
        time_zone: str = SAMPLE_TIME_ZONE,
    ):
        self.time_zone = ZoneInfo(time_zone).key  # an unknown zone fails here
        self.script: deque[Reply] = deque()
        self.fallback = Reply()
        self.token_reply = Reply(
            body={"access_token": "sample-token", "expires_in": 3600, "token_type": "Bearer"}
        )
        self.requests: list[dict] = []
        self.authorizations: list[str | None] = []
        self.now = now or (lambda: datetime.now(timezone.utc))
        # The numbers of each hour; replace it to have the server revise past hours as GA4 does.
        self.values: Callable[[datetime], dict[str, int]] = sample_values
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, daemon=True, name="ga4-sample-server"
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> SampleGA4Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> SampleGA4Server:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def report(self, request: dict) -> dict:
        """The sample `runReport` response to a request body."""
        try:
            (dates,) = request.get("dateRanges") or [None]
            first, last = (
                date.fromisoformat(dates["startDate"]),
                date.fromisoformat(dates["endDate"]),
            )
        except (TypeError, KeyError, ValueError):
            raise _ReportError(400, "dateRanges must hold one range of YYYY-MM-DD dates") from None
        dimensions = [d.get("name") for d in request.get("dimensions") or []]
        metrics = [m.get("name") for m in request.get("metrics") or []]
        for name in dimensions:
            if name not in PERIODS:
                raise _ReportError(400, f"Field {name} is not a valid dimension.")
        if len(set(dimensions)) > 1:
            raise _ReportError(400, "The sample server reports by dateHour or by date, not both.")
        by_date = "date" in dimensions
        for name in metrics:
            if name not in SAMPLE_METRICS:
                raise _ReportError(400, f"Field {name} is not a valid metric.")
        try:
            offset, limit = int(request.get("offset") or 0), int(request.get("limit") or 10_000)
        except (TypeError, ValueError):
            raise _ReportError(400, "offset and limit must be integers") from None

        zone = ZoneInfo(self.time_zone)
        hour = datetime.combine(first, datetime.min.time(), zone).astimezone(timezone.utc)
        until = min(
            datetime.combine(last + timedelta(days=1), datetime.min.time(), zone),
            self.now().replace(minute=0, second=0, microsecond=0),
        )
        hours_by_key: dict[str, list[dict[str, int]]] = {}
        key_format = PERIODS["date" if by_date else "dateHour"]
        while hour < until:  # only closed hours have data
            key = hour.astimezone(zone).strftime(key_format)
            hours_by_key.setdefault(key, []).append(self.values(hour))
            hour += ONE_HOUR
        rows = []
        for key, hourly in sorted(hours_by_key.items()):
            # The two passes of a repeated autumn hour add up; a date's hours too, not its users.
            totals = daily_values(hourly) if by_date else _sums(hourly)
            values = [totals[name] for name in metrics]
            if any(values):
                rows.append(
                    {
                        "dimensionValues": [{"value": key}] * len(dimensions),
                        "metricValues": [{"value": str(v)} for v in values],
                    }
                )
        page = {
            "dimensionHeaders": [{"name": name} for name in dimensions],
            "metricHeaders": [{"name": name, "type": "TYPE_INTEGER"} for name in metrics],
            "rows": rows[offset : offset + limit],
            "rowCount": len(rows),
            "metadata": {"currencyCode": "EUR", "timeZone": self.time_zone},
            "kind": "analyticsData#runReport",
        }
        # Like the API, zero-valued fields are left out.
        return {key: value for key, value in page.items() if value}

    def _answer(self, path: str, body: bytes, authorization: str | None) -> tuple[Reply, bytes]:
        if urlsplit(path).path == "/token":
            return self.token_reply, json.dumps(self.token_reply.body).encode()
        with self._lock:
            reply = self.script.popleft() if self.script else self.fallback
            self.authorizations.append(authorization)
        if reply.delay:
            self._stopping.wait(reply.delay)
        try:
            if not _REPORT_PATH.fullmatch(urlsplit(path).path):
                raise _ReportError(404, f"No such method: {urlsplit(path).path}")
            try:
                request = json.loads(body)
            except ValueError:
                raise _ReportError(400, "Invalid JSON payload received.") from None
            with self._lock:
                self.requests.append(request)
            if isinstance(reply.body, bytes):
                return reply, reply.body
            payload = reply.body if reply.body is not None else self.report(request)
        except _ReportError as exc:
            reply, payload = exc.reply, exc.reply.body
        except (AttributeError, TypeError, ValueError) as exc:
            reply = api_error(400, f"Invalid request: {exc}")
            payload = reply.body
        if reply.edit:
            payload = reply.edit(payload)
        return reply, json.dumps(payload).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                reply, answer = server._answer(self.path, body, self.headers.get("Authorization"))
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json; charset=UTF-8")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, format, *args):
                pass

        return Handler


def start_sample_server(
    port: int = 0, time_zone: str = SAMPLE_TIME_ZONE
) -> tuple[str, Callable[[], None]]:
    """Serve SAMPLE GA4 reports of a property in `time_zone` on 127.0.0.1 in a daemon thread;
    returns (API root URL, stop)."""
    server = SampleGA4Server(port=port, time_zone=time_zone).start()
    return server.url, server.stop


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve SAMPLE GA4 Data API reports on loopback.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--time-zone", default=SAMPLE_TIME_ZONE, help="the property's time zone")
    args = parser.parse_args()
    url, stop = start_sample_server(args.port, args.time_zone)
    print(f"METRICS_PLATFORM_GA4_ENDPOINT={url}  (SAMPLE data; Ctrl-C stops)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stop()


if __name__ == "__main__":
    main()
