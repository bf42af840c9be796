"""One redaction layer: the secrets in use, removed from every text the platform lets out.

The platform knows its secrets from their environment variables and from the resources that use
them:

- the password of every URL in the environment (`METRICS_PLATFORM_DATABASE_URL`,
  `METRICS_PLATFORM_PRODUCT_DATABASE_URL`, a source's `url_env`, a Prometheus URL with
  credentials...), as written and percent-decoded, and a `password=` URL parameter;
- the Prometheus bearer token (`METRICS_PLATFORM_PROMETHEUS_TOKEN`), the alert webhook URL
  (`METRICS_PLATFORM_ALERT_WEBHOOK_URL`, and its path, which is its token) and the Grafana
  reader's password (`METRICS_PLATFORM_GRAFANA_DB_PASSWORD`);
- the key material of the GA4 service-account file (`METRICS_PLATFORM_GA4_CREDENTIALS_FILE`):
  its private key, each line of it, and its key id;
- any value a resource registers when it uses it (`register`, `register_url`).

`redact(text)` replaces each of them with `***` wherever it appears, however it is written:
as is, percent-encoded (in either case, even twice), JSON- or repr-escaped (once or twice), or,
for passwords and tokens, inside base64 (as in a Basic `Authorization` header, which encodes
`user:password`; the lines of a PEM key, base64 already, are looked for as they are written). Secrets shorter than `MIN_SECRET_LENGTH` characters are not looked
for: they would blank out ordinary words.

It is applied where messages are born (a `MetricsPlatformError` redacts its own message, a
source's HTTP error body is redacted before it is quoted) and again where they leave: a source's
`dg.Failure` and its metadata, the alerts, and every record of the platform's loggers and of a
source step's Dagster log (`RedactingFilter`), which is what Dagster's event log and the
compute logs store.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote

REDACTED = "***"
MIN_SECRET_LENGTH = 4

TOKEN_ENVS = (
    "METRICS_PLATFORM_PROMETHEUS_TOKEN",
    "METRICS_PLATFORM_ALERT_WEBHOOK_URL",
    "METRICS_PLATFORM_GRAFANA_DB_PASSWORD",
)
GA4_CREDENTIALS_ENV = "METRICS_PLATFORM_GA4_CREDENTIALS_FILE"
# The fields of a service-account key file that are secret.
KEY_FILE_FIELDS = ("private_key", "private_key_id")

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_BASE64 = re.compile(r"[A-Za-z0-9+/=_-]+")
_registered: set[str] = set()
_lock = threading.Lock()


# --- Which secrets --------------------------------------------------------------------------------


def url_userinfo(url: str) -> str | None:
    """The user information of a URL (`user:password`) read leniently, so that a password
    holding `/`, `@`, `:` or `%` unencoded (a URL that does not parse) is still found: it runs
    from `//` to the last `@` (of the part before any `?`, when that part holds one)."""
    scheme = _URL.match(url.strip()) if isinstance(url, str) else None
    if not scheme:
        return None
    rest = url.strip()[scheme.end() :]
    head = rest.split("?", 1)[0] if "@" in rest.split("?", 1)[0] else rest
    return head[: head.rfind("@")] if "@" in head else None


def url_secrets(url: str) -> list[str]:
    """The secrets of a URL: its password as written and decoded, `user:password` (both ways),
    and any `password=` parameter."""
    if not isinstance(url, str):
        return []
    found: list[str] = []
    user, colon, password = (url_userinfo(url) or "").partition(":")
    if colon and password:
        found += [password, unquote(password), f"{user}:{password}"]
        found.append(f"{unquote(user)}:{unquote(password)}")
    for match in re.finditer(r"[?&](?:ssl)?password=([^&#]+)", url, re.IGNORECASE):
        found += [match.group(1), unquote(match.group(1))]
    return found


def key_file_secrets(path: str) -> list[str]:
    """The key material of a service-account key file (nothing if it cannot be read)."""
    try:
        return _key_file_secrets(path, Path(path).stat().st_mtime_ns)
    except OSError:
        return []


@lru_cache(maxsize=8)
def _key_file_secrets(path: str, _mtime: int) -> list[str]:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    found = []
    try:
        info = json.loads(text)
    except ValueError:
        info = None
    if isinstance(info, Mapping):
        for name in KEY_FILE_FIELDS:
            value = info.get(name)
            if isinstance(value, str):
                found.append(value)
    # Each line of a PEM body, whether or not the file parses as JSON.
    body = text.replace("\\n", "\n")
    for block in re.findall(r"-----BEGIN [A-Z ]+-----(.*?)-----END", body, re.S):
        found += [line.strip() for line in block.splitlines() if len(line.strip()) >= 16]
    return found


def environment_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """The secrets the environment holds (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    found: set[str] = set()
    for name, value in environ.items():
        if not value:
            continue
        if name in TOKEN_ENVS:
            found.add(value.strip())
            found.update(webhook_secrets(value.strip()))
        if "://" in value:
            found.update(url_secrets(value))
    if environ.get(GA4_CREDENTIALS_ENV):
        found.update(key_file_secrets(environ[GA4_CREDENTIALS_ENV]))
    return found


def webhook_secrets(url: str) -> list[str]:
    """The secret parts of a webhook URL: its path and query (`/services/T000/B000/XXXX`), its
    last path segment and its query values, which hold its token."""
    scheme = _URL.match(url)
    if not scheme or "/" not in url[scheme.end() :]:
        return []
    rest = url[scheme.end() :]
    path_and_query = rest[rest.index("/") :]
    path, _, query = path_and_query.partition("?")
    parts = [path_and_query, path.rstrip("/").rsplit("/", 1)[-1]]
    parts += [value for _, _, value in (item.partition("=") for item in query.split("&"))]
    return [part for part in parts if len(part) >= 8]


def register(*values: str | None) -> None:
    """Make `values` known secrets of this process (a token or password a resource uses)."""
    new = {v for v in values if isinstance(v, str) and v} - _registered
    if new:
        with _lock:
            _registered.update(new)


def register_url(url: str | None) -> None:
    """Make the password of `url` a known secret of this process."""
    if url:
        register(*url_secrets(url))


_known: tuple[object, int, frozenset[str]] = (None, -1, frozenset())


def _environment_key() -> tuple:
    """What the environment holds now, cheaply comparable with what it held before."""
    data = getattr(os.environ, "_data", None)  # CPython's dict behind os.environ
    return tuple(data.items()) if isinstance(data, dict) else tuple(os.environ.items())


def known_secrets() -> frozenset[str]:
    """Every secret known now: the environment's and the registered ones (recomputed only when
    either changed)."""
    global _known
    key, count = _environment_key(), len(_registered)
    cached_key, cached_count, secrets = _known
    if key != cached_key or count != cached_count:
        with _lock:
            registered = set(_registered)
        found = registered | environment_secrets()
        secrets = frozenset(s for s in found if len(s) >= MIN_SECRET_LENGTH)
        _known = (key, len(registered), secrets)
    return secrets


# --- How a secret may be written ----------------------------------------------------------------


def base64_cores(secret: str) -> list[str]:
    """Texts found in any base64 (standard or URL-safe) of a text that holds `secret`: the
    secret encoded at each of the three byte alignments, less the characters its neighbours
    change."""
    data = secret.encode("utf-8", "surrogatepass")
    cores = []
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode()
        start = (shift * 4 + 2) // 3  # characters that depend on the bytes before the secret
        end = (shift + len(data)) // 3 * 4  # the last group made of the secret's bytes only
        core = encoded[start:end]
        if len(core) >= 6:
            cores += [core, core.replace("+", "-").replace("/", "_")]
    return cores


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _escapings(text: str) -> set[str]:
    """`text` as JSON and repr write it inside a string, once and twice."""
    json_ascii = json.dumps(text)[1:-1]
    json_utf8 = json.dumps(text, ensure_ascii=False)[1:-1]
    python = repr(text)[1:-1]
    once = {json_ascii, json_utf8, json_ascii.replace("/", "\\/"), python}
    return once | {json.dumps(e)[1:-1] for e in once} | {repr(e)[1:-1] for e in once}


def variants(secret: str) -> set[str]:
    """The ways `secret` may be written in a text: as is, percent-encoded (any case, once or
    twice, `+` for spaces), JSON- or repr-escaped (once or twice, as text or as UTF-8 bytes),
    and inside base64."""
    percent = {
        quote(secret, safe=""),
        quote(secret, safe="/"),
        quote(secret, safe="/:@"),
        quote_plus(secret, safe=""),
        quote(quote(secret, safe=""), safe=""),
    }
    percent |= {_lower_hex(text) for text in percent}
    as_bytes = repr(secret.encode("utf-8", "surrogatepass"))[2:-1]
    written = {secret, as_bytes} | percent
    for text in list(written):
        written |= _escapings(text)
    # Credentials end up in base64 (Basic authentication); a key that is base64 already does not.
    if len(secret) < 40 or not _BASE64.fullmatch(secret):
        for core in base64_cores(secret):
            written |= {core, quote(core, safe="")}
    return {text for text in written if len(text) >= MIN_SECRET_LENGTH}


@lru_cache(maxsize=32)
def _variants(secrets: frozenset[str]) -> tuple[str, ...]:
    """Every written form of every secret, longest first (so that a longer form is replaced
    whole before a shorter one inside it)."""
    found = set()
    for secret in secrets:
        found |= variants(secret)
    return tuple(sorted(found, key=lambda text: (-len(text), text)))


# --- Redacting --------------------------------------------------------------------------------------


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """`text` with every known secret (and each of `extra`) replaced by `***`."""
    if not isinstance(text, str) or not text:
        return text
    secrets = known_secrets()
    more = {s for s in extra if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
    for written in _variants(secrets | more if more else secrets):
        if written in text:
            text = text.replace(written, REDACTED)
    return text


def contains_secret(text: str) -> bool:
    """Whether `text` holds a known secret, in any of the ways it may be written."""
    return isinstance(text, str) and any(w in text for w in _variants(known_secrets()))


def redact_value(value):
    """`value` with every string inside it redacted: str, bytes, mappings, sequences, named
    tuples and dataclasses, rebuilt only where something changed."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bytes):
        text = value.decode("utf-8", "surrogateescape")
        cleaned = redact(text)
        return value if cleaned == text else cleaned.encode("utf-8", "surrogateescape")
    if isinstance(value, Mapping):
        items = {redact_value(k): redact_value(v) for k, v in value.items()}
        return value if items == dict(value) else type(value)(items)
    if isinstance(value, tuple) and hasattr(value, "_replace"):
        changed = {f: redact_value(getattr(value, f)) for f in value._fields}
        if all(changed[f] is getattr(value, f) for f in value._fields):
            return value
        return value._replace(**changed)
    if isinstance(value, (list, tuple)):
        items = [redact_value(v) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        return type(value)(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: redact_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if all(fields[n] is getattr(value, n) for n in fields):
            return value
        return dataclasses.replace(value, **fields)
    return redact_dagster_value(value)


def redact_dagster_value(value):
    """A Dagster object (an event, an event log entry, a metadata value...) with every secret
    in it redacted; the same object when it holds none, or when Dagster cannot serialize it.
    Goes through Dagster's serialization, so that every field is reached."""
    from dagster._serdes import deserialize_value, serialize_value

    if value is None or isinstance(value, (int, float, bool)) or not known_secrets():
        return value
    try:
        text = serialize_value(value)
    except Exception:  # not a Dagster object
        return value
    if not contains_secret(text):
        return value
    return deserialize_value(redact(text), type(value))


class RedactingFilter(logging.Filter):
    """Redacts a log record in place: its message, arguments, exception text and the Dagster
    event it carries, if any. Never drops a record."""

    # The attribute of a record that holds the Dagster event it logs (dagster's log manager).
    EVENT_ATTRIBUTES = ("dagster_event",)

    def filter(self, record: logging.LogRecord) -> bool:
        if not known_secrets():
            return True
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not fit its format: leave it as it is
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, ()
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            if contains_secret(text):
                record.exc_info, record.exc_text = None, redact(text)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        for attribute in self.EVENT_ATTRIBUTES:
            event = record.__dict__.get(attribute)
            if event is not None:
                record.__dict__[attribute] = redact_dagster_value(event)
        return True


REDACTING_FILTER = RedactingFilter()


def add_redacting_filter(logger: logging.Logger) -> logging.Logger:
    """`logger`, with the redacting filter on it (once)."""
    if REDACTING_FILTER not in logger.filters:
        logger.addFilter(REDACTING_FILTER)
    return logger


def platform_logger(name: str = "metrics_platform") -> logging.Logger:
    """The platform's logger (captured by Dagster in a run), whose records are redacted."""
    from dagster import get_dagster_logger

    return add_redacting_filter(get_dagster_logger(name))
