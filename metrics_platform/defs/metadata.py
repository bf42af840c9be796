"""Metadata every partitioned materialization records."""

from datetime import datetime

import dagster as dg


def window_metadata(start: datetime, end: datetime, **counts: int) -> dict[str, dg.MetadataValue]:
    """The window a materialization covered, and its counters (rows read, written...)."""
    return {
        "window_start": dg.MetadataValue.timestamp(start),
        "window_end": dg.MetadataValue.timestamp(end),
        **{name: dg.MetadataValue.int(int(value)) for name, value in counts.items()},
    }
