"""Declarative KPIs: the pirate metrics (acquisition, activation, retention and the rates between
them) defined in the settings as formulas over other metrics, materialized hourly and daily.

Hourly KPIs are computed from each hour's values, daily KPIs from each day's values (so a daily
rate is a ratio of daily totals, never an average of hourly rates). Both are metrics of the
catalog (source `kpi`), stored in `metrics.hourly_kpis` / `metrics.daily_kpis` and visible in
the `*_by_name` views next to every other metric.
"""

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import pandas as pd

from metrics_platform.defs.automation.conditions import (
    FOLLOW_ANY_SOURCE,
    WHEN_THE_DAY_IS_COMPLETE,
)
from metrics_platform.defs.metadata import value_table_metadata
from metrics_platform.defs.metric_store import MetricStore
from metrics_platform.defs.metrics.assets import (
    DAILY_VALUES_KEY,
    GROUP,
    HOURLY_VALUES_KEY,
)
from metrics_platform.defs.partitions import (
    daily_partitions,
    hourly_partitions,
    single_run,
)
from metrics_platform.defs.sources.registry import metric_names_overlap
from metrics_platform.lib.chunks import piece_hours, sub_windows
from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.formulas import Formula
from metrics_platform.lib.metric_rows import validate_metric_name
from metrics_platform.lib.postgres_io.pieces import (
    StoredWindow,
    as_stored_window,
    output_in_pieces,
)
from metrics_platform.lib.store import MetricSpec

SOURCE = "kpi"
HOURLY_KPIS_KEY = dg.AssetKey(["metrics", "hourly_kpis"])
DAILY_KPIS_KEY = dg.AssetKey(["metrics", "daily_kpis"])
WITHIN_BOUNDS = "kpis_within_bounds"
WITHIN_BOUNDS_DESCRIPTION = "Every KPI with declared bounds stays within them."


@dataclass(frozen=True)
class Kpi:
    name: str
    formula: Formula
    unit: str = ""
    description: str = ""
    bounds: tuple[float, float] | None = None

    @property
    def spec(self) -> MetricSpec:
        text = self.description or f"KPI: {self.formula.text}"
        return MetricSpec(self.name, "recomputed", SOURCE, self.unit, text)


def parse_kpis(section: Sequence[Mapping], known_metrics: Sequence[str]) -> list[Kpi]:
    """KPIs from the `kpis` settings; every metric a formula uses must be one a configured
    source can produce (`known_metrics` holds names and glob patterns such as `events.*`)."""
    if not isinstance(section, list):
        raise ConfigurationError("kpis: expected a list of KPI definitions")
    kpis: list[Kpi] = []
    for index, entry in enumerate(section):
        key = f"kpis[{index}]"
        if not isinstance(entry, Mapping):
            raise ConfigurationError(f"{key}: expected a mapping with name and formula")
        unknown_keys = set(entry) - {"name", "formula", "unit", "description", "bounds"}
        if unknown_keys:
            raise ConfigurationError(f"{key}: unknown setting(s) {', '.join(sorted(unknown_keys))}")
        name = validate_metric_name(entry.get("name"), key=f"{key}.name")
        clash = next((m for m in known_metrics if metric_names_overlap(name, m)), None)
        if clash is not None:
            raise ConfigurationError(
                f"{key}.name: {name!r} is a metric a configured source produces ({clash!r}); "
                "a KPI needs a name of its own"
            )
        formula = Formula.parse(entry.get("formula"), key=f"{key}.formula")
        for metric in formula.metrics:
            if not any(fnmatch.fnmatchcase(metric, pattern) for pattern in known_metrics):
                raise ConfigurationError(
                    f"{key}.formula: no configured source produces the metric {metric!r}"
                )
        bounds = entry.get("bounds")
        if bounds is not None:
            if (
                not isinstance(bounds, list)
                or len(bounds) != 2
                or not all(isinstance(b, (int, float)) for b in bounds)
                or bounds[0] > bounds[1]
            ):
                raise ConfigurationError(f"{key}.bounds: expected [low, high], got {bounds!r}")
            bounds = (float(bounds[0]), float(bounds[1]))
        kpis.append(
            Kpi(
                name, formula, str(entry.get("unit", "")), str(entry.get("description", "")), bounds
            )
        )
    names = [kpi.name for kpi in kpis]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ConfigurationError(
                f"kpis[{index}].name: {name!r} is the name of kpis[{names.index(name)}] too"
            )
    return kpis


def compute_kpis(values: pd.DataFrame, period: str, kpis: Sequence[Kpi]) -> pd.DataFrame:
    """(period, metric, value) rows -> (period, metric, value) rows of every KPI, leaving out
    periods where a KPI is undefined (missing operand, division by zero)."""
    if values.empty or not kpis:
        return pd.DataFrame(
            {
                period: pd.Series([], dtype=values[period].dtype if period in values else object),
                "metric": pd.Series([], dtype=object),
                "value": pd.Series([], dtype="float64"),
            }
        )
    wide = values.pivot(index=period, columns="metric", values="value")
    parts = []
    for kpi in kpis:
        result = kpi.formula.evaluate(wide).dropna()
        parts.append(
            pd.DataFrame({period: result.index, "metric": kpi.name, "value": result.values})
        )
    return pd.concat(parts, ignore_index=True)


