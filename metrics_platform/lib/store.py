"""The metric store: schema, migrations and the metric catalog.

Tables (schema `metrics`):

- `metric`: the catalog. One row per metric name, with its description, unit, aggregation kind
  and the source that produces it. The kind says how a day is made of hours: `sum` for
  counters, `last` for gauges (the end-of-day value), `recomputed` for values that cannot be
  derived from hourly values (percentiles): their source computes each day from raw data.
- `hourly_values`: (metric_id, hour, value); `hour` is the UTC start of the hour.
- `daily_values`: (metric_id, day, value).
- `hourly_kpis`, `daily_kpis`: the same shapes, for KPIs computed from the values.

The primary keys keep one value per metric and period, and serve Grafana's access pattern (one
metric over a time range) with index-only scans: they also carry the value. The secondary time
indexes serve the partition-window deletes. Metric ids are checked against the catalog once per
statement by a trigger rather than row by row by a foreign key (see migration 4).
Views `hourly_values_by_name` and `daily_values_by_name` join the catalog and expose the
`date` / `hour` columns dashboards group by.

Migrations are plain SQL, applied in order, once, under a lock on `schema_migrations` that only
the schema's owner can take, so any number of processes can call `migrate` at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import psycopg2.errors
import psycopg2.extensions

from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.locks import create_once, create_schema, lock_table

SCHEMA = "metrics"
Aggregation = Literal["sum", "last", "recomputed"]
AGGREGATIONS: tuple[str, ...] = ("sum", "last", "recomputed")
# How a change in the past propagates: a per-period value (`own_hour`: a count of the hour's
# events) changes only its own hour; a cumulative one (`later_hours`: rows that existed at the
# hour's end) changes that hour and every later one.
Propagation = Literal["own_hour", "later_hours"]
PROPAGATIONS: tuple[str, ...] = ("own_hour", "later_hours")


# The four value tables: (table, time column). Hourly tables key on the UTC hour, daily ones on
# the business day.
VALUE_TABLES: Sequence[tuple[str, str]] = (
    ("hourly_values", "hour"),
    ("daily_values", "day"),
    ("hourly_kpis", "hour"),
    ("daily_kpis", "day"),
)


def _value_tables(hourly: str, daily: str) -> str:
    """DDL of a pair of value tables as first created (migration 4 changes their keys)."""
    return f"""
        CREATE TABLE metrics.{hourly} (
            metric_id integer NOT NULL REFERENCES metrics.metric (id),
            hour      timestamptz NOT NULL CHECK (date_trunc('hour', hour, 'UTC') = hour),
            value     double precision NOT NULL
                      CHECK (value > '-Infinity' AND value < 'Infinity'),
            PRIMARY KEY (metric_id, hour)
        );
        CREATE INDEX {hourly}_hour_idx ON metrics.{hourly} (hour);

        CREATE TABLE metrics.{daily} (
            metric_id integer NOT NULL REFERENCES metrics.metric (id),
            day       date NOT NULL,
            value     double precision NOT NULL
                      CHECK (value > '-Infinity' AND value < 'Infinity'),
            PRIMARY KEY (metric_id, day)
        );
        CREATE INDEX {daily}_day_idx ON metrics.{daily} (day);
        """


def _statement_level_metric_ids() -> str:
    """Migration 4. Two changes to every value table, both measured (`benchmarks/`):

    - The primary key also carries the value (`INCLUDE (value)`): a panel's query (one metric
      over a time range) becomes an index-only scan, ~6x faster at 1,000 metrics x 1 year.
    - The foreign key to the catalog becomes a check made once per statement: Postgres checks a
      foreign key row by row (one lookup and one row lock per inserted row), which cost a third
      of a backfill's write rate. The trigger below checks the distinct ids of the whole
      statement at once and takes the same `FOR KEY SHARE` locks on the catalog rows, so a
      concurrent delete of a metric still waits or fails; metric ids in a value table cannot be
      updated; a catalog row that values refer to cannot be deleted, its id not changed, and
      the catalog cannot be truncated.
    """
    functions = """
        CREATE FUNCTION metrics.check_metric_ids() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            missing integer;
        BEGIN
            SELECT n.id INTO missing
            FROM (SELECT DISTINCT metric_id AS id FROM new_rows) AS n
            LEFT JOIN (SELECT m.id FROM metrics.metric m
                       WHERE m.id IN (SELECT metric_id FROM new_rows)
                       FOR KEY SHARE) AS present USING (id)
            WHERE present.id IS NULL
            LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'foreign_key_violation',
                    MESSAGE = format('insert into %I.%I: metric_id %s is not in metrics.metric',
                                     TG_TABLE_SCHEMA, TG_TABLE_NAME, missing);
            END IF;
            RETURN NULL;
        END $$;

        CREATE FUNCTION metrics.keep_metric_id() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.metric_id IS DISTINCT FROM OLD.metric_id THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'foreign_key_violation',
                    MESSAGE = format('%I.%I: metric_id cannot be changed',
                                     TG_TABLE_SCHEMA, TG_TABLE_NAME);
            END IF;
            RETURN NEW;
        END $$;

        CREATE FUNCTION metrics.keep_referenced_metric() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'TRUNCATE' THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'foreign_key_violation',
                    MESSAGE = 'metrics.metric cannot be truncated: delete unused metrics instead';
            END IF;
            IF TG_OP = 'UPDATE' AND NEW.id IS NOT DISTINCT FROM OLD.id THEN
                RETURN NEW;
            END IF;
            IF EXISTS (SELECT 1 FROM metrics.hourly_values WHERE metric_id = OLD.id)
               OR EXISTS (SELECT 1 FROM metrics.daily_values WHERE metric_id = OLD.id)
               OR EXISTS (SELECT 1 FROM metrics.hourly_kpis WHERE metric_id = OLD.id)
               OR EXISTS (SELECT 1 FROM metrics.daily_kpis WHERE metric_id = OLD.id) THEN
                RAISE EXCEPTION USING
                    ERRCODE = 'foreign_key_violation',
                    MESSAGE = format('metric %s (%s) still has values', OLD.id, OLD.name);
            END IF;
            RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
        END $$;

        CREATE TRIGGER metric_keep_referenced BEFORE DELETE OR UPDATE OF id ON metrics.metric
            FOR EACH ROW EXECUTE FUNCTION metrics.keep_referenced_metric();
        CREATE TRIGGER metric_no_truncate BEFORE TRUNCATE ON metrics.metric
            FOR EACH STATEMENT EXECUTE FUNCTION metrics.keep_referenced_metric();
    """
    tables = "".join(
        f"""
        ALTER TABLE metrics.{table}
            DROP CONSTRAINT {table}_metric_id_fkey,
            DROP CONSTRAINT {table}_pkey,
            ADD CONSTRAINT {table}_pkey PRIMARY KEY (metric_id, {time}) INCLUDE (value);
        CREATE TRIGGER {table}_metric_ids AFTER INSERT ON metrics.{table}
            REFERENCING NEW TABLE AS new_rows
            FOR EACH STATEMENT EXECUTE FUNCTION metrics.check_metric_ids();
        CREATE TRIGGER {table}_keep_metric_id BEFORE UPDATE OF metric_id ON metrics.{table}
            FOR EACH ROW EXECUTE FUNCTION metrics.keep_metric_id();
        """
        for table, time in VALUE_TABLES
    )
    return functions + tables


MIGRATIONS: Sequence[tuple[int, str, str]] = (
    (
        1,
        "metric catalog, hourly and daily values",
        """
        CREATE TABLE metrics.metric (
            id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name        text NOT NULL UNIQUE CHECK (char_length(name) BETWEEN 1 AND 200),
            description text NOT NULL DEFAULT '',
            unit        text NOT NULL DEFAULT '',
            aggregation text NOT NULL CHECK (aggregation IN ('sum', 'last')),
            source      text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now()
        );

        """
        + _value_tables("hourly_values", "daily_values")
        + """

        CREATE VIEW metrics.hourly_values_by_name AS
        SELECT m.name AS metric,
               v.hour AS time,
               (v.hour AT TIME ZONE 'UTC')::date AS date,
               extract(hour FROM v.hour AT TIME ZONE 'UTC')::integer AS hour,
               v.value
        FROM metrics.hourly_values v
        JOIN metrics.metric m ON m.id = v.metric_id;

        CREATE VIEW metrics.daily_values_by_name AS
        SELECT m.name AS metric, v.day AS date, v.value
        FROM metrics.daily_values v
        JOIN metrics.metric m ON m.id = v.metric_id;
        """,
    ),
    (
        2,
        "aggregation kind `recomputed` for daily values computed from raw data",
        """
        ALTER TABLE metrics.metric DROP CONSTRAINT metric_aggregation_check;
        ALTER TABLE metrics.metric ADD CONSTRAINT metric_aggregation_check
            CHECK (aggregation IN ('sum', 'last', 'recomputed'));
        """,
    ),
    (
        3,
        "KPI values, hourly and daily, and views that include them",
        _value_tables("hourly_kpis", "daily_kpis")
        + """

        CREATE OR REPLACE VIEW metrics.hourly_values_by_name AS
        SELECT m.name AS metric,
               v.hour AS time,
               (v.hour AT TIME ZONE 'UTC')::date AS date,
               extract(hour FROM v.hour AT TIME ZONE 'UTC')::integer AS hour,
               v.value
        FROM (SELECT metric_id, hour, value FROM metrics.hourly_values
              UNION ALL
              SELECT metric_id, hour, value FROM metrics.hourly_kpis) v
        JOIN metrics.metric m ON m.id = v.metric_id;

        CREATE OR REPLACE VIEW metrics.daily_values_by_name AS
        SELECT m.name AS metric, v.day AS date, v.value
        FROM (SELECT metric_id, day, value FROM metrics.daily_values
              UNION ALL
              SELECT metric_id, day, value FROM metrics.daily_kpis) v
        JOIN metrics.metric m ON m.id = v.metric_id;
        """,
    ),
    (
        4,
        "value tables: primary keys that include the value; metric ids checked per statement",
        _statement_level_metric_ids(),
    ),
    (
        5,
        "how a change in the past propagates, per metric",
        """
        ALTER TABLE metrics.metric
            ADD COLUMN propagation text NOT NULL DEFAULT 'own_hour'
                CHECK (propagation IN ('own_hour', 'later_hours'));
        COMMENT ON COLUMN metrics.metric.propagation IS
            'own_hour: a change in the past changes only its own hour; later_hours: that hour and '
            'every later one (cumulative counts, gauges read from a history).';
        """,
    ),
    (
        6,
        "views v2 whose time columns say their zone, with the business day of every hour",
        """
        -- The business time zone the views use, recorded by `metrics-platform migrate` from
        -- METRICS_PLATFORM_BUSINESS_TIMEZONE (UTC until then).
        CREATE TABLE metrics.business_calendar (
            one       boolean PRIMARY KEY DEFAULT true CHECK (one),
            time_zone text NOT NULL DEFAULT 'UTC'
        );
        INSERT INTO metrics.business_calendar DEFAULT VALUES;

        CREATE VIEW metrics.hourly_values_by_name_v2 AS
        SELECT m.name AS metric,
               v.hour AS time_utc,
               (v.hour AT TIME ZONE 'UTC')::date AS date_utc,
               extract(hour FROM v.hour AT TIME ZONE 'UTC')::integer AS hour_utc,
               (v.hour AT TIME ZONE c.time_zone)::date AS business_date,
               extract(hour FROM v.hour AT TIME ZONE c.time_zone)::integer AS business_hour,
               c.time_zone AS business_timezone,
               v.value
        FROM (SELECT metric_id, hour, value FROM metrics.hourly_values
              UNION ALL
              SELECT metric_id, hour, value FROM metrics.hourly_kpis) v
        JOIN metrics.metric m ON m.id = v.metric_id
        CROSS JOIN metrics.business_calendar c;

        CREATE VIEW metrics.daily_values_by_name_v2 AS
        SELECT m.name AS metric,
               v.day AS business_date,
               c.time_zone AS business_timezone,
               (v.day::timestamp AT TIME ZONE c.time_zone) AS start_utc,
               ((v.day + 1)::timestamp AT TIME ZONE c.time_zone) AS end_utc,
               v.value
        FROM (SELECT metric_id, day, value FROM metrics.daily_values
              UNION ALL
              SELECT metric_id, day, value FROM metrics.daily_kpis) v
        JOIN metrics.metric m ON m.id = v.metric_id
        CROSS JOIN metrics.business_calendar c;

        COMMENT ON COLUMN metrics.hourly_values_by_name_v2.time_utc IS
            'start of the hour (timestamptz; shown in the session time zone, UTC for the platform)';
        COMMENT ON COLUMN metrics.hourly_values_by_name_v2.date_utc IS 'UTC date of the hour';
        COMMENT ON COLUMN metrics.hourly_values_by_name_v2.hour_utc IS 'UTC hour of day, 0-23';
        COMMENT ON COLUMN metrics.hourly_values_by_name_v2.business_date IS
            'business day of the hour, in business_timezone (the day of daily_values)';
        COMMENT ON COLUMN metrics.hourly_values_by_name_v2.business_hour IS
            'hour of day in business_timezone, 0-23 (twice the same on the autumn change)';
        COMMENT ON COLUMN metrics.daily_values_by_name_v2.business_date IS
            'business day, in business_timezone';
        COMMENT ON COLUMN metrics.daily_values_by_name_v2.start_utc IS
            'start of the business day (timestamptz)';
        COMMENT ON COLUMN metrics.daily_values_by_name_v2.end_utc IS
            'end of the business day, excluded (timestamptz)';
        -- The first views stay as they are for the dashboards; their comments say the zones.
        COMMENT ON COLUMN metrics.hourly_values_by_name.time IS
            'start of the hour (timestamptz); see hourly_values_by_name_v2';
        COMMENT ON COLUMN metrics.hourly_values_by_name.date IS
            'UTC date of the hour (not the business day: see hourly_values_by_name_v2)';
        COMMENT ON COLUMN metrics.hourly_values_by_name.hour IS 'UTC hour of day, 0-23';
        COMMENT ON COLUMN metrics.daily_values_by_name.date IS
            'business day (METRICS_PLATFORM_BUSINESS_TIMEZONE)';
        """,
    ),
    (
        7,
        "daily values at the business day's start; metric alert episodes",
        """
        -- The business time zone of the daily values (UTC until the platform records it). The
        -- same table as the store's calendar of the views v2: created here only when missing.
        CREATE TABLE IF NOT EXISTS metrics.business_calendar (
            one       boolean PRIMARY KEY DEFAULT true CHECK (one),
            time_zone text NOT NULL DEFAULT 'UTC'
        );
        INSERT INTO metrics.business_calendar DEFAULT VALUES ON CONFLICT DO NOTHING;

        -- Every daily value and daily KPI as a point at its business day's start (a
        -- timestamptz: Europe/Paris days start at 23:00 or 22:00 UTC), for time series.
        CREATE VIEW metrics.daily_series AS
        SELECT m.name AS metric,
               v.day AS date,
               (v.day::timestamp AT TIME ZONE c.time_zone) AS time,
               v.value
        FROM (SELECT metric_id, day, value FROM metrics.daily_values
              UNION ALL
              SELECT metric_id, day, value FROM metrics.daily_kpis) v
        JOIN metrics.metric m ON m.id = v.metric_id
        CROSS JOIN metrics.business_calendar c;
        COMMENT ON COLUMN metrics.daily_series.date IS 'business day';
        COMMENT ON COLUMN metrics.daily_series.time IS
            'start of the business day in the business time zone (timestamptz)';

        -- One row per episode of a metric alert: opened when its rule fires, closed when the
        -- metric is back within its expected range. At most one open episode per rule, so an
        -- alert fires once per episode even when two evaluations race.
        CREATE TABLE metrics.alert_episodes (
            id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            rule           text NOT NULL,
            metric         text NOT NULL,
            grain          text NOT NULL CHECK (grain IN ('hour', 'day')),
            fired_period   timestamptz NOT NULL,
            fired_value    double precision,
            expected_low   double precision,
            expected_high  double precision,
            reason         text NOT NULL,
            last_period    timestamptz NOT NULL,
            last_value     double precision,
            resolved_period timestamptz,
            resolved_value double precision,
            opened_at      timestamptz NOT NULL DEFAULT now(),
            resolved_at    timestamptz,
            CHECK ((resolved_at IS NULL) = (resolved_period IS NULL))
        );
        CREATE UNIQUE INDEX alert_episodes_one_open ON metrics.alert_episodes (rule)
            WHERE resolved_at IS NULL;
        CREATE INDEX alert_episodes_opened ON metrics.alert_episodes (opened_at);
        """,
    ),
    (
        8,
        "raw tables keyed by period first",
        """
        -- A raw table (`raw.<asset>`, created by the IO manager) was keyed by (metric, period):
        -- a window of periods (every write, delete and read of a run) could not use that index
        -- and scanned the whole table, so each hourly run cost a scan of years of history. Its
        -- key is rebuilt as (period, metric), as the IO manager now creates it.
        DO $$
        DECLARE
            keyed record;
        BEGIN
            FOR keyed IN
                SELECT k.conrelid::regclass AS tbl, k.conname, period.attname AS period
                FROM pg_constraint k
                JOIN pg_class t ON t.oid = k.conrelid
                JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = 'raw'
                JOIN pg_attribute metric
                    ON metric.attrelid = k.conrelid AND metric.attnum = k.conkey[1]
                JOIN pg_attribute period
                    ON period.attrelid = k.conrelid AND period.attnum = k.conkey[2]
                WHERE k.contype = 'p' AND cardinality(k.conkey) = 2
                  AND metric.attname = 'metric' AND period.attname IN ('hour', 'day')
            LOOP
                EXECUTE format(
                    'ALTER TABLE %s DROP CONSTRAINT %I, ADD PRIMARY KEY (%I, metric)',
                    keyed.tbl, keyed.conname, keyed.period
                );
            END LOOP;
        END $$;
        """,
    ),
)


def migrate(conn: psycopg2.extensions.connection, *, up_to: int | None = None) -> list[int]:
    """Bring the store's schema up to date (or to version `up_to`); returns the versions
    applied now (often none).

    An up-to-date store is only read (every run calls this, as a writer that may not migrate).
    Migrations run in one transaction that holds `metrics.schema_migrations` in `ACCESS
    EXCLUSIVE` mode, so concurrent callers take turns and see the result once it is committed;
    before applying any, it locks every table and view of the schema the same way, each in
    bounded rounds (`metrics_platform.lib.locks`): a read-only session holding one of them open
    makes the migration fail with an error naming the table and the session, instead of
    stalling it, and every query queued behind it, for as long as it likes.
    """
    wanted = [m for m in MIGRATIONS if up_to is None or m[0] <= up_to]
    with conn, conn.cursor() as cur:
        done = _applied_versions(cur)
    if done is not None and all(version in done for version, _, _ in wanted):
        return []
    with conn, conn.cursor() as cur:
        try:
            cur.execute("SELECT to_regnamespace(%s) IS NOT NULL", (SCHEMA,))
            if not cur.fetchone()[0]:
                create_schema(cur, SCHEMA)
            # Checked first, so that a writer without CREATE on the schema can call `migrate`
            # on an up-to-date store (CREATE TABLE IF NOT EXISTS checks the privilege).
            cur.execute("SELECT to_regclass(%s) IS NULL", (f"{SCHEMA}.schema_migrations",))
            if cur.fetchone()[0]:  # (not read yet: no lock on it before the exclusive one)
                _create_migrations_table(cur)
            cur.execute(
                "SELECT has_table_privilege(%s, 'UPDATE, DELETE, TRUNCATE')",
                (f"{SCHEMA}.schema_migrations",),
            )
            may_migrate = cur.fetchone()[0]
            if may_migrate:
                lock_table(
                    cur, SCHEMA, "schema_migrations", "ACCESS EXCLUSIVE", purpose="migrating"
                )
            else:
                # A writer: wait for a migration in progress, if any, then look again.
                cur.execute(f"LOCK TABLE {SCHEMA}.schema_migrations IN ACCESS SHARE MODE")
        except psycopg2.errors.InsufficientPrivilege as exc:
            raise _needs_the_owner(conn, exc.diag.message_primary) from None
        done = _applied_versions(cur) or set()
        pending = [migration for migration in wanted if migration[0] not in done]
        if pending and not may_migrate:
            raise _needs_the_owner(conn, f"versions {[v for v, _, _ in pending]} are pending")
        if pending:
            for relation in _relations(cur):
                lock_table(cur, SCHEMA, relation, "ACCESS EXCLUSIVE", purpose="migrating: locking")
        applied = []
        for version, description, statements in pending:
            cur.execute(statements)
            cur.execute(
                f"INSERT INTO {SCHEMA}.schema_migrations (version, description) VALUES (%s, %s)",
                (version, description),
            )
            applied.append(version)
    return applied


def _needs_the_owner(conn, cause: str) -> ConfigurationError:
    return ConfigurationError(
        f"the metric store needs migrations, which role {conn.info.user!r} may not apply "
        f"({cause}): run `metrics-platform migrate` as the owner of schema {SCHEMA!r} (or a "
        "role that may create it)"
    )


def _applied_versions(cur) -> set[int] | None:
    """The versions in `schema_migrations`, or None when the store has no such table yet."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.schema_migrations",))
    if not cur.fetchone()[0]:
        return None
    cur.execute(f"SELECT version FROM {SCHEMA}.schema_migrations")
    return {row[0] for row in cur.fetchall()}


