"""Identifiers from configuration: plain names pass and are quoted, anything else is refused."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.identifiers import QualifiedName, validate_identifier

INJECTIONS = [
    "users; DROP TABLE users",
    'users"--',
    "users' OR '1'='1",
    "users)",
    "1users",
    "",
    "a.b.c",
    "public.users; --",
    "users\x00",
    "x" * 64,
    "users ",
    "pg_catalog.pg_authid WHERE 1=1",
]


@pytest.mark.parametrize("name", INJECTIONS)
def test_injection_shaped_names_are_rejected_with_the_key(name):
    with pytest.raises(ConfigurationError, match=r"^product_db\.tables\[\]\.table: "):
        QualifiedName.parse(name, key="product_db.tables[].table")


def test_plain_and_qualified_names_are_accepted_and_quoted():
    assert str(QualifiedName.parse("users", key="k")) == "users"
    name = QualifiedName.parse("app.api_keys", key="k")
    assert name == QualifiedName("app", "api_keys")
    assert repr(name.sql()) == "Identifier('app', 'api_keys')"


@given(st.text(max_size=80))
def test_any_text_is_either_a_plain_identifier_or_refused(text):
    try:
        validate_identifier(text, key="k")
    except ConfigurationError as exc:
        assert str(exc).startswith("k: ")
    else:
        assert text and (text[0].isalpha() or text[0] == "_")
        assert all(c.isascii() and (c.isalnum() or c == "_") for c in text)
