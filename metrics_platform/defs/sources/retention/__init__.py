"""Retention of sign-up cohorts: of the users who signed up on a business day, how many are
active again N days later (D1, D7, D30), and the active users of each hour and day, from the
product database (users' sign-up time and a table of user activity)."""

from collections.abc import Mapping

import dagster as dg

from metrics_platform.defs.sources.registry import SourceDefinition, build_resource

SOURCE = "retention"
URL_ENV_DEFAULT = "METRICS_PLATFORM_PRODUCT_DATABASE_URL"
HOURLY_METRICS = ["users.signed_up", "users.active"]


def build_source(section: Mapping, env: Mapping[str, str]) -> SourceDefinition:
    from metrics_platform.defs.sources.retention.assets import retention_cohorts, user_activity
    from metrics_platform.defs.sources.retention.resource import UserActivity

    metrics = [*HOURLY_METRICS, "retention.*"]
    if not section:
        return SourceDefinition(
            SOURCE,
            user_activity,
            disabled_reason="no `retention` section in the settings file",
            daily_assets=[retention_cohorts],
            metrics=metrics,
        )
    settings = dict(section)
    url_env = settings.pop("url_env", URL_ENV_DEFAULT)
    resource = build_resource("retention", UserActivity, url=dg.EnvVar(url_env), **settings)
    reason = None if env.get(url_env) else f"{url_env} is not set"
    return SourceDefinition(
        SOURCE,
        user_activity,
        {"product_users": resource},
        reason,
        daily_assets=[retention_cohorts],
        metrics=metrics,
        expected=HOURLY_METRICS,
    )
