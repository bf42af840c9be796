"""The event log's compact layout: a range run's materializations stored as its template and,
per partition, the two values that differ.

A range run's materializations, one per partition, are the same event but for their partition
and timestamp (`event_log.RangeSerializer`). Stored as Dagster stores events, each row carries
the whole serialized event: about 1.5 KB per asset-partition, most of Dagster's records of a
long backfill. In this layout the rows live in `event_log_rows`, Dagster's `event_logs` table
renamed, with two more columns: a row of a range's materialization keeps its `event` NULL and
names its range's template in `event_log_templates` (the serialized event around its partition
and timestamp) with its own timestamp's JSON text (`template_timestamp`); its partition is the
row's `partition` column already. Any other row keeps its serialized event, as before.

`event_logs` is a view of `event_log_rows` that writes each template's event back out, so every
read of the event log, Dagster's and dagster-postgres's class alike, gets the text Dagster
serialized (the view is a plain projection of one table: the planner uses the table's indexes
for the view's filters and orders, and the template lookup runs only for the rows returned).
Writes through the view (dagster-postgres's inserts, updates and deletes) reach the table
through an `INSTEAD OF` trigger; the view's `id` draws from the table's own sequence.

The conversion (`ensure_compact_layout`) runs once, in one statement (one transaction), under
an advisory lock, when an instance's event log storage first starts on a database with the
plain table: a rename and two new nullable columns, no row rewritten. `restore_plain_layout`
turns it back into dagster-postgres's table, for an operator leaving this storage.
"""

from __future__ import annotations

import json
import logging

import psycopg2.errors

logger = logging.getLogger(__name__)

# How long the conversion waits for the table's readers before leaving it for a later start.
LOCK_TIMEOUT_MS = 5000
ROWS_TABLE = "event_log_rows"
TEMPLATES_TABLE = "event_log_templates"
VIEW = "event_logs"  # Dagster's name for its event log table

# The view's serialized event of a row: its own, or its template's with its values written in.
# A template's partition is JSON text without escapes (`can_fill`), so it is the column
# between quotes.
_EXPANDED_EVENT = f"""COALESCE(r.event, (
        SELECT CASE WHEN t.partition_first
            THEN t.head || '"' || r.partition || '"' || t.middle || r.template_timestamp || t.tail
            ELSE t.head || r.template_timestamp || t.middle || '"' || r.partition || '"' || t.tail
        END
        FROM {TEMPLATES_TABLE} t WHERE t.id = r.template_id))"""

# Dagster's columns of `event_logs`, in its order.
EVENT_COLUMNS = (
    "id",
    "run_id",
    "event",
    "dagster_event_type",
    "timestamp",
    "step_key",
    "asset_key",
    "partition",
)
_VIEW_COLUMNS = ", ".join(
    _EXPANDED_EVENT + " AS event" if c == "event" else f"r.{c}" for c in EVENT_COLUMNS
)
_NEW_VALUES = ", ".join(f"NEW.{c}" for c in EVENT_COLUMNS)
_NEW_ASSIGNMENTS = ", ".join(f"{c} = NEW.{c}" for c in EVENT_COLUMNS)

