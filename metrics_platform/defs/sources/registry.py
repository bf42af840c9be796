"""What every source folder hands to the code location, and how a disabled source is shown.

Each source package exposes `build_source(settings_section, env) -> SourceDefinition`. A source
whose settings or credentials are missing is still shown in the UI, in its group, as a
non-materializable asset whose description starts with "Disabled:" and the reason; it is left
out of the hourly values' inputs, so nothing waits for it and nothing fails because of it.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg
import pydantic

from metrics_platform.lib.errors import ConfigurationError

DISABLED_TAG = "metrics_platform/source_status"


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


def build_resource(key: str, cls: type, *, hint: str = "", **settings):
    """`cls(**settings)`, with a settings error naming its key (`events.percentiles: ...`).

    Unknown keys are refused too: a typo must not silently turn a setting off. The message
    lists the known ones (`hint` says for what, e.g. a model of the source).
    """
    known = set(cls.model_fields)
    unknown = sorted(set(settings) - known)
    if unknown:
        expected = ", ".join(sorted(known - {"url"}))
        raise ConfigurationError(
            f"{key}.{unknown[0]}: unknown setting{' ' + hint if hint else ''} (expected {expected})"
        )
    try:
        return cls(**settings)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ConfigurationError(f"{key}.{where}: {error['msg']}") from None
