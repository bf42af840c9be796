"""The redaction layer, on its own: it knows every kind of secret the platform uses (from the
environment and from the resources that use them) and removes each wherever it appears,
whatever the encoding; database URLs that do not parse fail without their password; the
logging filter redacts records and the Dagster events they carry. (A real run scanned for
secrets is in test_security.py.)"""

from __future__ import annotations

import base64
import json
import logging
import re
import uuid
from urllib.parse import quote, quote_plus

import dagster as dg
import pytest
from dagster._core.events import EngineEventData
from hypothesis import given
from hypothesis import strategies as st

from metrics_platform.lib import redaction
from metrics_platform.lib.database import (
    DATABASE_URL_ENV,
    PRODUCT_DATABASE_URL_ENV,
    connect,
    libpq_url,
    redact,
)
from metrics_platform.lib.embedded_postgres import free_port
from metrics_platform.lib.errors import ConfigurationError, MetricsPlatformError, SourceError

# A password with every character that breaks a URL, and more.
HOSTILE_PASSWORD = "p%zz/@:x?#&=+ \"'\\é-"


def encodings(secret: str, user: str = "reader") -> dict[str, str]:
    """The ways a secret is written in errors and logs, computed here independently."""
    basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
    return {
        "raw": secret,
        "percent-encoded": quote(secret, safe=""),
        "percent-encoded, lower case": re.sub(
            "%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(secret, safe="")
        ),
        "form-encoded": quote_plus(secret),
        "percent-encoded twice": quote(quote(secret, safe=""), safe=""),
        "JSON-escaped": json.dumps(secret)[1:-1],
        "JSON-escaped twice": json.dumps(json.dumps(secret))[1:-1],
        "repr-escaped": repr(secret)[1:-1],
        "repr of bytes": repr(secret.encode())[2:-1],
        "Basic auth": f"Authorization: Basic {basic}",
        "base64 inside a blob": base64.b64encode(f"xy{secret}z".encode()).decode(),
        "base64url": base64.urlsafe_b64encode(f"q{secret}".encode()).decode(),
    }


BASE64_FORMS = ("Basic auth", "base64 inside a blob", "base64url")


def is_key_line(secret: str) -> bool:
    """A line of a PEM key: base64 itself, looked for as written, not inside more base64."""
    return len(secret) >= 40 and re.fullmatch(r"[A-Za-z0-9+/=]+", secret) is not None


def leaked(secret: str, text: str) -> list[str]:
    """The encodings of `secret` (its base64 core, for the base64 ones) found in `text`."""
    found = []
    for name, written in encodings(secret).items():
        if name in BASE64_FORMS and is_key_line(secret):
            continue
        if name in BASE64_FORMS:
            cores = redaction.base64_cores(secret)
            if any(core in text for core in cores):
                found.append(name)
        elif written in text:
            found.append(name)
    return found


def key_file(tmp_path) -> tuple[str, list[str]]:
    from metrics_platform_tests.test_security import service_account_key

    path = tmp_path / "ga4-key.json"
    pem = service_account_key(path, "http://127.0.0.1:9/token")
    lines = pem.strip().splitlines()[1:-1]
    return str(path), [json.loads(path.read_text())["private_key_id"], *lines]


def secret_kinds(tmp_path, monkeypatch) -> dict[str, str]:
    """One secret of each kind, set in the environment as the platform reads them."""
    tag = uuid.uuid4().hex[:12]
    password = f"{HOSTILE_PASSWORD}{tag}"
    token = f"tok-{tag}"
    webhook = f"https://hooks.example.invalid/services/T000/B000/hook{tag}"
    path, key_lines = key_file(tmp_path)
    env = {
        DATABASE_URL_ENV: f"postgresql+psycopg2://writer:{quote(password, safe='')}@db:5432/m",
        PRODUCT_DATABASE_URL_ENV: f"postgresql://reader:{password}x@db:5432/product",
        "EVENTS_DATABASE_URL": f"postgresql://events:ev-{tag}@db/events",  # a source's url_env
        "METRICS_PLATFORM_PROMETHEUS_TOKEN": token,
        "METRICS_PLATFORM_GA4_CREDENTIALS_FILE": path,
        "METRICS_PLATFORM_ALERT_WEBHOOK_URL": webhook,
        "METRICS_PLATFORM_GRAFANA_DB_PASSWORD": f"graf-{tag}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return {
        "store password (percent-encoded in its URL)": password,
        "product password (raw in a URL that does not parse)": password + "x",
        "url_env password": f"ev-{tag}",
        "Prometheus token": token,
        "webhook URL": webhook,
        "webhook token": f"hook{tag}",
        "Grafana password": f"graf-{tag}",
        "GA4 key id": key_lines[0],
        **{f"GA4 private key line {i}": line for i, line in enumerate(key_lines[1:])},
    }


