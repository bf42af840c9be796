"""The locks that make the store's writers take turns, and that no read-only session can hold
against them for long.

Writers lock what they write with `LOCK TABLE`, in modes that need write privileges on the table
(`SHARE ROW EXCLUSIVE` for a table's writers, `ACCESS EXCLUSIVE` for migrations): a role that
may only read cannot take them, and what it can take (`ACCESS SHARE`, by reading) conflicts only
with `ACCESS EXCLUSIVE`. Advisory locks are not used for that: any role that can connect can
take any advisory key, and hold it as long as it likes.

Every wait is made in rounds of `lock_wait_seconds()` (`lock_timeout`). When a round ends
without the lock, the sessions holding conflicting locks are looked up (`pg_locks`,
`pg_stat_activity`): if each of them may write the object (a writer, the owner, a migration,
autovacuum), it is another writer's turn and the wait goes on; if any may not (a reader with an
open transaction, a cursor, an idle session in a transaction), the wait ends with a
`LockNotGrantedError` that names the object, the wait and who holds it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psycopg2.errors
from psycopg2 import sql

from metrics_platform.lib.errors import ConfigurationError, MetricsPlatformError

LOCK_WAIT_ENV = "METRICS_PLATFORM_LOCK_WAIT_SECONDS"
DEFAULT_LOCK_WAIT_SECONDS = 10.0

# Relation lock modes, weakest first, as pg_locks names them; which granted ones a requested
# mode waits for (PostgreSQL's conflict table, for the modes used here: each conflicts with a
# tail of the list).
_MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)
_CONFLICTS = {
    "ACCESS SHARE": _MODES[7:],
    "ROW SHARE": _MODES[6:],
    "ROW EXCLUSIVE": _MODES[4:],
    "SHARE ROW EXCLUSIVE": _MODES[2:],
    "ACCESS EXCLUSIVE": _MODES,
}
_SAVEPOINT = "metrics_platform_lock"


class LockNotGrantedError(MetricsPlatformError):
    """A lock a writer needs was held, past the bounded wait, by a session that may not write."""


def lock_wait_seconds() -> float:
    """How long one round of a lock wait lasts (`METRICS_PLATFORM_LOCK_WAIT_SECONDS`)."""
    text = os.environ.get(LOCK_WAIT_ENV, "").strip()
    if not text:
        return DEFAULT_LOCK_WAIT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value <= 3600:
        raise ConfigurationError(f"{LOCK_WAIT_ENV}: {text!r} is not a number of seconds (0-3600]")
    return value


@dataclass(frozen=True)
class Holder:
    """A session holding a lock that a writer waits for."""

    pid: int
    role: str | None
    application: str | None
    state: str | None
    mode: str
    may_write: bool

    def __str__(self) -> str:
        role = self.role or "a background process"
        details = [f"role {role}"]
        if self.application:
            details.append(f"application {self.application!r}")
        if self.state:
            details.append(self.state)
        return f"pid {self.pid} ({', '.join(details)}; {self.mode})"


# The sessions, other than this one, holding a granted lock of the given modes on a relation;
# a holder "may write" when its role has a write privilege on it (owners and superusers have
# them all), or when it is a background process (autovacuum yields to writers on its own).
_RELATION_HOLDERS = """
SELECT l.pid, a.usename, nullif(a.application_name, ''), a.state, l.mode,
       a.usesysid IS NULL
       OR has_table_privilege(a.usesysid, l.relation, 'INSERT, UPDATE, DELETE, TRUNCATE')
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.relation = %s::regclass AND l.mode = ANY(%s)
ORDER BY l.pid
"""

# The sessions holding a transaction- or session-level advisory lock on a 64-bit key; a holder
# "may write" when its role may create tables in `schema`.
_ADVISORY_HOLDERS = """
SELECT l.pid, a.usename, nullif(a.application_name, ''), a.state, l.mode,
       a.usesysid IS NOT NULL AND has_schema_privilege(a.usesysid, %s, 'CREATE')
FROM pg_locks l
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_backend_pid() AND l.locktype = 'advisory'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.objsubid = 1
  AND ((l.classid::bigint << 32) | l.objid::bigint) = %s::bigint
ORDER BY l.pid
"""


def _holders(cur, query: str, params) -> list[Holder]:
    cur.execute(query, params)
    return [Holder(*row) for row in cur.fetchall()]


def _wait(cur, statement, params, *, what: str, holders_query: str, holders_params) -> None:
    """Run the lock `statement` in rounds of `lock_wait_seconds()` until it is granted, for as
    long as only writers hold what it waits for."""
    wait = lock_wait_seconds()
    cur.execute("SELECT current_setting('lock_timeout')")
    previous = cur.fetchone()[0]
    while True:
        cur.execute(f"SAVEPOINT {_SAVEPOINT}")
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (f"{int(wait * 1000)}ms",))
        try:
            cur.execute(statement, params)
        except psycopg2.errors.LockNotAvailable:
            cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
            holders = _holders(cur, holders_query, holders_params)
            if all(holder.may_write for holder in holders):
                continue  # another writer's turn (or a queue that moves): wait on
            blocking = [str(holder) for holder in holders if not holder.may_write]
            raise LockNotGrantedError(
                f"{what}: the lock was not granted within {wait:g} s; held by "
                f"{', '.join(blocking)}, a session that may not write it: end that session "
                "or its transaction"
            ) from None
        cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        cur.execute("SELECT set_config('lock_timeout', %s, true)", (previous,))
        return


def lock_table(cur, schema: str, table: str, mode: str, *, purpose: str = "writing") -> None:
    """`LOCK TABLE schema.table IN <mode> MODE` for the rest of the transaction (identifiers
    are validated by the caller), waiting as the module says."""
    name = f"{schema}.{table}"
    _wait(
        cur,
        sql.SQL("LOCK TABLE {} IN {} MODE").format(sql.Identifier(schema, table), sql.SQL(mode)),
        None,
        what=f"{purpose} {name}",
        holders_query=_RELATION_HOLDERS,
        holders_params=(sql.Identifier(schema, table).as_string(cur), list(_CONFLICTS[mode])),
    )


def lock_new_table(cur, schema: str, table: str) -> None:
    """Serialize the writers that create `schema.table`, which does not exist yet (so it cannot
    be locked itself): a transaction-level advisory lock on the table's name, whose holders
    must be allowed to create tables in the schema for a writer to wait for them unbounded."""
    key_text = f"metrics_platform:{schema}.{table}"
    cur.execute("SELECT hashtextextended(%s, 0)", (key_text,))
    key = cur.fetchone()[0]
    _wait(
        cur,
        "SELECT pg_advisory_xact_lock(%s)",
        (key,),
        what=f"creating {schema}.{table}",
        holders_query=_ADVISORY_HOLDERS,
        holders_params=(schema, key),
    )


def create_once(cur, statement) -> None:
    """Run a CREATE statement that another transaction may be running at the same time: the
    second creator waits for the first, then finds the object there and goes on."""
    cur.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        cur.execute(statement)
    except (
        psycopg2.errors.UniqueViolation,
        psycopg2.errors.DuplicateSchema,
        psycopg2.errors.DuplicateTable,
    ):
        cur.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        return
    cur.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")


def create_schema(cur, schema: str) -> None:
    """CREATE SCHEMA (a validated name), once even when two writers create it at once."""
    create_once(cur, sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
