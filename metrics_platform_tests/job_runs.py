"""Running the platform's own jobs, built from given settings, against the test databases."""

import dagster as dg

from metrics_platform.definitions import build_definitions
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV
from metrics_platform_tests.conftest import RANGE_TAGS


def run_job(
    settings: dict,
    store_url: str,
    product_url: str,
    first: str,
    last: str,
    monkeypatch,
    *,
    job: str = "hourly_metrics",
    instance: dg.DagsterInstance | None = None,
    env: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """`job` of the definitions built from `settings` over the partitions first..last (one
    run), with the store and the product database of the test (and `env`); failures are
    returned."""
    env = {PRODUCT_DATABASE_URL_ENV: product_url, **(env or {})}
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    defs = build_definitions(settings, env=env)
    tags = dict(zip(RANGE_TAGS, (first, last)))
    if instance is not None:
        return defs.resolve_job_def(job).execute_in_process(
            instance=instance, tags=tags, raise_on_error=False
        )
    with dg.instance_for_test() as fresh:
        return defs.resolve_job_def(job).execute_in_process(
            instance=fresh, tags=tags, raise_on_error=False
        )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    """The first step failure's message."""
    return result.get_step_failure_events()[0].event_specific_data.error.message
