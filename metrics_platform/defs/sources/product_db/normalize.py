"""Pure normalization of product-database row counts into metric rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import pandas as pd

from metrics_platform.defs.sources.product_db import SOURCE
from metrics_platform.lib.errors import SourceError
from metrics_platform.lib.metric_rows import empty_metric_frame, metric_frame


def normalize_row_counts(counts: Mapping[str, Sequence[tuple[datetime, int]]]) -> pd.DataFrame:
    """{metric name: [(hour, rows at its end), ...]} -> long metric rows.

    A count must be a non-negative whole number; anything else is the source's fault.
    """
    hours, names, values = [], [], []
    for name, series in counts.items():
        for hour, rows in series:
            if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
                raise SourceError(SOURCE, f"{name}: {rows!r} at {hour} is not a row count")
            hours.append(hour)
            names.append(name)
            values.append(rows)
    if not names:
        return empty_metric_frame()
    return metric_frame(SOURCE, hours, names, values)
