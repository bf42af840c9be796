"""Every resource key, registered once and wired to its environment variables and settings."""

from __future__ import annotations

import dagster as dg

from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.sources.product_db.resource import CountedTable, ProductDatabase
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV
from metrics_platform.lib.postgres_io import PostgresPandasIOManager
from metrics_platform.lib.settings import load_settings, section


def build_resources(settings: dict | None = None) -> dict[str, object]:
    settings = load_settings() if settings is None else settings
    product_db = section(settings, "product_db")
    return {
        "io_manager": PostgresPandasIOManager(url=dg.EnvVar(DATABASE_URL_ENV)),
        "metric_store": MetricStore(url=dg.EnvVar(DATABASE_URL_ENV)),
        "product_db": ProductDatabase(
            url=dg.EnvVar(PRODUCT_DATABASE_URL_ENV),
            tables=[CountedTable(**table) for table in product_db.get("tables") or []],
        ),
    }