# Constant text throughout: no identifier or value from input. Executed with a parameter, so a
# literal percent sign is written `%%`.
_CONVERT = f"""
DO $convert$
DECLARE
    sequence text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('metrics_platform event log layout'));
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('{VIEW}')) IS DISTINCT FROM 'r' THEN
        RETURN;  -- converted already (a view), or no event log yet
    END IF;
    -- The rename waits for the table's readers: not for long (`ensure_compact_layout`).
    PERFORM set_config('lock_timeout', %(lock_timeout)s, true);
    sequence := pg_get_serial_sequence('{VIEW}', 'id');
    ALTER TABLE {VIEW} RENAME TO {ROWS_TABLE};
    ALTER TABLE {ROWS_TABLE}
        ALTER COLUMN event DROP NOT NULL,
        ADD COLUMN template_id bigint,
        ADD COLUMN template_timestamp text,
        ADD CONSTRAINT {ROWS_TABLE}_event_or_template CHECK (
            event IS NOT NULL
            OR (template_id IS NOT NULL AND template_timestamp IS NOT NULL
                AND partition IS NOT NULL));
    CREATE TABLE {TEMPLATES_TABLE} (
        id bigserial PRIMARY KEY,
        run_id varchar(255) NOT NULL,
        partition_first boolean NOT NULL,
        head text NOT NULL,
        middle text NOT NULL,
        tail text NOT NULL
    );
    CREATE INDEX {TEMPLATES_TABLE}_run_id ON {TEMPLATES_TABLE} (run_id);
    CREATE VIEW {VIEW} AS SELECT {_VIEW_COLUMNS} FROM {ROWS_TABLE} r;
    EXECUTE format(
        'ALTER VIEW {VIEW} ALTER COLUMN id SET DEFAULT nextval(%%L::regclass)', sequence);
    CREATE FUNCTION {VIEW}_write() RETURNS trigger LANGUAGE plpgsql AS $write$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO {ROWS_TABLE} ({", ".join(EVENT_COLUMNS)}) VALUES ({_NEW_VALUES});
            RETURN NEW;
        ELSIF TG_OP = 'UPDATE' THEN
            -- An updated row keeps the event it is given (the view's text if not set).
            UPDATE {ROWS_TABLE}
               SET {_NEW_ASSIGNMENTS}, template_id = NULL, template_timestamp = NULL
             WHERE id = OLD.id;
            RETURN NEW;
        END IF;
        DELETE FROM {ROWS_TABLE} WHERE id = OLD.id;
        RETURN OLD;
    END
    $write$;
    CREATE TRIGGER {VIEW}_write INSTEAD OF INSERT OR UPDATE OR DELETE ON {VIEW}
        FOR EACH ROW EXECUTE FUNCTION {VIEW}_write();
END
$convert$;
"""

_RESTORE = f"""
DO $restore$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('metrics_platform event log layout'));
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('{VIEW}')) IS DISTINCT FROM 'v' THEN
        RETURN;
    END IF;
    UPDATE {ROWS_TABLE} r SET event = v.event
      FROM {VIEW} v WHERE v.id = r.id AND r.event IS NULL;
    DROP VIEW {VIEW};
    DROP FUNCTION {VIEW}_write();
    DROP TABLE {TEMPLATES_TABLE};
    ALTER TABLE {ROWS_TABLE}
        DROP CONSTRAINT {ROWS_TABLE}_event_or_template,
        DROP COLUMN template_id,
        DROP COLUMN template_timestamp,
        ALTER COLUMN event SET NOT NULL;
    ALTER TABLE {ROWS_TABLE} RENAME TO {VIEW};
END
$restore$;
"""


def is_compact(cursor) -> bool:
    """Whether the database's event log has this layout (`event_logs` a view)."""
    cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", (VIEW,))
    row = cursor.fetchone()
    return row is not None and row[0] == "v"


def ensure_compact_layout(cursor, lock_timeout_ms: int | None = None) -> bool:
    """Convert the plain event log table (if there is one) to this layout, once; whether the
    database has this layout afterwards. The cursor's connection must be in autocommit mode:
    the conversion is one statement, its own transaction. When the table stays busy (a long
    read holds it) for `lock_timeout_ms`, nothing changes: the plain layout stays, written as
    dagster-postgres writes it, and a later start converts it (default: `LOCK_TIMEOUT_MS`)."""
    if lock_timeout_ms is None:
        lock_timeout_ms = LOCK_TIMEOUT_MS
    try:
        cursor.execute(_CONVERT, {"lock_timeout": f"{int(lock_timeout_ms)}ms"})
    except psycopg2.errors.LockNotAvailable:
        logger.warning(
            "Dagster's event log stays in its plain layout for now: its table was busy for "
            "%s ms; the next start converts it",
            lock_timeout_ms,
        )
    return is_compact(cursor)


def restore_plain_layout(cursor) -> None:
    """dagster-postgres's own `event_logs` table again, every row with its serialized event
    (for a database leaving this storage for dagster-postgres's class); one transaction."""
    cursor.execute(_RESTORE)


def can_fill(partition: str) -> bool:
    """Whether a partition key is its own JSON text between quotes (no escapes), as the view
    writes it into its template."""
    return json.dumps(partition) == f'"{partition}"'
