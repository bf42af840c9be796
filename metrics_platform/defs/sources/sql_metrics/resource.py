"""The SQL metrics' settings, and the read-only databases their queries run on.

Each entry of `sql_metrics.queries` is one query and the metric(s) it makes:

- `metric`: the name, or a template over the query's label columns (`orders.{plan}`);
- `query`: one SELECT returning `(hour, [label columns...], value)` for the hours of the window
  it is given as bound parameters: `%(start)s` and `%(end)s` (UTC `timestamptz`, half-open:
  `>= %(start)s AND < %(end)s`), and `%(timezone)s`, the business time zone. A literal `%` is
  written `%%`. The hour is a `timestamptz` on the hour (`date_trunc('hour', paid_at)`);
- `aggregation`: `sum` (a count or amount per hour), `last` (a gauge at the hour's end) or
  `recomputed` (distinct counts: the day's value is not made of its hours) with a `daily_query`
  returning `(day, [labels...], value)` for the business days of its window, given the same
  parameters (the window's start and end are the business days' midnights, in UTC);
- `unit`, `description`: shown in the catalog and the dashboards;
- `propagation`: `own_hour` (default) or `later_hours` for a cumulative query (rows that
  existed at the hour's end): a late row then changes every later hour too;
- `zero_when_empty`: whether an hour (or day) the query returned nothing for is 0 for each metric of the
  query already in the catalog; by default only for `sum`;
- `url_env`, `statement_timeout_seconds`: the environment variable holding the database URL
  (default `sql_metrics.url_env`, itself by default the product database's) and the query's
  time limit (default `sql_metrics.statement_timeout_seconds`, 60).

Every query runs in a read-only transaction, wrapped as a subquery (so that it is one
statement), with its statement timeout. Use a role that can only read, too.
"""

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import dagster as dg
import psycopg2.errors
from pydantic import Field, field_validator, model_validator

from metrics_platform.defs.partitions import BUSINESS_TIMEZONE
from metrics_platform.defs.sources.registry import build_resource
from metrics_platform.defs.sources.sql_metrics import SOURCE
from metrics_platform.lib.database import PRODUCT_DATABASE_URL_ENV, source_cursor
from metrics_platform.lib.errors import ConfigurationError, SourceError
from metrics_platform.lib.templates import template_fields

PARAMETERS = ("start", "end", "timezone")
DEFAULT_TIMEOUT_SECONDS = 60.0
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `%%`, `%(name)s`, or a `%` that is neither.
_PERCENT = re.compile(r"%(%|\(([^)]*)\)([A-Za-z]?)|)")


def check_placeholders(text: str) -> str:
    """The query, refusing a placeholder it is not given or a stray `%` (psycopg2 would fail
    on it at run time with a bare KeyError or IndexError)."""
    used = set()
    for match in _PERCENT.finditer(text):
        percent, name, conversion = match.groups()
        if percent == "%":
            continue
        if name is None:
            raise ValueError("a literal % must be written %%")
        if name not in PARAMETERS or conversion != "s":
            raise ValueError(
                f"unknown placeholder {match.group(0)!r}; the query is given "
                + ", ".join(f"%({p})s" for p in PARAMETERS)
            )
        used.add(name)
    missing = [p for p in ("start", "end") if p not in used]
    if missing:
        raise ValueError(
            f"the query does not use %({missing[0]})s: it must read only its window, "
            ">= %(start)s AND < %(end)s"
        )
    return text


