"""Row counts of the product's own database tables (users, profiles, API keys...)."""

from collections.abc import Mapping

import dagster as dg

from metrics_platform.defs.sources.registry import SourceDefinition
from metrics_platform.lib.database import PRODUCT_DATABASE_URL_ENV

SOURCE = "product_db"


def build_source(section: Mapping, env: Mapping[str, str]) -> SourceDefinition:
    from metrics_platform.defs.sources.product_db.assets import product_db_row_counts
    from metrics_platform.defs.sources.product_db.resource import (
        CountedTable,
        ProductDatabase,
    )
    from metrics_platform.defs.sources.product_db.sensors import product_db_late_rows

    tables = [CountedTable(**table) for table in section.get("tables") or []]
    reason = None
    if not tables:
        reason = "no tables listed under `product_db.tables` in the settings file"
    elif not env.get(PRODUCT_DATABASE_URL_ENV):
        reason = f"{PRODUCT_DATABASE_URL_ENV} is not set"
    resource = ProductDatabase(url=dg.EnvVar(PRODUCT_DATABASE_URL_ENV), tables=tables)
    return SourceDefinition(
        SOURCE,
        product_db_row_counts,
        {"product_db": resource},
        reason,
        metrics=[table.metric_name for table in tables],
        expected=[t.metric_name for t in tables if t.created_at_column],
        sensors=[product_db_late_rows],
    )