def _operand_names(kpis: Sequence[Kpi], metric_store: MetricStore) -> dict[int, str]:
    """The catalog ids of the metrics the KPIs' formulas use, with their names: only their
    rows are read (a window of every metric would be read for a few columns)."""
    used = sorted({metric for kpi in kpis for metric in kpi.formula.metrics})
    return {i: name for name, i in metric_store.metric_ids(used).items()}


def _named(rows: pd.DataFrame, period: str, names: Mapping[int, str]) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame({period: [], "metric": [], "value": []})
    return rows.assign(metric=rows["metric_id"].map(names))


def _with_ids(frame: pd.DataFrame, period: str, ids: Mapping[str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "metric_id": frame["metric"].map(ids).astype("int64"),
            period: frame[period],
            "value": frame["value"].astype("float64"),
        }
    )


def _outside_bounds(kpis: Sequence[Kpi], frame: pd.DataFrame, outside: dict) -> None:
    """Add to `outside` (KPI name -> [values outside its bounds, first such value]) what these
    rows hold."""
    for kpi in kpis:
        if kpi.bounds is None:
            continue
        values = frame.loc[frame["metric"] == kpi.name, "value"]
        bad = values[(values < kpi.bounds[0]) | (values > kpi.bounds[1])]
        if len(bad):
            seen = outside.setdefault(kpi.name, [0, float(bad.iloc[0])])
            seen[0] += len(bad)


def _describe_outside(kpis: Sequence[Kpi], outside: Mapping[str, list]) -> str:
    bounds = {kpi.name: kpi.bounds for kpi in kpis}
    return (
        "\n".join(
            f"{name}: {count} value(s) outside {list(bounds[name])}, e.g. {example:g}"
            for name, (count, example) in outside.items()
        )
        or "none"
    )


def _kpi_asset(
    kpis: Sequence[Kpi],
    *,
    key: dg.AssetKey,
    values_key: dg.AssetKey,
    partitions_def: dg.TimeWindowPartitionsDefinition,
    period: str,
    automation_condition: dg.AutomationCondition,
    description: str,
) -> dg.AssetsDefinition:
    """A KPI asset: the KPIs of each partition, computed from that `period`'s values in
    `values_key`, with the bounds check."""

    @dg.asset(
        key=key,
        description=description,
        group_name=GROUP,
        kinds={"postgres", "pandas"},
        ins={"values": dg.AssetIn(key=values_key, dagster_type=StoredWindow)},
        partitions_def=partitions_def,
        backfill_policy=single_run,
        metadata=value_table_metadata(period),
        automation_condition=automation_condition,
        check_specs=[
            dg.AssetCheckSpec(WITHIN_BOUNDS, asset=key, description=WITHIN_BOUNDS_DESCRIPTION)
        ],
    )
    def kpi_asset(
        context: dg.AssetExecutionContext, metric_store: MetricStore, values: StoredWindow
    ):
        window = context.partition_time_window
        start, end = window.start, window.end
        ids = metric_store.register_metrics([kpi.spec for kpi in kpis])
        if period == "day":
            stored = as_stored_window(values, period, start.date(), end.date())
        else:
            stored = as_stored_window(values, period, start, end)
        names = _operand_names(kpis, metric_store)
        rows = {"rows_in": 0, "rows_out": 0}
        outside: dict[str, list] = {}

        def piece(first: datetime, last: datetime) -> pd.DataFrame:
            if period == "day":
                first, last = first.date(), last.date()
            loaded = stored.read(first, last, where={"metric_id": list(names)})
            operands = _named(loaded, period, names)
            result = compute_kpis(operands[[period, "metric", "value"]], period, kpis)
            rows["rows_in"] += len(loaded)
            rows["rows_out"] += len(result)
            _outside_bounds(kpis, result, outside)
            return _with_ids(result, period, ids)

        def metadata() -> dict[str, dg.MetadataValue]:
            return {
                "kpis": dg.MetadataValue.int(len(kpis)),
                **{name: dg.MetadataValue.int(n) for name, n in rows.items()},
            }

        window_metadata = {
            "window_start": dg.MetadataValue.timestamp(start),
            "window_end": dg.MetadataValue.timestamp(end),
        }
        # A long range: one piece in memory at a time.
        pieces = sub_windows(start, end, piece_hours(metric_store.metric_count()))
        yield output_in_pieces(pieces, piece, metadata, window_metadata, days=period == "day")
        yield dg.AssetCheckResult(
            check_name=WITHIN_BOUNDS,
            passed=not outside,
            metadata={"outside": dg.MetadataValue.text(_describe_outside(kpis, outside))},
        )

    return kpi_asset


def build_kpi_assets(kpis: Sequence[Kpi]) -> list[dg.AssetsDefinition]:
    """Hourly and daily KPI assets for the configured KPIs."""
    return [
        _kpi_asset(
            kpis,
            key=HOURLY_KPIS_KEY,
            values_key=HOURLY_VALUES_KEY,
            partitions_def=hourly_partitions,
            period="hour",
            automation_condition=FOLLOW_ANY_SOURCE,
            description="The KPIs of every UTC hour, computed from that hour's values "
            "(`metrics.hourly_kpis`).",
        ),
        _kpi_asset(
            kpis,
            key=DAILY_KPIS_KEY,
            values_key=DAILY_VALUES_KEY,
            partitions_def=daily_partitions,
            period="day",
            automation_condition=WHEN_THE_DAY_IS_COMPLETE,
            description="The KPIs of every business day, computed from that day's values "
            "(`metrics.daily_kpis`).",
        ),
    ]
