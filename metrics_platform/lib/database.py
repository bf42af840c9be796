"""Where the metric store lives, and how the platform connects to it.

One setting, `METRICS_PLATFORM_DATABASE_URL`, names the Postgres database that holds both the
metric store and Dagster's own storage. It is written the way SQLAlchemy and Dagster's
`dagster.yaml` read it, `postgresql+psycopg2://user:password@host:port/dbname`; a plain
`postgresql://` URL is accepted too and normalized. Connections always run in UTC.

A user or password holding `%`, `/`, `@`, `?` or `#` must be percent-encoded (`%25`, `%2F`,
`%40`, `%3F`, `%23`); a URL that does not parse is refused with an error that names the setting
and says what to encode, never the password. Every URL's password is a known secret of the
redaction layer (`metrics_platform.lib.redaction`) from the moment it is read.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import psycopg2.extensions

from metrics_platform.lib import redaction
from metrics_platform.lib.errors import (
    ConfigurationError,
    DatabaseUnavailableError,
    MetricsPlatformError,
    SourceError,
)

DATABASE_URL_ENV = "METRICS_PLATFORM_DATABASE_URL"
PRODUCT_DATABASE_URL_ENV = "METRICS_PLATFORM_PRODUCT_DATABASE_URL"

_SCHEMES = ("postgresql+psycopg2", "postgresql", "postgres")


class TextBlocks(io.TextIOBase):
    """A file of the text `blocks` yields, read a block at a time as `COPY ... FROM STDIN`
    asks for it, so that the whole text is never held at once."""

    def __init__(self, blocks: Iterator[str]):
        self._blocks = blocks
        self._block = ""
        self._position = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        if size is None or size < 0:
            rest = [self._block[self._position :], *self._blocks]
            self._block, self._position = "", 0
            return "".join(rest)
        while self._position >= len(self._block):
            block = next(self._blocks, None)
            if block is None:
                return ""
            self._block, self._position = block, 0
        out = self._block[self._position : self._position + size]
        self._position += len(out)
        return out


def database_url_from_env(env: str = DATABASE_URL_ENV) -> str:
    """The configured URL, or a `ConfigurationError` that says how to configure it."""
    url = os.environ.get(env, "").strip()
    if not url:
        raise ConfigurationError(
            f"{env} is not set: run `metrics-platform demo` for the embedded database, "
            "or set it to postgresql+psycopg2://user:password@host:port/dbname"
        )
    return url


_ENCODE = "percent-encode '%' as %25, '/' as %2F, '@' as %40, '?' as %3F and '#' as %23"


def _split(url: str, *, key: str):
    redaction.register_url(url)
    userinfo = redaction.url_userinfo(url)
    try:
        parts = urlsplit(url)
        netloc_userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else None
        if userinfo is not None and (userinfo != netloc_userinfo or "@" in userinfo):
            raise ValueError("the user information holds a character that breaks the URL")
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise ConfigurationError(
            f"{key}: the URL does not parse: its user, password, host or port holds a character "
            f"that must be percent-encoded ({_ENCODE})"
        ) from None
    if userinfo is not None and re.search(r"%(?![0-9A-Fa-f]{2})", userinfo):
        raise ConfigurationError(
            f"{key}: the URL does not parse: its user or password holds a '%' that does not "
            f"start a percent-encoded character ({_ENCODE})"
        )
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"{key}: unsupported scheme {parts.scheme!r}; use postgresql+psycopg2://"
        )
    return parts


def sqlalchemy_url(url: str, *, key: str = DATABASE_URL_ENV) -> str:
    """The URL with the psycopg2 driver named, as Dagster's Postgres storage needs it."""
    parts = _split(url, key=key)
    return urlunsplit(parts._replace(scheme="postgresql+psycopg2"))


def libpq_url(url: str, *, key: str = DATABASE_URL_ENV) -> str:
    """The URL in the form libpq (and so psycopg2.connect) understands."""
    parts = _split(url, key=key)
    return urlunsplit(parts._replace(scheme="postgresql"))


def redact(url: str) -> str:
    """The URL with its password replaced, safe for logs, errors and metadata (even a URL that
    does not parse: its user information is read leniently)."""
    redaction.register_url(url)
    userinfo = redaction.url_userinfo(url)
    if userinfo is not None and ":" in userinfo:
        user = userinfo.partition(":")[0]
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://{user}:***" + rest[len(userinfo) :]
    url = re.sub(r"((?:[?&])(?:ssl)?password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)
    return redaction.redact(url)


def connect(
    url: str, *, application_name: str = "metrics_platform", key: str = DATABASE_URL_ENV
) -> psycopg2.extensions.connection:
    """A new psycopg2 connection in UTC; connection errors never carry the password."""
    try:
        return psycopg2.connect(
            libpq_url(url, key=key),
            application_name=application_name,
            options="-c TimeZone=UTC",
            connect_timeout=10,
        )
    except psycopg2.OperationalError as exc:
        # libpq's message can echo connection parameters; keep only its first line.
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnavailableError(
            f"{key}: cannot connect to {redact(url)}: {redaction.redact(reason)}"
        ) from None
    except psycopg2.ProgrammingError:  # libpq refused the URL itself (`invalid dsn`)
        raise ConfigurationError(f"{key}: libpq cannot read the URL {redact(url)}") from None


@contextmanager
def source_cursor(
    url: str, *, source: str, key: str, doing: str = "reading"
) -> Iterator[psycopg2.extensions.cursor]:
    """A cursor on a source's database, read-only, in one transaction, closed afterwards.

    Errors become `SourceError`s naming the source and what it was `doing`: a database that
    cannot be reached or drops the connection is transient (worth a retry), a failing query is
    not.
    """
    try:
        conn = connect(url, application_name=f"metrics_platform {source}", key=key)
    except ConfigurationError as exc:
        raise SourceError(source, str(exc)) from None
    except MetricsPlatformError as exc:
        raise SourceError(source, str(exc), transient=True) from None
    try:
        conn.set_session(readonly=True)
        with conn, conn.cursor() as cur:
            yield cur
    except psycopg2.Error as exc:
        message = (exc.pgerror or str(exc)).strip().splitlines()[0]
        raise SourceError(
            source, f"{doing}: {message}", transient=isinstance(exc, psycopg2.OperationalError)
        ) from None
    finally:
        conn.close()
