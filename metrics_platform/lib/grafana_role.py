"""The read-only Postgres role Grafana connects as.

`ensure_reader_role` creates (or brings back in line) a LOGIN role that can read the metric
store and do nothing else there: USAGE on schema `metrics`, SELECT on every table and view in it,
and the same SELECT on tables and views created later by the role that runs the migrations
(default privileges). It holds no other privilege on the schema's objects, cannot create objects
in it, is not a member of any role, and its sessions start read-only
(`default_transaction_read_only`), a second guard behind the privileges.

Call it after `store.migrate`, with a connection of the role that owns the schema (the one that
runs the migrations), so that the default privileges cover the tables later migrations add.
It is idempotent and safe to run at every start-up; calls on one database take turns (an
advisory lock), so concurrent start-ups do not trip over each other's grants.

The role name is validated as a plain identifier and only ever reaches SQL quoted. The password
is a bound parameter, hashed by libpq beforehand (with the server's `password_encryption`,
SCRAM by default), so the clear text appears in no statement or server log; without a password the role can only log in where
`pg_hba.conf` trusts it (as the embedded server does for local connections).

Run by hand: `python -m metrics_platform.lib.grafana_role` (reads
METRICS_PLATFORM_DATABASE_URL, and the role name and password Grafana is given,
METRICS_PLATFORM_GRAFANA_DB_USER and METRICS_PLATFORM_GRAFANA_DB_PASSWORD).
"""

from __future__ import annotations

import os
import sys

import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.identifiers import validate_identifier
from metrics_platform.lib.store import SCHEMA

DEFAULT_ROLE = "grafana_reader"
ROLE_ENV = "METRICS_PLATFORM_GRAFANA_DB_USER"
PASSWORD_ENV = "METRICS_PLATFORM_GRAFANA_DB_PASSWORD"

# Key for pg_advisory_xact_lock; arbitrary but fixed (the store's migrations use 4_712_001).
_ROLE_LOCK_KEY = 4_712_002

# Table privileges a reader must not hold, revoked so that an existing role converges.
_WRITE_PRIVILEGES = sql.SQL("INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER")


def ensure_reader_role(
    conn: psycopg2.extensions.connection,
    role: str = DEFAULT_ROLE,
    password: str | None = None,
) -> bool:
    """Create or update the read-only role; returns True when it was created now.

    An existing role keeps its password unless `password` is given. An existing role with more
    than login rights (superuser, CREATEDB, CREATEROLE, replication, BYPASSRLS, or membership of
    another role) is refused with a `ConfigurationError` rather than used as a reader.
    """
    validate_identifier(role, key="Grafana reader role")
    if role.lower().startswith("pg_"):
        raise ConfigurationError(f"Grafana reader role: {role!r} is reserved (pg_ prefix)")
    if password is not None and not password:
        raise ConfigurationError("Grafana reader password: empty; pass None for no password")
    name = sql.Identifier(role)
    schema = sql.Identifier(SCHEMA)
    verifier = psycopg2.extensions.encrypt_password(password, role, conn) if password else None

    with conn, conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_ROLE_LOCK_KEY,))
        cur.execute("SELECT to_regnamespace(%s) IS NOT NULL", (SCHEMA,))
        if not cur.fetchone()[0]:
            raise ConfigurationError(
                f"schema {SCHEMA!r} does not exist: migrate the metric store before creating "
                "the Grafana reader role"
            )
        created = _create_role(cur, name, verifier)
        if not created:
            _refuse_if_privileged(cur, role)
            if verifier is not None:
                cur.execute(
                    sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD %s").format(name), (verifier,)
                )
            else:
                cur.execute(sql.SQL("ALTER ROLE {} WITH LOGIN").format(name))
        cur.execute(sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(name))
        cur.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(conn.info.dbname), name
            )
        )
        cur.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, name))
        cur.execute(sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(schema, name))
        cur.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, name))
        cur.execute(
            sql.SQL("REVOKE {} ON ALL TABLES IN SCHEMA {} FROM {}").format(
                _WRITE_PRIVILEGES, schema, name
            )
        )
        cur.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                schema, name
            )
        )
        cur.execute(
            sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} REVOKE {} ON TABLES FROM {}").format(
                schema, _WRITE_PRIVILEGES, name
            )
        )
    return created


def _create_role(cur, name: sql.Identifier, verifier: str | None) -> bool:
    """CREATE ROLE, or False when it already exists (also when a call on another database of
    the server just made it: roles are server-wide, the advisory lock is not)."""
    statement = sql.SQL(
        "CREATE ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION "
        "NOBYPASSRLS"
    ).format(name)
    params: tuple = ()
    if verifier is not None:
        statement += sql.SQL(" PASSWORD %s")
        params = (verifier,)
    cur.execute("SAVEPOINT create_reader_role")
    try:
        cur.execute(statement, params)
    except (psycopg2.errors.DuplicateObject, psycopg2.errors.UniqueViolation):
        cur.execute("ROLLBACK TO SAVEPOINT create_reader_role")
        return False
    cur.execute("RELEASE SAVEPOINT create_reader_role")
    return True


def _refuse_if_privileged(cur, role: str) -> None:
    cur.execute(
        """SELECT r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolbypassrls,
                  EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid)
           FROM pg_roles r WHERE r.rolname = %s""",
        (role,),
    )
    flags = cur.fetchone()
    names = (
        "SUPERUSER",
        "CREATEDB",
        "CREATEROLE",
        "REPLICATION",
        "BYPASSRLS",
        "membership of other roles",
    )
    extra = [label for label, flag in zip(names, flags) if flag]
    if extra:
        raise ConfigurationError(
            f"Grafana reader role: {role!r} already exists with {', '.join(extra)}; "
            "it cannot serve as a read-only role (choose another name or remove those rights)"
        )


def main() -> int:
    from metrics_platform.lib.database import connect, database_url_from_env, redact
    from metrics_platform.lib.errors import MetricsPlatformError

    role = os.environ.get(ROLE_ENV) or DEFAULT_ROLE
    password = os.environ.get(PASSWORD_ENV) or None
    try:
        url = database_url_from_env()
        conn = connect(url, application_name="metrics_platform grafana role")
        try:
            created = ensure_reader_role(conn, role, password)
        finally:
            conn.close()
    except MetricsPlatformError as exc:
        print(f"grafana_role: {exc}", file=sys.stderr)
        return 2
    state = "created" if created else "up to date"
    print(
        f"read-only role {role!r} on {redact(url)}: {state}"
        f"{'' if password else ' (no password set: login only where pg_hba trusts it)'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
