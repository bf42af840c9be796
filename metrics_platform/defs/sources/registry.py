"""Which sources the platform knows, what each hands to the code location, and how a disabled
source is shown.

Each source package exposes `build_source(settings_section, env) -> SourceDefinition`, and its
`SOURCE` name is its section of the settings file. The built-in sources live under
`metrics_platform/defs/sources/`; any installed package can add one without editing the
platform, through an entry point of the group `metrics_platform.sources` named after its
settings section (`support = "support_metrics:build_source"`, see docs/add-a-source.md).
`source_builders()` returns both; a plug-in cannot take a built-in source's name.

A source whose settings or credentials are missing is still shown in the UI, in its group, as a
non-materializable asset whose description starts with "Disabled:" and the reason; it is left
out of the hourly values' inputs, so nothing waits for it and nothing fails because of it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points

import dagster as dg
import pydantic

from metrics_platform.lib.errors import ConfigurationError

DISABLED_TAG = "metrics_platform/source_status"
# The platform's own metrics (completeness of hours and days): no source or KPI may take them.
PLATFORM_METRICS = "platform.*"
ENTRY_POINT_GROUP = "metrics_platform.sources"
_SECTION_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class SourceDefinition:
    """A source's raw hourly asset, the daily assets it computes from raw data (if any), the
    resources they need, why it is disabled (None when enabled), and the metrics it produces."""

    name: str
    asset: dg.AssetsDefinition
    resources: Mapping[str, object] = field(default_factory=dict)
    disabled_reason: str | None = None
    daily_assets: Sequence[dg.AssetsDefinition] = ()
    # The metric names it can produce: exact names, or glob patterns (`events.*`) for families
    # whose members come from the data. KPI formulas and completeness checks rely on them.
    metrics: Sequence[str] = ()
    # The metrics every hour must have (exact names); by default its exact `metrics`.
    expected: Sequence[str] | None = None
    # Sensors that start this source's runs when its data changes (run only when enabled).
    sensors: Sequence[dg.SensorDefinition] = ()
    # Whether its values are cumulative (`later_hours`): a change in a past hour changes every
    # later hour too, so a re-run of a past window is followed by its later hours.
    cumulative: bool = False

    @property
    def expected_metrics(self) -> list[str]:
        if self.expected is not None:
            return list(self.expected)
        return [m for m in self.metrics if not any(c in m for c in "*?[")]

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None

    @property
    def key(self) -> dg.AssetKey:
        return self.asset.key

    @property
    def daily_keys(self) -> list[dg.AssetKey]:
        return [asset.key for asset in self.daily_assets]

    def for_definitions(self) -> list[dg.AssetsDefinition | dg.AssetSpec]:
        """The assets themselves, or disabled stand-ins that tell the UI why."""
        assets = [self.asset, *self.daily_assets]
        if self.enabled:
            return assets
        return [self._disabled(asset) for asset in assets]

    def _disabled(self, asset: dg.AssetsDefinition) -> dg.AssetSpec:
        spec = asset.specs_by_key[asset.key]
        return dg.AssetSpec(
            key=spec.key,
            group_name=spec.group_name,
            kinds=spec.kinds,
            description=f"Disabled: {self.disabled_reason}. {spec.description or ''}".strip(),
            metadata={"disabled_reason": self.disabled_reason},
            tags={DISABLED_TAG: "disabled"},
        )


def refuse_unknown(key: str, settings: Iterable, known: Sequence[str], *, hint: str = "") -> None:
    """A `ConfigurationError` for the first key of `settings` not in `known`, listing them."""
    unknown = sorted(str(name) for name in settings if name not in known)
    if unknown:
        raise ConfigurationError(
            f"{key}.{unknown[0]}: unknown setting{' ' + hint if hint else ''} "
            f"(expected {', '.join(known)})"
        )


def build_resource(key: str, cls: type, *, hint: str = "", **settings):
    """`cls(**settings)`, with a settings error naming its key (`events.percentiles: ...`).

    Unknown keys are refused too: a typo must not silently turn a setting off. The message
    lists the known ones (`hint` says for what, e.g. a model of the source).
    """
    # `url` is the platform's to give (from the source's `url_env`), never a setting.
    given = [name for name in settings if name != "url"]
    refuse_unknown(key, given, sorted(set(cls.model_fields) - {"url"}), hint=hint)
    try:
        return cls(**settings)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = "".join(f".{part}" for part in error["loc"])
        cause = error.get("ctx", {}).get("error") or error["msg"]
        raise ConfigurationError(f"{key}{where}: {cause}") from None


def metric_names_overlap(a: str, b: str) -> bool:
    """Whether two metric names, either of which may be a glob family (`events.*`), can name
    the same metric."""
    return a == b or fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a)


def check_metric_owners(sources: Sequence[SourceDefinition]) -> None:
    """Refuse two sources that can produce the same metric: the catalog gives a name to one
    source only, so the second would fail at run time instead."""
    owned = [("the platform", PLATFORM_METRICS)]  # completeness (defs/metrics/assets.py)
    owned += [(source.name, metric) for source in sources for metric in source.metrics]
    for index, (owner, metric) in enumerate(owned):
        for other, other_metric in owned[index + 1 :]:
            if other != owner and metric_names_overlap(metric, other_metric):
                if owner == "the platform":
                    raise ConfigurationError(
                        f"{other}: the metric {other_metric!r} would take a name of the "
                        "platform's own (platform.*, completeness): rename it"
                    )
                what = (
                    f"the metric {metric!r}"
                    if metric == other_metric
                    else f"the same metrics ({owner}: {metric!r}, {other}: {other_metric!r})"
                )
                raise ConfigurationError(
                    f"{owner}, {other}: both sources produce {what}; a metric belongs to one "
                    "source: rename it in one of the two sections"
                )


Builder = Callable[[Mapping, Mapping[str, str]], SourceDefinition]


def builtin_builders() -> dict[str, Builder]:
    """The platform's own sources, by settings section."""
    from metrics_platform.defs.sources import (
        crawlers,
        events,
        ga4,
        product_db,
        prometheus,
        retention,
        sql_metrics,
    )

    return {
        package.SOURCE: package.build_source
        for package in (product_db, crawlers, events, ga4, prometheus, sql_metrics, retention)
    }


