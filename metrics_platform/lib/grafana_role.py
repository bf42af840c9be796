"""The read-only Postgres role Grafana connects as.

`set_up_reader_role` creates (or brings back in line) a LOGIN role that can read the metric
store and do nothing else in its database: USAGE on schema `metrics`, SELECT on every table and
view in it, and the same SELECT on tables and views created later by
the role that runs the migrations (default privileges). It holds no other privilege on the
schema's objects, is not a member of any role, and can create nothing anywhere in the database:
not in any schema, not a schema, not a temporary table or function (TEMPORARY, which PostgreSQL
grants to PUBLIC on every new database, is revoked from PUBLIC there and granted by name to the
roles that write the store), not a large object. Its sessions start read-only
(`default_transaction_read_only`) with a statement timeout, an idle-in-transaction timeout and
the sort memory of a many-series panel (`work_mem`); those are defaults a session may change, not the guard: the privileges are. What a reader can
still lock (reading takes ACCESS SHARE) delays no writer: see `metrics_platform.lib.locks`.

What the role running it may not do is reported, one line each, with what an administrator must
do instead (create the role, revoke a privilege from PUBLIC), rather than failing: the CLI's
`metrics-platform migrate` prints those lines after migrating the store. `ensure_reader_role`
is the strict form: it raises a `ConfigurationError` with the first of them.

Call it after `store.migrate`, with a connection of the role that owns the schema (the one that
runs the migrations), so that the default privileges cover the tables later migrations add.
It is idempotent and safe to run at every start-up; calls on one database take turns (a lock on
`metrics.schema_migrations` that only its owner can take).

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
from dataclasses import dataclass, field

import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.identifiers import validate_identifier
from metrics_platform.lib.locks import lock_table
from metrics_platform.lib.store import SCHEMA

DEFAULT_ROLE = "grafana_reader"
ROLE_ENV = "METRICS_PLATFORM_GRAFANA_DB_USER"
PASSWORD_ENV = "METRICS_PLATFORM_GRAFANA_DB_PASSWORD"

# The reader's session defaults (role settings). `work_mem` is the memory one sort may take
# before it spills to disk: a panel of 20 series over 90 days of hours sorts 43,200 rows by
# time, which spills to disk at PostgreSQL's default of 4MB (a quarter more of the server's time).
READER_SETTINGS = {
    "default_transaction_read_only": "on",
    "statement_timeout": "30s",
    "idle_in_transaction_session_timeout": "1min",
    "work_mem": "32MB",
}

# Table privileges a reader must not hold, revoked so that an existing role converges.
_WRITE_PRIVILEGES = sql.SQL("INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER")
# The functions that create large objects, which PostgreSQL lets any role call.
LARGE_OBJECT_CREATORS = (
    "lo_creat(integer)",
    "lo_create(oid)",
    "lo_from_bytea(oid, bytea)",
    "lo_import(text)",
    "lo_import(text, oid)",
)


@dataclass
class ReaderRole:
    """What `set_up_reader_role` did: whether it created the role, and what it could not do
    (one line each, saying what to do instead); empty `problems` means the role is ready."""

    role: str
    created: bool = False
    problems: list[str] = field(default_factory=list)


def ensure_reader_role(
    conn: psycopg2.extensions.connection,
    role: str = DEFAULT_ROLE,
    password: str | None = None,
) -> bool:
    """`set_up_reader_role`, strict: True when the role was created now; a `ConfigurationError`
    with the first problem when anything is left to do."""
    result = set_up_reader_role(conn, role, password)
    if result.problems:
        raise ConfigurationError(result.problems[0])
    return result.created


def set_up_reader_role(
    conn: psycopg2.extensions.connection,
    role: str = DEFAULT_ROLE,
    password: str | None = None,
) -> ReaderRole:
    """Create or update the read-only role, as far as the connection's role may.

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
    database = sql.Identifier(conn.info.dbname)
    verifier = psycopg2.extensions.encrypt_password(password, role, conn) if password else None
    result = ReaderRole(role)

    with conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.schema_migrations",))
        if not cur.fetchone()[0]:
            raise ConfigurationError(
                f"schema {SCHEMA!r} does not exist: migrate the metric store before creating "
                "the Grafana reader role"
            )
        lock_table(
            cur, SCHEMA, "schema_migrations", "SHARE ROW EXCLUSIVE", purpose="setting up the reader"
        )
        cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
        if cur.fetchone() is None:
            try:
                result.created = _create_role(cur, name, verifier)
            except psycopg2.errors.InsufficientPrivilege:
                result.problems.append(
                    f"Grafana reader role {role!r} does not exist and role {conn.info.user!r} may "
                    f"not create roles (no CREATEROLE): create it as an administrator (CREATE "
                    f"ROLE {role} LOGIN PASSWORD '...'), then run `metrics-platform migrate` "
                    "again to grant it read access"
                )
                return result
        if not result.created:
            _refuse_if_privileged(cur, role)
            cur.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (role,))
            if verifier is not None:
                _as_far_as_allowed(
                    cur,
                    result,
                    sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD %s").format(name),
                    (verifier,),
                    instead=f"ALTER ROLE {role} WITH LOGIN PASSWORD '...'",
                )
            elif not cur.fetchone()[0]:
                statement = sql.SQL("ALTER ROLE {} WITH LOGIN").format(name)
                _as_far_as_allowed(cur, result, statement, (), instead=f"ALTER ROLE {role} LOGIN")
        _role_settings(cur, result, name, role)
        cur.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(database, name))
        cur.execute(
            sql.SQL("REVOKE CREATE, TEMPORARY ON DATABASE {} FROM {}").format(database, name)
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
        _no_temporary_objects(cur, result, conn.info.dbname)
        _no_large_objects(cur, result, conn.info.dbname)
        result.problems += _schemas_open_to(cur, role)
    return result


def _as_far_as_allowed(cur, result: ReaderRole, statement, params, *, instead: str) -> None:
    """Run a statement on the role; when the connection's role may not (it lacks CREATEROLE),
    note the statement an administrator must run `instead` (which shows no password)."""
    cur.execute("SAVEPOINT reader_role_statement")
    try:
        cur.execute(statement, params)
    except psycopg2.errors.InsufficientPrivilege:
        cur.execute("ROLLBACK TO SAVEPOINT reader_role_statement")
        result.problems.append(
            f"Grafana reader role {result.role!r}: role {cur.connection.info.user!r} may not "
            f"change it (no CREATEROLE): as an administrator run {instead}"
        )
        return
    cur.execute("RELEASE SAVEPOINT reader_role_statement")


def _role_settings(cur, result: ReaderRole, name: sql.Identifier, role: str) -> None:
    """READER_SETTINGS as the role's session defaults, unless it has them already."""
    cur.execute(
        """SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
           WHERE r.rolname = %s AND s.setdatabase = 0""",
        (role,),
    )
    row = cur.fetchone()
    current = dict(item.split("=", 1) for item in (row[0] if row else None) or [])
    for setting, value in READER_SETTINGS.items():
        if current.get(setting) == value:
            continue
        statement = sql.SQL("ALTER ROLE {} SET {} = {}").format(
            name, sql.Identifier(setting), sql.Literal(value)
        )
        instead = f"ALTER ROLE {role} SET {setting} = '{value}'"
        _as_far_as_allowed(cur, result, statement, (), instead=instead)


def _writers(cur) -> list[str]:
    """The roles that write the store (INSERT on its values): the ones that need TEMPORARY."""
    cur.execute(
        r"""SELECT rolname FROM pg_roles
           WHERE NOT rolsuper AND rolname NOT LIKE 'pg\_%%'
             AND has_table_privilege(oid, %s, 'INSERT')
           ORDER BY rolname""",
        (f"{SCHEMA}.hourly_values",),
    )
    return [row[0] for row in cur.fetchall()]


def _no_temporary_objects(cur, result: ReaderRole, dbname: str) -> None:
    """Revoke TEMPORARY from PUBLIC on the database (granting it by name to the store's writers
    first), when PUBLIC has it and this role may change that."""
    cur.execute("SELECT has_database_privilege('public', %s, 'TEMPORARY')", (dbname,))
    if not cur.fetchone()[0]:
        return
    database = sql.Identifier(dbname)
    writers = _writers(cur)
    cur.execute(
        """SELECT r.rolsuper OR d.datdba = r.oid FROM pg_roles r, pg_database d
           WHERE r.rolname = current_user AND d.datname = %s""",
        (dbname,),
    )
    if cur.fetchone()[0]:
        for writer in writers:
            cur.execute(
                sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(
                    database, sql.Identifier(writer)
                )
            )
        cur.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(database))
        return
    grants = "; ".join(f"GRANT TEMPORARY ON DATABASE {dbname} TO {writer}" for writer in writers)
    result.problems.append(
        f"TEMPORARY on database {dbname!r} is granted to PUBLIC, so the Grafana reader role "
        f"{result.role!r} can create temporary tables: as the database's owner run {grants}; "
        f"REVOKE TEMPORARY ON DATABASE {dbname} FROM PUBLIC"
    )


