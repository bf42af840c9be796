"""The product's users and their activity: sign-ups, active users, cohorts' returns."""

from datetime import date, datetime

import dagster as dg
from psycopg2 import sql
from pydantic import Field, field_validator

from metrics_platform.defs.sources.retention import SOURCE, URL_ENV_DEFAULT
from metrics_platform.lib.database import source_cursor
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.identifiers import QualifiedName, validate_identifier

# The latest retention day: cohorts are re-read until their last one is final (MAX_DAY + 1 days).
MAX_DAY = 30

# Per UTC hour: users who signed up, and distinct users with any activity.
_HOURLY = sql.SQL(
    """
    SELECT hour, sum(signed_up)::float8, sum(active)::float8 FROM (
        SELECT date_trunc('hour', {signed_up_at} AT TIME ZONE 'UTC') AS hour,
               count(*) AS signed_up, 0 AS active
        FROM {users}
        WHERE {signed_up_at} >= %(start)s AND {signed_up_at} < %(end)s
        GROUP BY 1
        UNION ALL
        SELECT date_trunc('hour', {active_at} AT TIME ZONE 'UTC'), 0, count(DISTINCT {user})
        FROM {activity}
        WHERE {active_at} >= %(start)s AND {active_at} < %(end)s
        GROUP BY 1
    ) counts
    GROUP BY hour
    ORDER BY hour
    """
)

# Per business day of [start, end): distinct active users; and per cohort (the users who signed
# up that day) and N of `days`: the cohort's size and how many were active on day + N, for the
# N whose day + N has closed (before `today`).
_DAILY_ACTIVE = sql.SQL(
    """
    SELECT ({active_at} AT TIME ZONE %(timezone)s)::date AS day, count(DISTINCT {user})::float8
    FROM {activity}
    WHERE {active_at} >= %(start)s AND {active_at} < %(end)s
    GROUP BY 1
    ORDER BY 1
    """
)
_COHORTS = sql.SQL(
    """
    WITH cohort AS (
        SELECT {id} AS user_id, ({signed_up_at} AT TIME ZONE %(timezone)s)::date AS day
        FROM {users}
        WHERE {signed_up_at} >= %(start)s AND {signed_up_at} < %(end)s
    ), returns AS (
        SELECT DISTINCT a.{user} AS user_id, (a.{active_at} AT TIME ZONE %(timezone)s)::date AS day
        FROM {activity} a
        WHERE a.{active_at} >= %(start)s AND a.{active_at} < %(activity_end)s
          AND a.{user} IN (SELECT user_id FROM cohort)
    )
    SELECT c.day, n.n, count(*)::float8 AS cohort, count(r.user_id)::float8 AS returned
    FROM cohort c
    CROSS JOIN unnest(%(days)s::int[]) AS n(n)
    LEFT JOIN returns r ON r.user_id = c.user_id AND r.day = c.day + n.n
    WHERE c.day + n.n < %(today)s
    GROUP BY c.day, n.n
    ORDER BY c.day, n.n
    """
)


class UserActivity(dg.ConfigurableResource):
    """Read-only access to the product's users (sign-up time) and their activity."""

    url: str = Field(description=f"Postgres URL of the product database ({URL_ENV_DEFAULT}).")
    users_table: str = Field(default="users", description="Users, optionally `schema.table`.")
    id_column: str = Field(default="id", description="The users' id column.")
    signed_up_at_column: str = Field(default="created_at", description="When a user signed up.")
    activity_table: str = Field(
        default="events", description="Activity by user (e.g. the event log), `schema.table`."
    )
    user_column: str = Field(default="user_id", description="The activity's user id column.")
    occurred_at_column: str = Field(default="occurred_at", description="When the activity was.")
    days: list[int] = Field(default=[1, 7, 30], description="Retention days (D1, D7, D30).")

    @field_validator("users_table", "activity_table")
    @classmethod
    def _tables(cls, value: str, info) -> str:
        QualifiedName.parse(value, key=f"retention.{info.field_name}")
        return value

    @field_validator("id_column", "signed_up_at_column", "user_column", "occurred_at_column")
    @classmethod
    def _columns(cls, value: str, info) -> str:
        return validate_identifier(value, key=f"retention.{info.field_name}")

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        bad = [
            d
            for d in value
            if isinstance(d, bool) or not isinstance(d, int) or not 0 < d <= MAX_DAY
        ]
        if bad or not value:
            raise ConfigurationError(
                f"retention.days: {bad[0] if bad else value!r} is not a day from 1 to {MAX_DAY}"
            )
        return sorted(set(value))

    def _names(self) -> dict[str, sql.Composable]:
        return {
            "users": QualifiedName.parse(self.users_table, key="retention.users_table").sql(),
            "activity": QualifiedName.parse(
                self.activity_table, key="retention.activity_table"
            ).sql(),
            "id": sql.Identifier(self.id_column),
            "signed_up_at": sql.Identifier(self.signed_up_at_column),
            "user": sql.Identifier(self.user_column),
            "active_at": sql.Identifier(self.occurred_at_column),
        }

    def _read(self, query: sql.Composed, params: dict, doing: str) -> list[tuple]:
        with source_cursor(self.url, source=SOURCE, key="retention", doing=doing) as cur:
            cur.execute(query, params)
            return cur.fetchall()

    def hourly(self, start: datetime, end: datetime) -> list[tuple]:
        """(hour, signed up, active users) of every UTC hour of [start, end) with any."""
        query = _HOURLY.format(**self._names())
        return self._read(query, {"start": start, "end": end}, f"reading {self.activity_table}")

    def daily_active(self, start: datetime, end: datetime, timezone: str) -> list[tuple]:
        query = _DAILY_ACTIVE.format(**self._names())
        params = {"start": start, "end": end, "timezone": timezone}
        return self._read(query, params, f"reading {self.activity_table}")

    def cohorts(
        self, start: datetime, end: datetime, timezone: str, today: date, activity_end: datetime
    ) -> list[tuple]:
        """(cohort day, N, cohort size, returned on day + N) for the users who signed up in
        [start, end), for every N of `days` whose day has closed before `today`."""
        query = _COHORTS.format(**self._names())
        params = {
            "start": start,
            "end": end,
            "timezone": timezone,
            "days": self.days,
            "today": today,
            "activity_end": activity_end,
        }
        return self._read(query, params, f"reading {self.users_table} and {self.activity_table}")
