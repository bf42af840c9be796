"""Row counts of the product's own database tables (users, profiles, API keys...)."""

from collections.abc import Mapping

import dagster as dg

from metrics_platform.defs.sources.registry import SourceDefinition, build_resource
from metrics_platform.lib.database import PRODUCT_DATABASE_URL_ENV
from metrics_platform.lib.errors import ConfigurationError

SOURCE = "product_db"


def build_source(section: Mapping, env: Mapping[str, str]) -> SourceDefinition:
    from metrics_platform.defs.sources.product_db.assets import product_db_row_counts
    from metrics_platform.defs.sources.product_db.resource import (
        CountedTable,
        ProductDatabase,
    )
    from metrics_platform.defs.sources.product_db.sensors import product_db_late_rows

    unknown = sorted(set(section) - {"tables"})
    if unknown:
        raise ConfigurationError(f"product_db.{unknown[0]}: unknown setting")
    entries = section.get("tables") or []
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise ConfigurationError("product_db.tables: expected a list of tables (mappings)")
    tables = [
        build_resource(f"product_db.tables[{i}]", CountedTable, **entry)
        for i, entry in enumerate(entries)
    ]
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
        cumulative=True,
    )
