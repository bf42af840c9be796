"""Pure normalization of crawler status counts into `spider.total`, `spider.active`, `spider.idle`."""

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from metrics_platform.defs.sources.crawlers import SOURCE
from metrics_platform.lib.errors import SourceError
from metrics_platform.lib.metric_rows import metric_frame_from_records

METRICS = ("spider.total", "spider.active", "spider.idle")


def normalize_status(rows: Sequence[tuple[datetime, int, int]]) -> pd.DataFrame:
    """(hour, total, active) -> long rows of total, active and idle crawlers per hour."""
    records = []
    for hour, total, active in rows:
        if not (isinstance(total, int) and isinstance(active, int) and 0 <= active <= total):
            raise SourceError(SOURCE, f"impossible counts at {hour}: {active} active of {total}")
        records.append(({"hour": hour}, dict(zip(METRICS, (total, active, total - active)))))
    return metric_frame_from_records(SOURCE, records)
