"""The demo's user activity, for the retention source: a `user_activity` table (user id, time)
in the demo product database, generated from its users.

Every user is active when signing up; on each later day, a user returns with a probability that
decays with the days since sign-up (about 45% the next day, 25% a week later, 12% a month later),
at a random time of the day, never after `now`. The draws are deterministic; seeding an already
seeded database changes nothing.

    seed_user_activity(url, now=now)   # after seed_product_database(url, now=now, ...)
"""

from __future__ import annotations

from datetime import datetime

from metrics_platform.lib.database import connect

ACTIVITY_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS user_activity (
    user_id     bigint NOT NULL REFERENCES users (id),
    occurred_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS user_activity_occurred_at ON user_activity (occurred_at);
CREATE INDEX IF NOT EXISTS user_activity_user ON user_activity (user_id, occurred_at);
"""

# Draws are hashes of (user, day): independent of each other and of the query plan.
ACTIVITY_ROWS_SQL = """
INSERT INTO user_activity (user_id, occurred_at)
SELECT id, created_at FROM users WHERE created_at < %(now)s;
INSERT INTO user_activity (user_id, occurred_at)
SELECT user_id, at
FROM (
    SELECT u.id AS user_id,
           u.created_at + d * interval '1 day'
               + ((abs(hashtext(u.id || '/' || d)) %% 28800) - 14400) * interval '1 second' AS at,
           (abs(hashtext(u.id || ':' || d)) %% 100000) / 100000.0 AS draw,
           d
    FROM users u, generate_series(1, 60) AS d
) AS days
WHERE at < %(now)s AND draw < 0.08 + 0.37 / sqrt(d);
"""


def seed_user_activity(url: str, *, now: datetime) -> bool:
    """Create and fill `user_activity` from the seeded `users`; False when it held data."""
    conn = connect(url, application_name="metrics_platform demo seed")
    try:
        with conn, conn.cursor() as cur:
            cur.execute(ACTIVITY_SCHEMA_SQL)
            cur.execute("SELECT EXISTS (SELECT 1 FROM user_activity)")
            if cur.fetchone()[0]:
                return False
            cur.execute(ACTIVITY_ROWS_SQL, {"now": now})
            return True
    finally:
        conn.close()
