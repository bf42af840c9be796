"""What every source folder hands to the code location, and how a disabled source is shown.

Each source package exposes `build_source(settings_section, env) -> SourceDefinition`. A source
whose settings or credentials are missing is still shown in the UI, in its group, as a
non-materializable asset whose description starts with "Disabled:" and the reason; it is left
out of the hourly values' inputs, so nothing waits for it and nothing fails because of it.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

DISABLED_TAG = "metrics_platform/source_status"


@dataclass(frozen=True)
class SourceDefinition:
    name: str
    asset: dg.AssetsDefinition
    resources: Mapping[str, object] = field(default_factory=dict)
    disabled_reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.disabled_reason is None

    @property
    def key(self) -> dg.AssetKey:
        return self.asset.key

    def for_definitions(self) -> dg.AssetsDefinition | dg.AssetSpec:
        """The asset itself, or a disabled stand-in that tells the UI why."""
        if self.enabled:
            return self.asset
        spec = self.asset.specs_by_key[self.asset.key]
        return dg.AssetSpec(
            key=spec.key,
            group_name=spec.group_name,
            kinds=spec.kinds,
            description=f"Disabled: {self.disabled_reason}. {spec.description or ''}".strip(),
            metadata={"disabled_reason": self.disabled_reason},
            tags={DISABLED_TAG: "disabled"},
        )
