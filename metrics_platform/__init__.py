"""Hourly and daily business metrics in Postgres, built as Dagster assets."""

__version__ = "0.1.0"
