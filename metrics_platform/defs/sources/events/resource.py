"""The product's event log: per-hour counts and timing percentiles, computed by Postgres."""

from datetime import datetime

import dagster as dg
from psycopg2 import sql
from pydantic import Field, field_validator

from metrics_platform.defs.sources.events import SOURCE, URL_ENV_DEFAULT
from metrics_platform.lib.database import source_cursor
from metrics_platform.lib.errors import (
    ConfigurationError,
)
from metrics_platform.lib.identifiers import QualifiedName, validate_identifier

# Percentiles over the window's timings, grouped by period and event type. `percentile_cont`
# interpolates linearly between the two nearest timings (as numpy's default does).
_STATS = sql.SQL(
    """
    SELECT {period} AS period,
           {type} AS type,
           count(*) AS events,
           {errors} AS errors,
           percentile_cont(%(fractions)s::float8[]) WITHIN GROUP (ORDER BY {duration})
               FILTER (WHERE {duration} IS NOT NULL) AS percentiles
    FROM {table}
    WHERE {occurred_at} >= %(start)s AND {occurred_at} < %(end)s
    GROUP BY 1, 2
    ORDER BY 1, 2
    """
)


_TYPES = sql.SQL(
    """
    SELECT DISTINCT {type} FROM {table}
    WHERE {occurred_at} >= %(start)s AND {occurred_at} < %(end)s
    ORDER BY 1
    """
)


class EventLog(dg.ConfigurableResource):
    """Read-only access to the table where the product records its events."""

    url: str = Field(
        description=f"Postgres URL of the database holding the events ({URL_ENV_DEFAULT})."
    )
    table: str = Field(default="events", description="Events table, optionally `schema.table`.")
    type_column: str = Field(default="type", description="Column with the event type.")
    occurred_at_column: str = Field(
        default="occurred_at", description="Column with the event time."
    )
    duration_column: str | None = Field(
        default="duration_ms", description="Column with the event's duration; none for no timings."
    )
    duration_unit: str = Field(default="ms", description="Unit of the duration column.")
    error_column: str | None = Field(
        default=None, description="Boolean column marking failed events, for error counts."
    )
    percentiles: list[int] = Field(default=[50, 90, 99], description="Latency percentiles.")

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        QualifiedName.parse(value, key="events.table")
        return value

    @field_validator("type_column", "occurred_at_column", "duration_column", "error_column")
    @classmethod
    def _columns(cls, value: str | None, info) -> str | None:
        if value is not None:
            validate_identifier(value, key=f"events.{info.field_name}")
        return value

    @field_validator("percentiles")
    @classmethod
    def _percentiles(cls, value: list[int]) -> list[int]:
        bad = [p for p in value if not 0 < p < 100]
        if bad:
            raise ConfigurationError(f"events.percentiles: {bad[0]} is not between 0 and 100")
        return sorted(set(value))

    def types(self, start: datetime, end: datetime) -> list[object]:
        """The event types with events in [start, end)."""
        query = _TYPES.format(
            type=sql.Identifier(self.type_column),
            table=QualifiedName.parse(self.table, key="events.table").sql(),
            occurred_at=sql.Identifier(self.occurred_at_column),
        )
        with self._cursor() as cur:
            cur.execute(query, {"start": start, "end": end})
            return [row[0] for row in cur.fetchall()]

    def _cursor(self):
        return source_cursor(self.url, source=SOURCE, key="events", doing=f"reading {self.table}")

    def stats(
        self, start: datetime, end: datetime, *, by: str, timezone: str = "UTC"
    ) -> list[tuple]:
        """(period, type, events, errors, [percentiles]) for every type with events in
        [start, end), where period is the UTC hour (`by="hour"`) or the calendar day in
        `timezone` (`by="day"`)."""
        occurred_at = sql.Identifier(self.occurred_at_column)
        if by == "hour":
            period = sql.SQL("date_trunc('hour', {})").format(occurred_at)
        else:
            period = sql.SQL("({} AT TIME ZONE %(timezone)s)::date").format(occurred_at)
        errors = (
            sql.SQL("count(*) FILTER (WHERE {})").format(sql.Identifier(self.error_column))
            if self.error_column
            else sql.SQL("NULL::bigint")
        )
        duration = (
            sql.Identifier(self.duration_column)
            if self.duration_column
            else sql.SQL("NULL::float8")
        )
        query = _STATS.format(
            period=period,
            type=sql.Identifier(self.type_column),
            errors=errors,
            duration=duration,
            table=QualifiedName.parse(self.table, key="events.table").sql(),
            occurred_at=occurred_at,
        )
        params = {
            "start": start,
            "end": end,
            "timezone": timezone,
            "fractions": [p / 100 for p in self.percentiles],
        }
        with self._cursor() as cur:
            cur.execute(query, params)
            return cur.fetchall()