def source_builders() -> dict[str, Builder]:
    """Every source the platform knows, by settings section: the built-in ones, then those that
    installed packages register under the entry point group `metrics_platform.sources`."""
    builders = builtin_builders()
    plugins: dict[str, tuple[str, Builder]] = {}
    for point in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: (p.name, p.value)):
        where = _describe(point)
        if point.name in builders:
            raise ConfigurationError(
                f"{where}: {point.name!r} is a built-in source; give the entry point (and the "
                "source's settings section) another name"
            )
        if not _SECTION_NAME.fullmatch(point.name):
            raise ConfigurationError(
                f"{where}: the name must be a settings section (lower-case letters, digits, '_')"
            )
        if point.name in plugins:
            if plugins[point.name][0] == point.value:  # one package seen twice on the path
                continue
            raise ConfigurationError(
                f"{where}: {plugins[point.name][0]!r} registers {point.name!r} too; "
                "two packages cannot both provide one source"
            )
        plugins[point.name] = (point.value, _checked(point.name, where, _load(point, where)))
    return {**builders, **{name: build for name, (_, build) in sorted(plugins.items())}}


def _describe(point: EntryPoint) -> str:
    package = f" of {point.dist.name}" if point.dist is not None else ""
    return f"plug-in source {point.name!r} ({point.value}{package})"


def _load(point: EntryPoint, where: str) -> Callable:
    try:
        build = point.load()
    except Exception as exc:  # the plug-in's own import error, whatever it is
        raise ConfigurationError(
            f"{where}: cannot be loaded: {type(exc).__name__}: {exc}"
        ) from None
    if not callable(build):
        raise ConfigurationError(f"{where}: is not a build_source(section, env) function")
    return build


def _checked(name: str, where: str, build: Callable) -> Builder:
    def build_plugin(section: Mapping, env: Mapping[str, str]) -> SourceDefinition:
        source = build(section, env)
        if not isinstance(source, SourceDefinition):
            raise ConfigurationError(
                f"{where}: build_source returned {type(source).__name__}, not a SourceDefinition"
            )
        if source.name != name:
            raise ConfigurationError(
                f"{where}: build_source returned the source {source.name!r}; its name must be "
                f"its settings section, {name!r}"
            )
        return source

    return build_plugin
