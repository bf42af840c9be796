"""The product's crawler tables, in either of the two shapes products keep them in.

`crawlers.model` chooses the shape:

- `history` (the default): two tables, the crawlers themselves (id, creation time, optional
  deletion time) and a history of status changes (crawler id, current stage, time of the
  change). A crawler whose latest change before the end of the hour names a stage is active (it
  is working on that stage); one with no stage, or no change yet, is idle. The counts are of
  crawlers. Read by `CrawlerRegistry`, below.
- `snapshots`: one table of status snapshots, each crawler writing a row now and then whose
  JSON column lists its workers. Read by `CrawlerSnapshots` (`snapshots.py`); the counts are
  of workers.

Both count what holds at each UTC hour's end from the rows strictly before it: a change or a
snapshot written exactly at 05:00 belongs to the hour 05:00-06:00, so it counts at 06:00, not
at 05:00. Both read a whole window in one query whose cost grows with rows + hours.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import dagster as dg
import psycopg2.extensions
from psycopg2 import sql
from pydantic import Field, field_validator

from metrics_platform.defs.sources.crawlers import SOURCE, URL_ENV_DEFAULT
from metrics_platform.lib.database import source_cursor
from metrics_platform.lib.errors import SourceError
from metrics_platform.lib.identifiers import QualifiedName, validate_identifier

# Each status interval [valid_from, valid_to) is walked once, generating the hour ends it covers
# (valid_from < hour_end <= valid_to: the latest change strictly before the hour end holds), so
# the cost grows with changes + hours, not changes x hours: a year of a busy history takes a
# fraction of a second where a range join of hours with intervals took ten (`benchmarks/`).
_STATUS_AT_HOUR_ENDS = sql.SQL(
    """
    WITH hours AS (
        SELECT generate_series(%(start)s::timestamptz + interval '1 hour', %(end)s::timestamptz,
                               interval '1 hour') AS hour_end
    ), states AS (
        SELECT {status_crawler} AS crawler_id,
               coalesce({stage}::text <> '', false) AS active,
               {changed_at} AS valid_from,
               lead({changed_at}) OVER (PARTITION BY {status_crawler} ORDER BY {changed_at}) AS valid_to
        FROM {status_table}
        WHERE {changed_at} < %(end)s
    ), active_at AS (
        SELECT s.crawler_id, hour_end
        FROM states s,
             generate_series(
                 greatest(date_trunc('hour', s.valid_from, 'UTC') + interval '1 hour',
                          %(start)s::timestamptz + interval '1 hour'),
                 least(coalesce(s.valid_to, %(end)s::timestamptz), %(end)s::timestamptz),
                 interval '1 hour') AS hour_end
        WHERE s.active AND (s.valid_to IS NULL OR s.valid_to > %(start)s)
    ), alive AS (
        SELECT h.hour_end, c.id
        FROM hours h
        JOIN (SELECT {id} AS id, {created_at} AS created_at, {deleted_at} AS deleted_at
              FROM {crawlers_table}) AS c
          ON c.created_at < h.hour_end AND (c.deleted_at IS NULL OR c.deleted_at >= h.hour_end)
    )
    SELECT h.hour_end - interval '1 hour' AS hour,
           count(a.id) AS total,
           count(x.crawler_id) AS active
    FROM hours h
    LEFT JOIN alive a ON a.hour_end = h.hour_end
    LEFT JOIN active_at x ON x.crawler_id = a.id AND x.hour_end = h.hour_end
    GROUP BY h.hour_end
    ORDER BY h.hour_end
    """
)

_TABLE_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"
_COLUMN_TYPE = """
    SELECT format_type(a.atttypid, a.atttypmod)
    FROM pg_attribute a
    WHERE a.attrelid = to_regclass(%s) AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped
