"""Crawler (worker, "spider") status of the product: how many exist, are busy and are idle."""

from collections.abc import Mapping

import dagster as dg

from metrics_platform.defs.sources.registry import SourceDefinition, build_resource

SOURCE = "crawlers"
URL_ENV_DEFAULT = "METRICS_PLATFORM_PRODUCT_DATABASE_URL"


def build_source(section: Mapping, env: Mapping[str, str]) -> SourceDefinition:
    from metrics_platform.defs.sources.crawlers.assets import crawler_status
    from metrics_platform.defs.sources.crawlers.normalize import METRICS
    from metrics_platform.defs.sources.crawlers.resource import CrawlerRegistry

    if not section:
        return SourceDefinition(
            SOURCE,
            crawler_status,
            disabled_reason="no `crawlers` section in the settings file",
            metrics=METRICS,
        )
    settings = dict(section)
    url_env = settings.pop("url_env", URL_ENV_DEFAULT)
    resource = build_resource("crawlers", CrawlerRegistry, url=dg.EnvVar(url_env), **settings)
    reason = None if env.get(url_env) else f"{url_env} is not set"
    return SourceDefinition(
        SOURCE,
        crawler_status,
        {"crawler_registry": resource},
        reason,
        metrics=METRICS,
        cumulative=True,
    )
