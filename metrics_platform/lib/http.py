"""HTTP requests with bounds: a deadline for the whole request, a cap on the answer's size.

A socket timeout bounds each read, not the request: a server that sends one byte every few
seconds never trips it, and one that sends a huge answer is read whole. `request` bounds both:

- `timeout`: seconds to connect, and to wait for each read (no byte for that long fails);
- `deadline`: seconds for the whole request, from connecting to the last byte of the answer.
  A watchdog shuts the socket down when it passes, whatever phase the request is in (a server
  that sends its headers or its body byte by byte is cut off just the same);
- `max_bytes`: the largest answer read. A `Content-Length` above it fails before any of the
  body is read; a body without one is read in chunks and fails as soon as it exceeds it, so
  memory stays bounded by `max_bytes` whatever the server sends.

Failures raise `HttpFailure`, whose `kind` says what happened and `transient` whether asking
again may help (a refused connection, a timeout or a deadline may be passing; an oversized
answer is not). Messages never hold the URL: the caller names the server. Credentials in the
URL (`http://user:password@host`) are sent as Basic authentication and are known secrets of the
redaction layer.

`BoundedHttp` is the same transport behind the interface of `httplib2.Http`, for the Google API
client and google-auth.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

from metrics_platform.lib import redaction

CHUNK_BYTES = 64 * 1024
MiB = 1024 * 1024


@dataclass(frozen=True)
class HttpAnswer:
    """A complete answer: status, reason, headers (names in lower case) and body."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class HttpFailure(Exception):
    """No usable answer: `kind` is `connect`, `timeout`, `deadline`, `too_large`, `protocol`
    or `url`; `transient` says whether asking again may help; `error` names the exception
    behind it, if any (`ConnectionRefusedError`, `TimeoutError`...)."""

    TRANSIENT = frozenset({"connect", "timeout", "deadline", "protocol"})

    def __init__(self, kind: str, message: str, error: BaseException | None = None):
        super().__init__(redaction.redact(message))
        self.kind = kind
        self.transient = kind in self.TRANSIENT
        self.error = type(error).__name__ if error is not None else None


class _Watchdog:
    """Shuts a connection's socket down once the deadline has passed."""

    def __init__(self, conn: http.client.HTTPConnection, deadline: float):
        self.conn = conn
        self.expires = time.monotonic() + deadline
        self.fired = threading.Event()
        self._timer = threading.Timer(deadline, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return self.expires - time.monotonic()

    def _fire(self) -> None:
        self.fired.set()
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def request(
    method: str,
    url: str,
    *,
    params: Mapping[str, object] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | None = None,
    timeout: float,
    deadline: float,
    max_bytes: int,
) -> HttpAnswer:
    """One HTTP request, bounded in time (`timeout` per read, `deadline` in all) and in the
    size of its answer (`max_bytes`); see the module's docstring."""
    redaction.register_url(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise HttpFailure("url", "the URL does not parse") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpFailure("url", f"not an http(s) URL (scheme {parts.scheme!r})")
    query = parts.query
    if params:
        query = "&".join(filter(None, [query, urlencode(params, doseq=True)]))
    target = urlunsplit(("", "", parts.path or "/", query, ""))
    sent = {name: value for name, value in (headers or {}).items()}
    if parts.username is not None and not any(n.lower() == "authorization" for n in sent):
        user_password = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        basic = base64.b64encode(user_password.encode()).decode()
        redaction.register(user_password, basic)
        sent["Authorization"] = f"Basic {basic}"
    if isinstance(body, str):
        body = body.encode("utf-8")

    per_read = min(timeout, deadline)
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.hostname, port, timeout=per_read, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, port, timeout=per_read)
    watchdog = _Watchdog(conn, deadline)
    received = 0
    try:
        try:
            conn.connect()
        except OSError as exc:
            if watchdog.fired.is_set():
                raise _deadline(deadline, received) from None
            if isinstance(exc, TimeoutError):
                raise HttpFailure(
                    "timeout", f"no connection within {per_read:g} s (TimeoutError)", exc
                ) from None
            raise HttpFailure("connect", f"cannot connect ({type(exc).__name__})", exc) from None
        try:
            _bound_next_read(conn, watchdog, timeout, deadline, received)
            conn.request(method, target, body=body, headers=sent)
            response = conn.getresponse()
            length = response.getheader("Content-Length")
            if length and length.strip().isdigit() and int(length) > max_bytes:
                raise _too_large(max_bytes, f"it announces {int(length)} bytes")
            buffer = bytearray()
            while True:
                _bound_next_read(conn, watchdog, timeout, deadline, received)
                chunk = response.read1(CHUNK_BYTES)
                if not chunk:
                    break
                received += len(chunk)
                if received > max_bytes:
                    raise _too_large(max_bytes, f"{received} bytes read so far")
                buffer += chunk
            return HttpAnswer(
                status=response.status,
                reason=response.reason or "",
                headers={name.lower(): value for name, value in response.getheaders()},
                body=bytes(buffer),
            )
        except HttpFailure:
            raise
        except (OSError, http.client.HTTPException) as exc:
            if watchdog.fired.is_set() or watchdog.remaining() <= 0:
                raise _deadline(deadline, received) from None
            if isinstance(exc, TimeoutError):
                raise HttpFailure(
                    "timeout", f"no answer within {timeout:g} s (TimeoutError)", exc
                ) from None
            raise HttpFailure(
                "protocol", f"the connection failed mid-answer ({type(exc).__name__})", exc
            ) from None
    finally:
        watchdog.cancel()
        conn.close()


def _bound_next_read(conn, watchdog: _Watchdog, timeout: float, deadline: float, received: int):
    """Give the next read at most `timeout`, and no more than what is left of the deadline."""
    remaining = watchdog.remaining()
    if remaining <= 0 or watchdog.fired.is_set():
        raise _deadline(deadline, received)
    if conn.sock is not None:
        conn.sock.settimeout(min(timeout, remaining))


def _deadline(deadline: float, received: int) -> HttpFailure:
    return HttpFailure(
        "deadline",
        f"no complete answer within the {deadline:g} s deadline ({received} bytes received)",
    )


def _too_large(max_bytes: int, detail: str) -> HttpFailure:
    return HttpFailure(
        "too_large", f"the answer is larger than the limit of {max_bytes} bytes ({detail})"
    )


class BoundedHttp:
    """`request` behind the interface of `httplib2.Http` (what googleapiclient and google-auth
    call): `request(uri, method, body, headers)` -> (`httplib2.Response`, content)."""

    def __init__(self, *, timeout: float, deadline: float, max_bytes: int):
        self.timeout = timeout
        self.deadline = deadline
        self.max_bytes = max_bytes

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        redirections: int = 0,
        connection_type: object = None,
    ):
        import httplib2

        answer = request(
            method,
            uri,
            headers=headers,
            body=body,
            timeout=self.timeout,
            deadline=self.deadline,
            max_bytes=self.max_bytes,
        )
        response = httplib2.Response({**answer.headers, "status": str(answer.status)})
        response.reason = answer.reason
        return response, answer.body

    def close(self) -> None:
        """Nothing to close: every request has its own connection."""