def _create_migrations_table(cur) -> None:
    create_once(
        cur,
        f"""CREATE TABLE {SCHEMA}.schema_migrations (
                version integer PRIMARY KEY,
                description text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())""",
    )


def _relations(cur) -> list[str]:
    """The tables and views of the schema that migrations may change: tables first, by name,
    then views (locking a view locks the tables it reads too: those are held by then, so a
    wait for a view is a wait for the view itself)."""
    cur.execute(
        """SELECT relname FROM pg_class
           WHERE relnamespace = to_regnamespace(%s) AND relkind IN ('r', 'p', 'v', 'm', 'f')
             AND relname <> 'schema_migrations'
           ORDER BY relkind = 'v', relname""",
        (SCHEMA,),
    )
    return [row[0] for row in cur.fetchall()]


@dataclass(frozen=True)
class MetricSpec:
    """What the catalog knows of a metric: how it is named, measured and rolled up."""

    name: str
    aggregation: Aggregation
    source: str
    unit: str = ""
    description: str = ""
    propagation: Propagation = "own_hour"

    def __post_init__(self):
        if not self.name or len(self.name) > 200:
            raise ConfigurationError(f"metric name {self.name!r} must be 1 to 200 characters")
        if self.aggregation not in AGGREGATIONS:
            raise ConfigurationError(
                f"metric {self.name!r}: aggregation {self.aggregation!r} is not one of "
                f"{', '.join(AGGREGATIONS)}"
            )
        if self.propagation not in PROPAGATIONS:
            raise ConfigurationError(
                f"metric {self.name!r}: propagation {self.propagation!r} is not one of "
                f"{', '.join(PROPAGATIONS)}"
            )