def _no_large_objects(cur, result: ReaderRole, dbname: str) -> None:
    """Revoke from PUBLIC the functions that create large objects (the platform uses none), when
    PUBLIC may call them and this role may change that (a superuser)."""
    cur.execute(
        "SELECT f FROM unnest(%s::text[]) f WHERE has_function_privilege('public', f, 'EXECUTE')",
        (list(LARGE_OBJECT_CREATORS),),
    )
    callable_ = [row[0] for row in cur.fetchall()]
    if not callable_:
        return
    cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    statement = f"REVOKE EXECUTE ON FUNCTION {', '.join(callable_)} FROM PUBLIC"
    if cur.fetchone()[0]:
        cur.execute(statement)
        return
    result.problems.append(
        f"any role, the Grafana reader role {result.role!r} too, can create large objects in "
        f"database {dbname!r}: as a superuser run {statement}"
    )


def _schemas_open_to(cur, role: str) -> list[str]:
    """A line for each schema the reader may still create objects in (through PUBLIC), saying
    what its owner must revoke."""
    cur.execute(
        """SELECT nspname FROM pg_namespace
           WHERE has_schema_privilege(%s, oid, 'CREATE') ORDER BY nspname""",
        (role,),
    )
    return [
        f"the Grafana reader role {role!r} may create objects in schema {schema!r}: as its owner "
        f"run REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC, {role}"
        for (schema,) in cur.fetchall()
    ]


def _create_role(cur, name: sql.Identifier, verifier: str | None) -> bool:
    """CREATE ROLE, or False when it already exists (also when a call on another database of
    the server just made it: roles are server-wide, the lock that serializes calls is not)."""
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
    except psycopg2.errors.InsufficientPrivilege:
        cur.execute("ROLLBACK TO SAVEPOINT create_reader_role")
        raise
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
            result = set_up_reader_role(conn, role, password)
        finally:
            conn.close()
    except MetricsPlatformError as exc:
        print(f"grafana_role: {exc}", file=sys.stderr)
        return 2
    for problem in result.problems:
        print(f"grafana_role: {problem}", file=sys.stderr)
    if result.problems:
        return 1
    state = "created" if result.created else "up to date"
    print(
        f"read-only role {role!r} on {redact(url)}: {state}"
        f"{'' if password else ' (no password set: login only where pg_hba trusts it)'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
