"""Dagster definitions: partitions, resources, one folder per source, and the metric assets."""
