"""Metrics from a Prometheus server: PromQL queries evaluated at the end of every UTC hour."""

import re
from collections.abc import Mapping

import dagster as dg
from pydantic import ValidationError

from metrics_platform.defs.sources.registry import SourceDefinition
from metrics_platform.lib.errors import ConfigurationError

SOURCE = "prometheus"
URL_ENV = "METRICS_PLATFORM_PROMETHEUS_URL"
TOKEN_ENV = "METRICS_PLATFORM_PROMETHEUS_TOKEN"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Bounds of each request, as the resource's fields of the same name.
_LIMITS = ("timeout", "deadline_seconds", "max_response_bytes")
_SETTINGS = ("url_env", "queries", *_LIMITS)


def build_source(section: Mapping, env: Mapping[str, str]) -> SourceDefinition:
    from metrics_platform.defs.sources.prometheus.assets import prometheus_series
    from metrics_platform.defs.sources.prometheus.resource import (
        Prometheus,
        load_queries,
    )

    unknown = sorted(str(key) for key in section if key not in _SETTINGS)
    if unknown:
        raise ConfigurationError(
            f"prometheus.{unknown[0]}: unknown setting (expected {', '.join(_SETTINGS)})"
        )
    url_env = section.get("url_env") or URL_ENV
    if not isinstance(url_env, str) or not _ENV_NAME.fullmatch(url_env):
        raise ConfigurationError(
            f"prometheus.url_env: {url_env!r} is not an environment variable name"
        )
    queries = load_queries(section.get("queries"))
    reason = None
    if not queries:
        reason = "no queries listed under `prometheus.queries` in the settings file"
    elif not env.get(url_env):
        reason = f"{url_env} is not set"
    limits = {key: section[key] for key in _LIMITS if section.get(key) is not None}
    try:
        resource = Prometheus(
            base_url=dg.EnvVar(url_env),
            queries=queries,
            token=dg.EnvVar(TOKEN_ENV) if env.get(TOKEN_ENV) else None,
            **limits,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"])
        raise ConfigurationError(f"prometheus.{key}: {error['msg']}") from None
    return SourceDefinition(SOURCE, prometheus_series, {"prometheus": resource}, reason)