def test_every_secret_kind_is_removed_in_every_encoding(tmp_path, monkeypatch):
    secrets = secret_kinds(tmp_path, monkeypatch)
    for kind, secret in secrets.items():
        for name, written in encodings(secret).items():
            text = f"HTTP 401: 'bad credentials ({written})' and again:{written}."
            cleaned = redaction.redact(text)
            assert leaked(secret, cleaned) == [], (kind, name, cleaned)
            assert "HTTP 401: 'bad credentials (" in cleaned


def test_the_errors_of_the_platform_are_redacted_when_they_are_made(tmp_path, monkeypatch):
    secrets = secret_kinds(tmp_path, monkeypatch)
    echoed = " ".join(w for s in secrets.values() for w in encodings(s).values())
    errors = [SourceError("prometheus", f"HTTP 401: {echoed!r}"), ConfigurationError(echoed)]
    for error in errors:
        for secret in secrets.values():
            assert leaked(secret, str(error) + repr(error)) == []
    assert errors[0].cause.startswith("HTTP 401: ")


def test_a_secret_used_by_a_resource_but_not_in_the_environment_is_known_once_registered():
    secret = f"only-in-a-resource-{uuid.uuid4().hex}"
    assert redaction.redact(f"x {secret} y") == f"x {secret} y"
    redaction.register(secret)
    assert redaction.redact(f"x {secret} y") == "x *** y"


def test_short_secrets_and_ordinary_text_are_left_alone(monkeypatch):
    monkeypatch.setenv("METRICS_PLATFORM_PROMETHEUS_TOKEN", "abc")
    assert redaction.redact("abc def") == "abc def"
    text = "source 'prometheus': HTTP 503 from the server (attempts: 3)"
    assert redaction.redact(text) == text


@given(
    secret=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="*"),
        min_size=redaction.MIN_SECRET_LENGTH,
        max_size=24,
    ),
    before=st.text(max_size=8),
    after=st.text(max_size=8),
)
def test_any_secret_is_removed_from_any_text_in_every_encoding(secret, before, after):
    for name, written in encodings(secret).items():
        cleaned = redaction.redact(f"{before}{written}{after}", extra=[secret])
        assert secret not in cleaned.replace(before, "", 1) or secret in before + after, name
        if name not in ("Basic auth", "base64 inside a blob", "base64url"):
            assert written not in cleaned or written in before + after, name


@given(prefix=st.binary(max_size=5), suffix=st.binary(max_size=5))
def test_a_secret_inside_any_base64_is_removed(prefix, suffix):
    secret = "tok-" + "5f3a" * 4
    blob = base64.b64encode(prefix + secret.encode() + suffix).decode()
    assert not any(
        core in redaction.redact(blob, extra=[secret]) for core in redaction.base64_cores(secret)
    )


def test_the_password_of_any_url_in_the_environment_is_a_secret(monkeypatch):
    monkeypatch.setenv("SOME_SOURCE_URL", "postgresql://u:Zq9-secret@h/db")
    monkeypatch.setenv("ANOTHER", "https://api:K3y-v4lue@proxy.example:8443/x?password=Pw-param")
    text = redaction.redact("Zq9-secret K3y-v4lue Pw-param")
    assert text == "*** *** ***"


