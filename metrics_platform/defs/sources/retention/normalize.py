"""Pure normalization of users' sign-ups, activity and cohorts' returns into metric rows.

Hourly: `users.signed_up` (counter) and `users.active` (distinct users, recomputed per day).
Daily, per business day: `users.active`, and for the cohort of the users who signed up that
day, `retention.d<N>.users` (of them, those active on day + N) and `retention.d<N>` (their share)
for every N whose day + N has closed; before that a cohort's D<N> is not measured, not a zero.
A day without sign-ups has no cohort: its returns are 0 and its shares do not exist.
"""

from collections.abc import Sequence

from metrics_platform.defs.sources.retention import SOURCE
from metrics_platform.lib.errors import SourceError
from metrics_platform.lib.metric_rows import (
    daily_metric_frame,
    empty_daily_frame,
    empty_metric_frame,
    metric_frame,
)


def normalize_hourly(rows: Sequence[tuple]):
    """(hour, signed up, active) rows -> hourly metric rows."""
    hours, names, values = [], [], []
    for hour, signed_up, active in rows:
        for name, value in (("users.signed_up", signed_up), ("users.active", active)):
            hours.append(hour)
            names.append(name)
            values.append(value)
    return metric_frame(SOURCE, hours, names, values) if names else empty_metric_frame()


def normalize_daily(active: Sequence[tuple], cohorts: Sequence[tuple]):
    """(day, active users) and (cohort day, N, cohort size, returned) rows -> daily rows."""
    days, names, values = [], [], []
    for day, users in active:
        days.append(day)
        names.append("users.active")
        values.append(users)
    for day, n, size, returned in cohorts:
        if returned > size:
            raise SourceError(SOURCE, f"cohort {day}: {returned:g} returned of {size:g} users")
        days.append(day)
        names.append(f"retention.d{n}.users")
        values.append(returned)
        if size:
            days.append(day)
            names.append(f"retention.d{n}")
            values.append(returned / size)
    return daily_metric_frame(SOURCE, days, names, values) if names else empty_daily_frame()
