"""The docs stay true: the "add a new source" walkthrough's code runs as written."""

import re
import sys
from datetime import timezone
from pathlib import Path

import dagster as dg

from metrics_platform import definitions
from metrics_platform.lib.database import DATABASE_URL_ENV, PRODUCT_DATABASE_URL_ENV
from metrics_platform_tests.conftest import RANGE_TAGS, TEST_SETTINGS, execute, query

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_the_add_a_source_walkthrough_works_as_written(
    store_url, product_url, monkeypatch, tmp_path
):
    text = (DOCS / "add-a-source.md").read_text()
    source_code = re.findall(r"```python\n(.*?)```", text, re.DOTALL)[0]
    assert len(source_code.strip().splitlines()) <= 40  # short enough to read in one go
    package = tmp_path / "walkthrough_sources" / "support"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text(source_code)
    monkeypatch.syspath_prepend(str(tmp_path))
    from walkthrough_sources import support  # noqa: PLC0415 - created just above

    monkeypatch.setitem(definitions.SOURCE_BUILDERS, support.SOURCE, support.build_source)
    monkeypatch.setenv(DATABASE_URL_ENV, store_url)
    monkeypatch.setenv(PRODUCT_DATABASE_URL_ENV, product_url)
    execute(product_url, "CREATE TABLE tickets (id serial, opened_at timestamptz NOT NULL)")
    execute(
        product_url,
        "INSERT INTO tickets (opened_at) VALUES "
        "('2026-03-10 05:10+00'), ('2026-03-10 05:50+00'), ('2026-03-10 07:00+00')",
    )
    execute(product_url, "CREATE TABLE users (id serial, created_at timestamptz)")

    settings = {
        "product_db": TEST_SETTINGS["product_db"],
        "support": {},
        "kpis": [
            {
                "name": "kpi.tickets_per_user",
                "formula": "support.tickets.opened / objects.users.count",
            }
        ],
    }
    defs = definitions.build_definitions(settings)
    assert "support_hourly_schedule" in {s.name for s in defs.schedules}
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("hourly_metrics").execute_in_process(
            instance=instance, tags=dict(zip(RANGE_TAGS, ("2026-03-10-04:00", "2026-03-10-08:00")))
        )
    assert result.success
    rows = query(
        store_url,
        "SELECT time, value FROM metrics.hourly_values_by_name "
        "WHERE metric = 'support.tickets.opened' ORDER BY time",
    )
    assert [(t.astimezone(timezone.utc).hour, v) for t, v in rows] == [(5, 2.0), (7, 1.0)]
    sys.modules.pop("walkthrough_sources.support", None)
    sys.modules.pop("walkthrough_sources", None)
