"""The Postgres IO manager resource: Dagster's `DbIOManager` with the Postgres client and the
pandas type handler.

An asset's table is `<schema>.<table>` from its key (`["metrics", "hourly_values"]` is
`metrics.hourly_values`); a partitioned asset names its partition column with the
`partition_expr` definition metadata, and may name a `primary_key` for a table the IO manager
creates. Writing a partition, or a range of partitions in one run, replaces exactly that
half-open window in one transaction; loading returns exactly the requested window.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import dagster as dg
import pandas as pd
from dagster._core.storage.db_io_manager import DbIOManager
from pydantic import Field, PrivateAttr

from metrics_platform.lib.database import connect
from metrics_platform.lib.postgres_io.client import PostgresDbClient
from metrics_platform.lib.postgres_io.pandas_type_handler import (
    PostgresPandasTypeHandler,
)
from metrics_platform.lib.store import migrate


class PostgresPandasIOManager(dg.ConfigurableIOManagerFactory):
    """Stores pandas DataFrames in Postgres tables named after their asset keys."""

    url: str = Field(
        description="Postgres URL, postgresql+psycopg2://user:password@host:port/dbname."
    )
    migrate_store: bool = Field(
        default=True,
        description="Bring the metric store schema up to date when a run starts.",
    )

    _clients: list[PostgresDbClient] = PrivateAttr(default_factory=list)

    def create_io_manager(self, context) -> DbIOManager:
        if self.migrate_store:
            conn = connect(self.url, application_name="metrics_platform migrate")
            try:
                migrate(conn)
            finally:
                conn.close()
        client = PostgresDbClient(self.url)
        self._clients.append(client)
        return DbIOManager(
            type_handlers=[PostgresPandasTypeHandler(client.snapshots)],
            db_client=client,
            database=urlsplit(self.url).path.lstrip("/") or "postgres",
            io_manager_name="PostgresPandasIOManager",
            default_load_type=pd.DataFrame,
        )

    def teardown_after_execution(self, context) -> None:
        # A step that failed after loading its inputs leaves its snapshot open: end it.
        for client in self._clients:
            client.snapshots.release_all()
