"""The normalized (hour, metric, value) shape: well-formed rows pass, anything else is refused."""

from datetime import datetime, timezone

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from metrics_platform.lib.errors import SourceError
from metrics_platform.lib.metric_rows import metric_frame, metric_frame_from_records

HOUR = datetime(2026, 3, 10, 5, tzinfo=timezone.utc)


def test_records_flatten_to_long_rows():
    frame = metric_frame_from_records("s", [({"hour": HOUR}, {"a": 1, "b": 2.5})])
    assert frame[["metric", "value"]].values.tolist() == [["a", 1.0], ["b", 2.5]]
    assert isinstance(frame["hour"].dtype, pd.DatetimeTZDtype)


@pytest.mark.parametrize(
    "hour, name, value, cause",
    [
        (HOUR, "a", float("nan"), "non-finite"),
        (HOUR, "a", float("inf"), "non-finite"),
        (HOUR.replace(minute=30), "a", 1.0, "not on the hour"),
        (HOUR, "bad name", 1.0, "invalid metric name"),
        (HOUR, "a", "twelve", "do not fit"),
        (None, "a", 1.0, "no hour"),
    ],
)
def test_malformed_rows_name_the_source_and_the_cause(hour, name, value, cause):
    with pytest.raises(SourceError, match=f"source 'ga4'.*{cause}"):
        metric_frame("ga4", [hour], [name], [value])


def test_a_metric_reported_twice_for_an_hour_is_refused():
    with pytest.raises(SourceError, match="reported twice"):
        metric_frame("s", [HOUR, HOUR], ["a", "a"], [1.0, 2.0])


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-5, 5), st.floats(), st.text(max_size=3)),
            st.one_of(st.text(max_size=5), st.integers()),
        ),
        max_size=6,
    )
)
def test_anything_either_fits_or_raises_the_projects_error(rows):
    try:
        metric_frame("fuzz", [HOUR] * len(rows), [n for _, n in rows], [v for v, _ in rows])
    except SourceError:
        pass
