"""`crawlers.model: snapshots`: crawlers that report a JSON list of their workers now and then.

Each crawler writes a row to one status table: its id, the time, and a JSON (or JSONB) column
holding the list of its workers, each a JSON object whose stage key (`stage` by default) names
what it is working on. At the end of each UTC hour, each crawler's latest snapshot strictly
before it counts if it is at most `max_age_minutes` old (30 by default; a snapshot exactly that
old still counts): its workers are `spider.total`, those with a stage (not missing, null or
empty) `spider.active`, the others `spider.idle`. A crawler that stopped reporting drops out
once its latest snapshot is older than that; an empty list counts 0 workers. A snapshot that
is not a list of objects (a JSON object, a scalar, null) fails the read, naming the crawler and
the time, rather than counting as nothing.

A snapshot written exactly at 05:00 belongs to the hour 05:00-06:00 and counts at 06:00, as a
status change does in the history model: every row counts from the end of its own hour on. A
late snapshot therefore changes the hour ends within its age after it: its own hour's only,
while the age is at most an hour; later hours too beyond that (`propagation`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from psycopg2 import sql
from pydantic import Field, field_validator

from metrics_platform.defs.sources.crawlers import SOURCE
from metrics_platform.defs.sources.crawlers.resource import CrawlerStatus, check_json_column
from metrics_platform.lib.errors import SourceError
from metrics_platform.lib.identifiers import QualifiedName, validate_identifier

# Only a crawler's last snapshot of each UTC hour can be its latest before an hour end: the
# window's rows are first reduced to those (one sort), and each is walked over the hour ends
# it holds for: after it, until the next one or until it is too old. Its JSON is read once.
# Cost: rows of the window + crawlers x hours. Measured on 2 busy cores: a year of 12 crawlers
# reporting every minute (6.3 million rows, 0-4 workers each) is one query of 17-21 s, mostly
# the sort; one hour of it, 20-30 ms. Two snapshots of one crawler at the same instant have no order of their
# own: the one stored later in the table counts, so a reading is repeatable.
_WORKERS_AT_HOUR_ENDS = sql.SQL(
    """
    WITH hours AS (
        SELECT generate_series(%(start)s::timestamptz + interval '1 hour', %(end)s::timestamptz,
                               interval '1 hour') AS hour_end
    ), last_of_hour AS (
        SELECT DISTINCT ON ({crawler}, date_trunc('hour', {reported_at}, 'UTC'))
               {crawler} AS crawler, {reported_at} AS reported_at, {workers}::jsonb AS workers
        FROM {status_table}
        WHERE {reported_at} >= %(start)s::timestamptz + interval '1 hour' - %(max_age)s
          AND {reported_at} < %(end)s
        ORDER BY {crawler}, date_trunc('hour', {reported_at}, 'UTC'), {reported_at} DESC,
                 ctid DESC
    ), held AS (
        SELECT crawler, reported_at, workers,
               least(lead(reported_at) OVER (PARTITION BY crawler ORDER BY reported_at),
                     reported_at + %(max_age)s, %(end)s::timestamptz) AS held_until
        FROM last_of_hour
    ), counted AS (
        SELECT crawler, reported_at, held_until,
               coalesce(jsonb_typeof(workers), 'SQL NULL') AS kind,
               CASE WHEN jsonb_typeof(workers) = 'array'
                    THEN jsonb_array_length(workers) ELSE 0 END AS workers,
               CASE WHEN jsonb_typeof(workers) = 'array'
                    THEN (SELECT count(*) FROM jsonb_array_elements(workers) AS w
                          WHERE coalesce(w ->> %(stage_key)s, '') <> '') ELSE 0 END AS active,
               CASE WHEN jsonb_typeof(workers) = 'array'
                    THEN (SELECT count(*) FROM jsonb_array_elements(workers) AS w
                          WHERE jsonb_typeof(w) <> 'object') ELSE 0 END AS not_objects
        FROM held
        WHERE held_until >= date_trunc('hour', reported_at, 'UTC') + interval '1 hour'
    ), at_hour_ends AS (
        SELECT hour_end, c.*
        FROM counted c,
             generate_series(
                 greatest(date_trunc('hour', c.reported_at, 'UTC') + interval '1 hour',
                          %(start)s::timestamptz + interval '1 hour'),
                 c.held_until,
                 interval '1 hour') AS hour_end
    )
    SELECT h.hour_end - interval '1 hour' AS hour,
           coalesce(sum(a.workers), 0)::bigint AS total,
           coalesce(sum(a.active), 0)::bigint AS active,
           (array_agg(ARRAY[a.crawler::text,
                            to_char(a.reported_at AT TIME ZONE 'UTC',
                                    'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                            a.kind, a.not_objects::text]
                      ORDER BY a.reported_at, a.crawler::text)
                FILTER (WHERE a.kind <> 'array' OR a.not_objects > 0))[1:1] AS malformed
    FROM hours h
    LEFT JOIN at_hour_ends a ON a.hour_end = h.hour_end
    GROUP BY h.hour_end
    ORDER BY h.hour_end
    """
)

_KINDS = {"object": "a JSON object", "SQL NULL": "SQL NULL", "null": "JSON null"}


class CrawlerSnapshots(CrawlerStatus):
    """`model: snapshots`: each crawler's status snapshots, a JSON list of its workers each."""

    counted: ClassVar[str] = "workers"
    status_table: str = Field(
        default="spider_status", description="Snapshots, one row per crawler report."
    )
    crawler_column: str = Field(default="spider_id", description="Crawler id of the snapshot.")
    workers_column: str = Field(
        default="attributes", description="json/jsonb column: the list of the crawler's workers."
    )
    reported_at_column: str = Field(default="created_at", description="Time of the snapshot.")
    stage_key: str = Field(
        default="stage", description="Key of a worker's stage; missing, null or empty = idle."
    )
    max_age_minutes: int = Field(
        default=30,
        ge=1,
        le=7 * 24 * 60,
        description="Oldest snapshot that still counts at an hour's end, in minutes.",
    )

    @field_validator("status_table")
    @classmethod
    def _table(cls, value: str) -> str:
        QualifiedName.parse(value, key="crawlers.status_table")
        return value

    @field_validator("crawler_column", "workers_column", "reported_at_column")
    @classmethod
    def _columns(cls, value: str, info) -> str:
        return validate_identifier(value, key=f"crawlers.{info.field_name}")

    @field_validator("stage_key")
    @classmethod
    def _stage_key(cls, value: str) -> str:
        if not value or len(value) > 200:
            raise ValueError("the stage key must be 1 to 200 characters")
        return value

    @property
    def propagation(self) -> str:
        # A snapshot holds for the hour ends within its age after it.
        return "later_hours" if self.max_age_minutes > 60 else "own_hour"

    def status_counts(self, start: datetime, end: datetime) -> list[tuple[datetime, int, int]]:
        """(hour, workers, workers with a stage) at the end of every hour of [start, end)."""
        table = QualifiedName.parse(self.status_table, key="crawlers.status_table")
        query = _WORKERS_AT_HOUR_ENDS.format(
            crawler=sql.Identifier(self.crawler_column),
            reported_at=sql.Identifier(self.reported_at_column),
            workers=sql.Identifier(self.workers_column),
            status_table=table.sql(),
        )
        params = {
            "start": start,
            "end": end,
            "max_age": timedelta(minutes=self.max_age_minutes),
            "stage_key": self.stage_key,
        }
        with self._cursor() as cur:
            check_json_column(
                cur,
                table,
                self.workers_column,
                json=True,
                key="workers_column",
                remedy="not json or jsonb (a list of workers per snapshot)",
            )
            cur.execute(query, params)
            rows = cur.fetchall()
        for _, _, _, malformed in rows:
            if malformed:
                raise SourceError(SOURCE, self._describe(malformed[0]))
        return [(hour, total, active) for hour, total, active, _ in rows]

    def _describe(self, malformed: list[str]) -> str:
        crawler, at, kind, not_objects = malformed
        where = f"crawlers.workers_column: the snapshot of crawler {crawler} at {at}"
        if kind != "array":
            what = _KINDS.get(kind, f"a JSON {kind}")
            return f"{where} is {what}, not a list of workers"
        return f"{where} lists {not_objects} worker(s) that are not JSON objects"