class SqlQuery(dg.Config):
    """One SQL metric (or a family of them, one per label value)."""

    metric: str = Field(
        description="Metric name, or a template over label columns: `orders.{plan}`."
    )
    query: str = Field(description="SELECT (hour, [labels...], value) for %(start)s..%(end)s.")
    aggregation: Literal["sum", "last", "recomputed"] = Field(
        description="`sum` per hour, `last` at the hour's end, `recomputed` per day by `daily_query`."
    )
    daily_query: str | None = Field(
        default=None,
        description="For `recomputed`: SELECT (day, [labels...], value) per business day.",
    )
    unit: str = Field(default="", description="Unit of the values, e.g. `EUR`.")
    description: str = Field(default="", description="What the metric measures.")
    propagation: Literal["own_hour", "later_hours"] = Field(
        default="own_hour", description="`later_hours` for a cumulative query."
    )
    zero_when_empty: bool | None = Field(
        default=None, description="0 for a known metric in a period without rows (default: sum)."
    )
    url_env: str = Field(
        default=PRODUCT_DATABASE_URL_ENV, description="Env var of the database URL."
    )
    statement_timeout_seconds: float = Field(
        default=DEFAULT_TIMEOUT_SECONDS, gt=0, le=3600, description="Time limit of the query."
    )
    url: str = Field(default="", repr=False, description="The database URL (from `url_env`).")

    @field_validator("metric")
    @classmethod
    def _template(cls, value: str) -> str:
        template_fields(value)
        return value

    @field_validator("query", "daily_query")
    @classmethod
    def _query(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip(";").rstrip()
        if not value:
            raise ValueError("the query is empty")
        return check_placeholders(value)

    @field_validator("url_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not _ENV_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _daily_query_for_recomputed(self):
        if self.aggregation == "recomputed" and self.daily_query is None:
            raise ValueError("a `recomputed` metric needs a daily_query (its value per day)")
        if self.aggregation != "recomputed" and self.daily_query is not None:
            raise ValueError("only a `recomputed` metric has a daily_query")
        return self

    @property
    def zeros(self) -> bool:
        """Whether a known metric of this query is 0 in a period it returned nothing for."""
        if self.zero_when_empty is None:
            return self.aggregation == "sum"
        return self.zero_when_empty


def load_queries(section: Mapping) -> list[SqlQuery]:
    """The `sql_metrics.queries` settings, each checked; an error names the offending key."""
    entries = section.get("queries")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ConfigurationError(f"{SOURCE}.queries: must be a list of queries")
    defaults = {
        key: section[key] for key in ("url_env", "statement_timeout_seconds") if key in section
    }
    queries = []
    for index, entry in enumerate(entries):
        key = f"{SOURCE}.queries[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"{key}: must be a mapping with metric, query and aggregation")
        missing = [name for name in ("metric", "query", "aggregation") if name not in entry]
        if missing:
            raise ConfigurationError(f"{key}.{missing[0]}: missing")
        if "url" in entry:
            raise ConfigurationError(f"{key}.url: unknown setting (name its variable in url_env)")
        settings = {**defaults, **entry}
        url_env = settings.get("url_env", PRODUCT_DATABASE_URL_ENV)
        queries.append(build_resource(key, SqlQuery, url=dg.EnvVar(str(url_env)), **settings))
    names = [q.metric for q in queries]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigurationError(f"{SOURCE}.queries: metric {twice[0]!r} is defined twice")
    return queries


class SqlMetricQueries(dg.ConfigurableResource):
    """The SQL metrics' queries, each run read-only on its database."""

    queries: list[SqlQuery] = Field(default_factory=list, description="The SQL metrics.")

    def read(
        self, query: SqlQuery, start: datetime, end: datetime, *, daily: bool = False
    ) -> tuple[list[str], list[tuple]]:
        """(column names, rows) of the query (or its daily query) for the window [start, end)."""
        text = query.daily_query if daily else query.query
        # A subquery is one statement: a `;` inside is a syntax error, not a second statement.
        wrapped = f"SELECT * FROM (\n{text}\n) AS sql_metric"
        params = {"start": start, "end": end, "timezone": BUSINESS_TIMEZONE}
        which = f"metric {query.metric!r}" + (" (daily_query)" if daily else "")
        with source_cursor(query.url, source=SOURCE, key=query.url_env, doing=which) as cur:
            cur.execute(
                "SET LOCAL statement_timeout = %s", (int(query.statement_timeout_seconds * 1000),)
            )
            try:
                cur.execute(wrapped, params)
            except psycopg2.errors.QueryCanceled:
                raise SourceError(
                    SOURCE,
                    f"{which}: the query ran longer than its statement timeout of "
                    f"{query.statement_timeout_seconds:g} s (statement_timeout_seconds)",
                ) from None
            return [column.name for column in cur.description], cur.fetchall()
