"""Loopback peers that misbehave on purpose: a stand-in for Prometheus's HTTP API (the real
server, fed by `promtool`, is in `prometheus_server.py`), a hostile HTTP server for any client
(slow, oversized, echoing), and a proxy that counts the requests made to a real server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class LoopbackServer:
    """A threaded HTTP server on a free loopback port, serving `handler` while in a `with`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class PrometheusStub(LoopbackServer):
    """A loopback stand-in for Prometheus's `/api/v1/query_range`: by default a matrix with one
    series per job and a value for every evaluation time asked for; `reply(params)` may return
    (status, body) instead, `delay` holds every answer back."""

    def __init__(self):
        self.reply: Callable[[dict], tuple[int, object] | None] = lambda params: None
        self.delay = 0.0
        self.requests: list[dict] = []
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

        super().__init__(Handler)

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


class HostileServer(LoopbackServer):
    """A loopback HTTP server that misbehaves on purpose, for any client (Prometheus, GA4, the
    bounded transport itself). Every request is recorded (`requests`: method, path, headers,
    body) and answered by `answer(request)`, which returns (status, headers, body): `body` is
    bytes (sent with its Content-Length) or an iterable of chunks (sent as they come, without a
    length, the connection closed at the end). `trickle` seconds between the bytes of the body
    (a slowloris), `trickle_headers` seconds between the bytes of the status line and headers.
    """

    def __init__(self, answer: Callable[[dict], tuple[int, dict, object]]):
        self.answer = answer
        self.trickle = 0.0
        self.trickle_headers = 0.0
        self.requests: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                request = {
                    "method": self.command,
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "body": self.rfile.read(length) if length else b"",
                }
                server.requests.append(request)
                status, headers, body = server.answer(request)
                head = f"HTTP/1.1 {status} Hostile\r\n"
                headers = {"Content-Type": "application/json", **headers}
                if isinstance(body, bytes):
                    headers.setdefault("Content-Length", str(len(body)))
                headers["Connection"] = "close"
                head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
                try:
                    server._send(self.wfile, head.encode(), server.trickle_headers)
                    for chunk in [body] if isinstance(body, bytes) else body:
                        if server._stopping.is_set():
                            return
                        server._send(self.wfile, chunk, server.trickle)
                except OSError:
                    pass  # the client gave up, as it should
                self.close_connection = True

            do_GET = do_POST = _serve

            def log_message(self, *args):
                pass

        super().__init__(Handler)

    def _send(self, wfile, data: bytes, pause: float) -> None:
        if not pause:
            wfile.write(data)
            return
        for index in range(len(data)):
            if self._stopping.wait(pause):
                return
            wfile.write(data[index : index + 1])
            wfile.flush()


class RecordingProxy(LoopbackServer):
    """A loopback proxy in front of a real server: forwards every GET and counts them
    (`requests`: the paths asked for)."""

    def __init__(self, target: str):
        import urllib.request

        self.requests: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                proxy.requests.append(self.path)
                try:
                    with urllib.request.urlopen(target.rstrip("/") + self.path, timeout=60) as up:
                        status, body = up.status, up.read()
                except urllib.error.HTTPError as error:
                    status, body = error.code, error.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(Handler)
