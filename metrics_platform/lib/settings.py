"""The platform's settings file: which sources read what, in one YAML document.

Its path is `METRICS_PLATFORM_CONFIG`; without it, the demo's settings shipped with the package
are used. Secrets never go here: they come from environment variables or files named here.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from metrics_platform.lib.errors import ConfigurationError

CONFIG_ENV = "METRICS_PLATFORM_CONFIG"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "demo" / "platform.yaml"
# The sections that are not a source's (each source's section is named after the source, and
# the code location knows its sources): together they are every section a settings file may hold.
PLATFORM_SECTIONS = ("kpis", "alerts", "schedule", "quality")


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_settings(path: Path | None = None) -> dict[str, Any]:
    """The settings document as a mapping (empty when the file is empty)."""
    path = path or config_path()
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigurationError(f"{CONFIG_ENV}: settings file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{CONFIG_ENV}: {path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"{CONFIG_ENV}: {path} must hold a mapping of source settings")
    return document


def section(settings: dict[str, Any], name: str) -> dict[str, Any]:
    value = settings.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"{config_path()}: `{name}` must be a mapping")
    return value


def check_sections(settings: dict[str, Any], sources: Iterable[str]) -> None:
    """Refuse a top-level section that is neither a source's nor one of `PLATFORM_SECTIONS`:
    a misspelt source section would otherwise leave the source silently disabled."""
    known = [*sources, *PLATFORM_SECTIONS]
    for name in settings:
        if name in known:
            continue
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        raise ConfigurationError(
            f"{config_path()}: `{name}` is not a settings section (known: "
            f"{', '.join(sorted(known))}){hint}"
        )
