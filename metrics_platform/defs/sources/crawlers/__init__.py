"""Crawler (worker, "spider") status of the product: how many exist, are busy and are idle.

`crawlers.model` says how the product keeps its crawlers' status: `history` (a crawlers table
and a history of stage changes, `resource.py`) or `snapshots` (status rows listing each
crawler's workers as JSON, `snapshots.py`). Each model has its own settings; a key of the other
model is refused.
"""

from collections.abc import Mapping

import dagster as dg

from metrics_platform.defs.sources.registry import SourceDefinition, build_resource
from metrics_platform.lib.errors import ConfigurationError

SOURCE = "crawlers"
URL_ENV_DEFAULT = "METRICS_PLATFORM_PRODUCT_DATABASE_URL"
MODELS = ("history", "snapshots")


def build_source(section: Mapping, env: Mapping[str, str]) -> SourceDefinition:
    from metrics_platform.defs.sources.crawlers.assets import crawler_status
    from metrics_platform.defs.sources.crawlers.normalize import METRICS
    from metrics_platform.defs.sources.crawlers.resource import CrawlerRegistry
    from metrics_platform.defs.sources.crawlers.snapshots import CrawlerSnapshots

    if not section:
        return SourceDefinition(
            SOURCE,
            crawler_status,
            disabled_reason="no `crawlers` section in the settings file",
            metrics=METRICS,
        )
    settings = dict(section)
    model = settings.pop("model", "history")
    if model not in MODELS:
        raise ConfigurationError(f"crawlers.model: {model!r} is not one of {', '.join(MODELS)}")
    url_env = settings.pop("url_env", URL_ENV_DEFAULT)
    if "url" in settings:
        raise ConfigurationError("crawlers.url: unknown setting (name its variable in url_env)")
    cls = CrawlerSnapshots if model == "snapshots" else CrawlerRegistry
    resource = build_resource(
        "crawlers", cls, hint=f"for `model: {model}`", url=dg.EnvVar(url_env), **settings
    )
    reason = None if env.get(url_env) else f"{url_env} is not set"
    return SourceDefinition(
        SOURCE,
        crawler_status,
        {"crawler_registry": resource},
        reason,
        metrics=METRICS,
        cumulative=resource.propagation == "later_hours",
    )
