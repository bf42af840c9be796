"""SAMPLE: a stand-in Prometheus server for the demo, serving made-up sample data.

The demo machine may have no Prometheus. This loopback HTTP server answers
`/api/v1/query_range` in Prometheus's JSON shape with deterministic SAMPLE series for the demo
queries in `SAMPLE_QUERIES` (requests per hour for jobs `api` and `web`, and the depth of two
queues), and an empty result for any other query, as Prometheus does for unknown metrics. Like
Prometheus it refuses more than 11,000 points per series. Nothing it serves is a measurement.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# The demo's `prometheus.queries` settings, answered with SAMPLE data.
SAMPLE_QUERIES = [
    {
        "query": "sum by (job) (increase(http_requests_total[1h]))",
        "metric": "http.requests.{job}",
        "aggregation": "sum",
        "unit": "requests",
        "description": "HTTP requests per hour by job (sample data in the demo).",
    },
    {
        "query": "max by (queue) (last_over_time(queue_depth[1h]))",
        "metric": "queue.depth.{queue}",
        "aggregation": "last",
        "unit": "jobs",
        "description": "Jobs waiting in each queue at the hour's end (sample data in the demo).",
    },
]
MAX_POINTS = 11_000


def _requests(base: int) -> Callable[[int], float]:
    """Requests in the hour ending at `t`: a daily cycle peaking mid-afternoon UTC."""
    return lambda t: float(
        round(base * (1 + math.sin(math.pi * ((t // 3600 - 9) % 24) / 12) / 2))
        + (t // 3600 * 37) % 50
    )


def _depth(offset: int) -> Callable[[int], float]:
    return lambda t: float((t // 3600 * 13 + offset) % 40)


# query -> label name -> {label value: value at evaluation time t}
SAMPLE_SERIES: dict[str, tuple[str, dict[str, Callable[[int], float]]]] = {
    SAMPLE_QUERIES[0]["query"]: ("job", {"api": _requests(1200), "web": _requests(800)}),
    SAMPLE_QUERIES[1]["query"]: ("queue", {"emails": _depth(5), "billing": _depth(17)}),
}


def sample_result(query: str, start: int, end: int, step: int, now: float) -> list[dict]:
    """The matrix Prometheus would return, with samples only for times already past."""
    label, series = SAMPLE_SERIES.get(query, ("", {}))
    times = range(start, min(end, int(now)) + 1, step)
    return [
        {"metric": {label: value}, "values": [[t, f"{fn(t):.15g}"] for t in times]}
        for value, fn in series.items()
        if times
    ]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self._answer(parse_qs(urlsplit(self.path).query))

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self._answer({**parse_qs(urlsplit(self.path).query), **parse_qs(body)})

    def _answer(self, params: dict[str, list[str]]):
        if urlsplit(self.path).path != "/api/v1/query_range":
            return self._send(
                404, {"status": "error", "errorType": "not_found", "error": "not found"}
            )
        try:
            query = params["query"][0]
            start, end, step = (int(float(params[name][0])) for name in ("start", "end", "step"))
        except (KeyError, ValueError):
            return self._send(
                400,
                {
                    "status": "error",
                    "errorType": "bad_data",
                    "error": "query, start, end and step are required numbers",
                },
            )
        if step <= 0 or end < start:
            return self._send(
                400,
                {
                    "status": "error",
                    "errorType": "bad_data",
                    "error": "end timestamp must not be before start time",
                },
            )
        if (end - start) / step > MAX_POINTS:
            return self._send(
                400,
                {
                    "status": "error",
                    "errorType": "bad_data",
                    "error": (
                        "exceeded maximum resolution of 11,000 points per timeseries. "
                        "Try decreasing the query resolution (?step=XX)"
                    ),
                },
            )
        result = sample_result(query, start, end, step, time.time())
        self._send(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})

    def _send(self, status: int, payload: dict):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # keep the demo's output quiet
        pass


def start_sample_server(port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve SAMPLE data on 127.0.0.1:`port` (0: any free port) from a daemon thread.

    Returns the base URL to put in METRICS_PLATFORM_PROMETHEUS_URL, and a function that stops it.
    """
    server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="prometheus-sample", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    return f"http://127.0.0.1:{server.server_address[1]}", stop
