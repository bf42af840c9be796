"""Metric names made from labels: a template such as `http.requests.{job}` filled with the
labels of a Prometheus series or the label columns of a SQL metric's rows.

A template holds plain `{label}` fields only (no attribute or index access, conversion or
format spec), and filled with any label value it must make a valid metric name. Label values
come from the data: they are made safe for metric names (`sanitize_name_part`) before they are
filled in, so a value never adds a dot or any character a metric name cannot hold.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping

from metrics_platform.lib.metric_rows import METRIC_NAME, sanitize_name_part

LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What `sanitize_name_part` can make of a label value.
_FILLED_PART = r"[A-Za-z0-9_:\-]+"


def template_fields(template: str) -> list[str]:
    """The labels a metric-name template fills in: `http.requests.{job}` -> `['job']`.

    Raises ValueError, so that settings validation can name the key.
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{template!r} is not a valid template: {exc}") from None
    fields = []
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not LABEL_NAME.fullmatch(field) or spec or conversion:
            raise ValueError(
                f"{template!r}: only plain label fields like {{job}} are allowed, not "
                f"{{{field}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
            )
        fields.append(field)
    if not METRIC_NAME.fullmatch(template.format_map({field: "x" for field in fields})):
        raise ValueError(
            f"{template!r} does not make a valid metric name (letters, digits, '_', '.', ':', '-')"
        )
    return fields


def fill_template(template: str, labels: Mapping[str, object]) -> str:
    """The metric name for these labels, each value made safe for a metric name."""
    return template.format_map({key: sanitize_name_part(value) for key, value in labels.items()})


def template_glob(template: str) -> str:
    """A glob pattern of the names the template makes (`http.requests.*`), for the settings'
    references to metrics (KPI formulas)."""
    return "".join(
        literal.replace("*", "[*]") + ("*" if field is not None else "")
        for literal, field, _, _ in string.Formatter().parse(template)
    )


def template_pattern(template: str) -> re.Pattern:
    """A regular expression matching exactly the names the template can make."""
    return re.compile(
        "".join(
            re.escape(literal) + (_FILLED_PART if field is not None else "")
            for literal, field, _, _ in string.Formatter().parse(template)
        )
    )