# --- Database URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password", ["p%zz/@:x", "p/ss", "p@ss", "p%zzss", "p?ss#x", "p%2/"], ids=repr
)
def test_a_database_url_that_does_not_parse_fails_clearly_without_its_password(password):
    secret = f"{password}-{uuid.uuid4().hex[:8]}"
    url = f"postgresql+psycopg2://writer:{secret}@127.0.0.1:{free_port()}/store"
    for call in (lambda: connect(url), lambda: libpq_url(url)):
        with pytest.raises(ConfigurationError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith(f"{DATABASE_URL_ENV}: the URL does not parse"), message
        assert "percent-encode" in message
        # Not the password, nor any piece of it after a character that breaks the URL.
        for piece in {secret, *secret.replace("@", "/").split("/")[1:]} - {""}:
            assert piece not in message, (piece, message)
    assert redact(url) == f"postgresql+psycopg2://writer:***@127.0.0.1:{url.split(':')[-1]}"


def test_a_percent_encoded_hostile_password_connects_and_fails_without_it(postgres_server):
    """The same password, percent-encoded: libpq reads it; a refused login does not show it."""
    secret = f"{HOSTILE_PASSWORD}{uuid.uuid4().hex[:8]}"
    url = f"postgresql://nobody_{uuid.uuid4().hex[:6]}:{quote(secret, safe='')}@127.0.0.1:"
    url += f"{postgres_server.port}/postgres"
    with pytest.raises(MetricsPlatformError) as caught:
        connect(url)
    text = str(caught.value)
    assert "cannot connect to" in text and leaked(secret, text) == [], text
    assert f":***@127.0.0.1:{postgres_server.port}" in text


# --- The logging filter ------------------------------------------------------------------------


def test_the_filter_redacts_a_records_message_arguments_and_exception(monkeypatch):
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("METRICS_PLATFORM_PROMETHEUS_TOKEN", token)
    try:
        raise RuntimeError(f"echoed Bearer {token}")
    except RuntimeError as exc:
        record = logging.LogRecord(
            "metrics_platform",
            logging.WARNING,
            __file__,
            1,
            "got %s",
            (token,),
            (type(exc), exc, exc.__traceback__),
        )
    assert redaction.RedactingFilter().filter(record)
    formatted = logging.Formatter().format(record)
    assert token not in formatted and "got ***" in formatted and "echoed Bearer ***" in formatted


def test_the_filter_redacts_the_dagster_event_a_record_carries(monkeypatch):
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("METRICS_PLATFORM_PROMETHEUS_TOKEN", token)
    event = dg.DagsterEvent(
        event_type_value=dg.DagsterEventType.ENGINE_EVENT.value,
        job_name="job",
        message=f"engine says {token}",
        event_specific_data=EngineEventData(),
    )
    record = logging.LogRecord("dagster", logging.INFO, __file__, 1, "m", (), None)
    record.__dict__["dagster_event"] = event
    redaction.RedactingFilter().filter(record)
    assert record.__dict__["dagster_event"].message == "engine says ***"
    assert (
        redaction.redact_dagster_value(record.__dict__["dagster_event"])
        is (record.__dict__["dagster_event"])
    )


def test_the_platform_logger_redacts_what_it_logs_in_a_run(monkeypatch):
    """A secret logged by the platform's logger inside a run reaches neither the run's event
    log nor its console output."""
    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("METRICS_PLATFORM_PROMETHEUS_TOKEN", token)

    @dg.asset
    def chatty(context):
        redaction.platform_logger().warning(f"retrying with Bearer {token}")
        redaction.add_redacting_filter(context.log).info(f"context says {token}")

    with dg.instance_for_test() as instance:
        result = dg.materialize([chatty], instance=instance)
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("retrying with Bearer ***" in m for m in messages), messages
    assert any("context says ***" in m for m in messages), messages
    assert not any(token in m for m in messages)


def test_a_source_steps_events_and_failures_are_redacted_last_of_all(monkeypatch):
    """What a source step stores, whatever put a secret there: the metadata of its
    materialization, and an error that is not the platform's own."""
    from metrics_platform.defs.sources.failures import source_failures

    token = f"tok-{uuid.uuid4().hex}"
    monkeypatch.setenv("METRICS_PLATFORM_PROMETHEUS_TOKEN", token)

    @dg.asset
    def echoing(context):
        with source_failures(context):
            pass
        return dg.MaterializeResult(metadata={"label": f"job=Bearer {token}"})

    @dg.asset
    def crashing(context):
        with source_failures(context):
            raise RuntimeError(f"a library said: Authorization: Bearer {token}")

    with dg.instance_for_test() as instance:
        result = dg.materialize([echoing, crashing], instance=instance, raise_on_error=False)
        entries = instance.all_logs(result.run_id)
    stored = [json.dumps(dg.serialize_value(entry)) for entry in entries]
    assert not any(token in text for text in stored)
    (materialization,) = [
        entry.asset_materialization for entry in entries if entry.asset_materialization
    ]
    assert materialization.metadata["label"].value == "job=Bearer ***"
    (failure,) = result.get_step_failure_events()
    data = failure.event_specific_data.user_failure_data
    assert (
        data.description
        == "RuntimeError: a library said: Authorization: Bearer *** (partition no partition)"
    )
