"""SQL identifiers that come from configuration: validated here, then only ever quoted.

A name is accepted when it is a plain Postgres identifier (letters, digits, underscores, not
starting with a digit, at most 63 bytes), optionally schema-qualified (`schema.table`). Anything
else, including every injection-shaped string, is rejected with a message that names the
configuration key it came from. Accepted names still go through `psycopg2.sql.Identifier`, so
they never reach SQL as raw text.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from psycopg2 import sql

from metrics_platform.lib.errors import ConfigurationError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_IDENTIFIER_BYTES = 63


def validate_identifier(name: str, *, key: str) -> str:
    """Return `name` unchanged if it is a plain identifier, else raise `ConfigurationError`."""
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ConfigurationError(
            f"{key}: {name!r} is not a valid SQL identifier "
            "(letters, digits and underscores, not starting with a digit)"
        )
    if len(name.encode()) > _MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(f"{key}: {name!r} is longer than {_MAX_IDENTIFIER_BYTES} bytes")
    return name


class QualifiedName(NamedTuple):
    """A validated `schema.table` (schema optional) that renders only as quoted SQL."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, text: str, *, key: str) -> QualifiedName:
        if not isinstance(text, str):
            raise ConfigurationError(f"{key}: expected a table name, got {type(text).__name__}")
        parts = text.split(".")
        if len(parts) > 2:
            raise ConfigurationError(
                f"{key}: {text!r} has more than one dot; use `table` or `schema.table`"
            )
        for part in parts:
            validate_identifier(part, key=key)
        return cls(None, parts[0]) if len(parts) == 1 else cls(parts[0], parts[1])

    def sql(self) -> sql.Composable:
        if self.schema is None:
            return sql.Identifier(self.name)
        return sql.Identifier(self.schema, self.name)

    def __str__(self) -> str:
        return self.name if self.schema is None else f"{self.schema}.{self.name}"
