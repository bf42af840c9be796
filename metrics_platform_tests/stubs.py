"""A loopback stand-in for Prometheus's HTTP API, for tests that need it to misbehave (the real
server, fed by `promtool`, is in `prometheus_server.py`)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class PrometheusStub:
    """A loopback stand-in for Prometheus's `/api/v1/query_range`: by default a matrix with one
    series per job and a value for every evaluation time asked for; `reply(params)` may return
    (status, body) instead, `delay` holds every answer back."""

    def __init__(self):
        self.reply: Callable[[dict], tuple[int, object] | None] = lambda params: None
        self.delay = 0.0
        self.requests: list[dict] = []
        self._stopping = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                params = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                stub.requests.append({**params, "authorization": self.headers["Authorization"]})
                if stub.delay:
                    stub._stopping.wait(stub.delay)
                status, body = stub.reply(params) or (200, stub.matrix(params))
                answer = body if isinstance(body, bytes) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the client gave up waiting

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @staticmethod
    def matrix(params: dict, value: Callable[[int], str] = lambda at: str(at // 3600 % 97)):
        times = range(int(params["start"]), int(params["end"]) + 1, int(params["step"]))
        return {
            "status": "success",
            "data": {
                "resultType": "matrix",
                "result": [
                    {"metric": {"job": job}, "values": [[at, value(at)] for at in times]}
                    for job in ("api", "web")
                ],
            },
        }

    def __enter__(self) -> PrometheusStub:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