"""
JSON_TYPES = ("json", "jsonb")


def check_json_column(
    cur: psycopg2.extensions.cursor,
    table: QualifiedName,
    column: str,
    *,
    json: bool,
    key: str,
    remedy: str,
) -> None:
    """Check at run time that the configured column exists and is (`json=True`) or is not a
    json/jsonb column; a `SourceError` names the setting `crawlers.<key>` and says `remedy`."""
    quoted = ".".join(f'"{part}"' for part in (table.schema, table.name) if part is not None)
    cur.execute(_TABLE_EXISTS, (quoted,))
    if not cur.fetchone()[0]:
        raise SourceError(SOURCE, f"crawlers.status_table: table {table} does not exist")
    cur.execute(_COLUMN_TYPE, (quoted, column))
    row = cur.fetchone()
    if row is None:
        raise SourceError(SOURCE, f"crawlers.{key}: table {table} has no column {column!r}")
    if (row[0] in JSON_TYPES) != json:
        raise SourceError(
            SOURCE, f"crawlers.{key}: column {column!r} of {table} is {row[0]}, {remedy}"
        )


class CrawlerStatus(dg.ConfigurableResource):
    """What the crawler-status asset reads: crawlers (or their workers) existing and active at
    the end of every hour. One subclass per `crawlers.model`."""

    # What the counts count, and how far a late row reaches (see `late_data.py`).
    counted: ClassVar[str] = "crawlers"
    url: str = Field(description=f"Postgres URL of the product database ({URL_ENV_DEFAULT}).")

    @property
    def propagation(self) -> str:
        return "later_hours"

    def status_counts(self, start: datetime, end: datetime) -> list[tuple[datetime, int, int]]:
        """(hour, total, active) at the end of every hour of [start, end)."""
        raise NotImplementedError

    def _cursor(self):
        return source_cursor(
            self.url, source=SOURCE, key="crawlers", doing="reading crawler status"
        )


class CrawlerRegistry(CrawlerStatus):
    """`model: history`: the product's crawlers table and the history of their status changes."""

    crawlers_table: str = Field(default="spiders", description="Table of crawlers.")
    id_column: str = Field(default="id", description="Crawler id column.")
    created_at_column: str = Field(default="created_at", description="Crawler creation time.")
    deleted_at_column: str | None = Field(
        default=None, description="Crawler deletion time, if any."
    )
    status_table: str = Field(default="spider_status", description="History of status changes.")
    status_crawler_column: str = Field(
        default="spider_id", description="Crawler id in the history."
    )
    stage_column: str = Field(default="stage", description="Current stage; empty or null = idle.")
    changed_at_column: str = Field(default="changed_at", description="Time of the status change.")

    @field_validator("crawlers_table", "status_table")
    @classmethod
    def _tables(cls, value: str, info) -> str:
        QualifiedName.parse(value, key=f"crawlers.{info.field_name}")
        return value

    @field_validator(
        "id_column",
        "created_at_column",
        "deleted_at_column",
        "status_crawler_column",
        "stage_column",
        "changed_at_column",
    )
    @classmethod
    def _columns(cls, value: str | None, info) -> str | None:
        if value is not None:
            validate_identifier(value, key=f"crawlers.{info.field_name}")
        return value

    def status_counts(self, start: datetime, end: datetime) -> list[tuple[datetime, int, int]]:
        """(hour, crawlers existing, crawlers active) at the end of every hour of [start, end)."""
        ident = sql.Identifier
        status_table = QualifiedName.parse(self.status_table, key="crawlers.status_table")
        query = _STATUS_AT_HOUR_ENDS.format(
            status_crawler=ident(self.status_crawler_column),
            stage=ident(self.stage_column),
            changed_at=ident(self.changed_at_column),
            status_table=status_table.sql(),
            id=ident(self.id_column),
            created_at=ident(self.created_at_column),
            deleted_at=ident(self.deleted_at_column)
            if self.deleted_at_column
            else sql.SQL("NULL::timestamptz"),
            crawlers_table=QualifiedName.parse(
                self.crawlers_table, key="crawlers.crawlers_table"
            ).sql(),
        )
        with self._cursor() as cur:
            check_json_column(
                cur,
                status_table,
                self.stage_column,
                json=False,
                key="stage_column",
                remedy="not a stage name: a JSON list of workers per snapshot is read with "
                "`model: snapshots` (see the README's crawlers settings)",
            )
            cur.execute(query, {"start": start, "end": end})
            return cur.fetchall()
