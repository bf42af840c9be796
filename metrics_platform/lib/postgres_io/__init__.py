"""A partition-exact Postgres IO manager built like Dagster's own database IO managers:
a DB client (`PostgresDbClient`) and a pandas type handler on top of Dagster's `DbIOManager`."""

from metrics_platform.lib.postgres_io.client import PostgresDbClient
from metrics_platform.lib.postgres_io.io_manager import PostgresPandasIOManager
from metrics_platform.lib.postgres_io.pandas_type_handler import (
    PostgresPandasTypeHandler,
)

__all__ = ["PostgresDbClient", "PostgresPandasIOManager", "PostgresPandasTypeHandler"]
