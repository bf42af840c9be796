"""Plain Python helpers with no Dagster definitions: the metric store, the Postgres IO manager,
the embedded database and the demo data."""