@dataclass(frozen=True)
class CatalogEntry:
    id: int
    name: str
    aggregation: Aggregation
    source: str
    unit: str
    description: str
    propagation: Propagation = "own_hour"


def ensure_metrics(
    conn: psycopg2.extensions.connection, specs: Iterable[MetricSpec]
) -> dict[str, int]:
    """Get-or-create catalog rows for `specs`; returns their ids by name.

    Safe under concurrency: two transactions creating the same new metric serialize on the unique
    name, and both get the one id. Rows are written in name order so that two batches never
    deadlock. A name already owned by another source is refused.
    """
    by_name = {spec.name: spec for spec in specs}
    if not by_name:
        return {}
    ordered = [by_name[name] for name in sorted(by_name)]
    columns = [
        [spec.name for spec in ordered],
        [spec.description for spec in ordered],
        [spec.unit for spec in ordered],
        [spec.aggregation for spec in ordered],
        [spec.source for spec in ordered],
        [spec.propagation for spec in ordered],
    ]
    with conn, conn.cursor() as cur:
        cur.execute(
            f"""
            INSERT INTO {SCHEMA}.metric AS m
                   (name, description, unit, aggregation, source, propagation)
            SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],
                                 %s::text[])
            ON CONFLICT (name) DO UPDATE
               SET description = EXCLUDED.description,
                   unit = EXCLUDED.unit,
                   aggregation = EXCLUDED.aggregation,
                   propagation = EXCLUDED.propagation,
                   updated_at = now()
             WHERE m.source = EXCLUDED.source
               AND (m.description, m.unit, m.aggregation, m.propagation)
                   IS DISTINCT FROM (EXCLUDED.description, EXCLUDED.unit, EXCLUDED.aggregation,
                                     EXCLUDED.propagation)
            """,
            columns,
        )
        cur.execute(
            f"SELECT id, name, source FROM {SCHEMA}.metric WHERE name = ANY(%s)",
            (columns[0],),
        )
        rows = cur.fetchall()
    clashes = [(name, source) for _, name, source in rows if source != by_name[name].source]
    if clashes:
        name, owner = clashes[0]
        raise ConfigurationError(
            f"metric {name!r} is already produced by source {owner!r}; "
            f"source {by_name[name].source!r} cannot register it too"
        )
    return {name: metric_id for metric_id, name, _ in rows}


def read_catalog(
    conn: psycopg2.extensions.connection,
    ids: Iterable[int] | None = None,
    *,
    source: str | None = None,
) -> Mapping[int, CatalogEntry]:
    """Catalog entries by id (all of them, only `ids`, or only those of `source`)."""
    query = (
        f"SELECT id, name, aggregation, source, unit, description, propagation FROM {SCHEMA}.metric"
    )
    conditions, params = [], []
    if ids is not None:
        conditions.append("id = ANY(%s)")
        params.append(sorted({int(i) for i in ids}))
    if source is not None:
        conditions.append("source = %s")
        params.append(source)
    if conditions:
        query += " WHERE " + " AND ".join(conditions)
    with conn, conn.cursor() as cur:
        cur.execute(query, params)
        return {row[0]: CatalogEntry(*row) for row in cur.fetchall()}
