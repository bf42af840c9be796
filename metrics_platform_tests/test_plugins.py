"""Sources from installed packages: found through the `metrics_platform.sources` entry points,
listed after the built-in ones, configured like them, and refused with a clear message when
they clash with a built-in or another package, fail to load or build something else."""

import sys
import uuid
from pathlib import Path

import dagster as dg
import pytest

from metrics_platform.definitions import build_definitions
from metrics_platform.defs.sources.registry import (
    ENTRY_POINT_GROUP,
    builtin_builders,
    source_builders,
)
from metrics_platform.lib.errors import ConfigurationError

SOURCE_MODULE = '''
import dagster as dg
from metrics_platform.defs.sources.raw import raw_asset
from metrics_platform.defs.sources.registry import SourceDefinition

@raw_asset(dg.AssetKey(["raw", "{name}_values"]), source="{name}", kinds={{"python"}})
def values(context):
    """Values of the plug-in."""

def build_source(section, env):
    reason = None if section else "no `{name}` section in the settings file"
    return SourceDefinition({source!r}, values, {{}}, reason, metrics=["{name}.value"])

def not_a_source(section, env):
    return {{"name": "{name}"}}

broken = None
'''


@pytest.fixture
def install(tmp_path, monkeypatch):
    """install({entry point name: attribute}, source name) installs a package found by
    `importlib.metadata` through a `.dist-info` folder on sys.path, as pip installs one."""
    imported = []

    def _install(points: dict[str, str], source: str | None = None) -> None:
        dist = f"plugin_{uuid.uuid4().hex[:8]}"
        root = tmp_path / dist
        info = root / f"{dist}-0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
        lines = [f"{name} = {dist}_module:{attr}" for name, attr in points.items()]
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n" + "\n".join(lines) + "\n")
        name = next(iter(points))
        code = SOURCE_MODULE.format(name=name, source=source or name)
        Path(root / f"{dist}_module.py").write_text(code)
        monkeypatch.syspath_prepend(str(root))
        imported.append(f"{dist}_module")

    yield _install
    for module in imported:
        sys.modules.pop(module, None)


def test_a_plugin_source_is_listed_after_the_built_in_ones_and_configured_like_them(install):
    install({"tickets": "build_source"})
    builders = source_builders()
    assert list(builders)[: len(builtin_builders())] == list(builtin_builders())
    assert list(builders)[-1] == "tickets"
    enabled = build_definitions({"tickets": {"anything": 1}}, env={})
    graph = enabled.resolve_asset_graph()
    key = dg.AssetKey(["raw", "tickets_values"])
    assert graph.get(key).group_name == "tickets"
    assert key in graph.get(dg.AssetKey(["metrics", "hourly_values"])).parent_keys
    assert "tickets_hourly_schedule" in {s.name for s in enabled.schedules}
    disabled = build_definitions({}, env={})
    (spec,) = [a for a in disabled.assets if isinstance(a, dg.AssetSpec) and a.key == key]
    assert spec.description.startswith("Disabled: no `tickets` section")


def test_a_plugin_cannot_take_a_built_in_name(install):
    install({"crawlers": "build_source"})
    with pytest.raises(ConfigurationError) as raised:
        source_builders()
    assert "plug-in source 'crawlers' (plugin_" in str(raised.value)
    assert "is a built-in source" in str(raised.value)


def test_two_packages_cannot_provide_one_source(install):
    install({"tickets": "build_source"})
    install({"tickets": "build_source"})
    with pytest.raises(ConfigurationError, match="two packages cannot both provide one source"):
        source_builders()


@pytest.mark.parametrize(
    "points, source, message",
    [
        ({"tickets": "missing"}, None, "cannot be loaded: AttributeError"),
        ({"tickets": "broken"}, None, "is not a build_source(section, env) function"),
        ({"tickets": "not_a_source"}, None, "build_source returned dict, not a SourceDefinition"),
        ({"tickets": "build_source"}, "support", "returned the source 'support'; its name must"),
        ({"Tickets-2": "build_source"}, None, "the name must be a settings section"),
    ],
)
def test_a_plugin_that_does_not_build_a_source_is_refused_naming_it(
    install, points, source, message
):
    install(points, source)
    with pytest.raises(ConfigurationError) as raised:
        build_definitions({"tickets": {"on": True}}, env={})
    assert f"plug-in source {next(iter(points))!r}" in str(raised.value)
    assert message in str(raised.value)
