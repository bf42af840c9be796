"""KPI formulas: arithmetic over metric names, parsed safely and evaluated per period.

A formula combines metric names with `+ - * /`, parentheses and numbers, e.g.
`(ga.active_users - ga.new_users) / ga.active_users`. A metric name is written as is when it is
dotted letters, digits and underscores, or in brackets otherwise (`[events.api-call.count]`).
Nothing else is accepted: no function calls, no attribute access, no Python.

Evaluation is vectorized over a frame with one column per metric and one row per period. A
period where an operand has no value, or where a division is by zero, gets no value: never an
error, never a made-up zero.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from metrics_platform.lib.errors import ConfigurationError
from metrics_platform.lib.metric_rows import METRIC_NAME

_REFERENCE = re.compile(r"\[([^\[\]]+)\]|\b([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)+)")
_OPERATORS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply}


@dataclass(frozen=True)
class Formula:
    text: str
    tree: ast.Expression
    metrics: tuple[str, ...]  # by placeholder index

    @classmethod
    def parse(cls, text: str, *, key: str) -> Formula:
        if not isinstance(text, str) or not text.strip():
            raise ConfigurationError(f"{key}: a formula is required")
        names: list[str] = []

        def placeholder(match: re.Match) -> str:
            name = match.group(1) or match.group(2)
            if not METRIC_NAME.fullmatch(name):
                raise ConfigurationError(f"{key}: {name!r} is not a valid metric name")
            if name not in names:
                names.append(name)
            return f"__m{names.index(name)}"

        source = _REFERENCE.sub(placeholder, text)
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError:
            raise ConfigurationError(f"{key}: {text!r} is not a valid formula") from None
        for node in ast.walk(tree):
            allowed = (
                ast.Expression,
                ast.BinOp,
                ast.UnaryOp,
                ast.USub,
                ast.UAdd,
                ast.Div,
                *_OPERATORS,
                ast.Load,
            )
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, (int, float))
                and not isinstance(node.value, bool)
            ):
                continue
            if isinstance(node, ast.Name) and re.fullmatch(r"__m\d+", node.id):
                continue
            if not isinstance(node, allowed):
                raise ConfigurationError(
                    f"{key}: {text!r} may only combine metric names and numbers with + - * /"
                )
        if not names:
            raise ConfigurationError(f"{key}: {text!r} references no metric")
        return cls(text, tree, tuple(names))

    def evaluate(self, wide: pd.DataFrame) -> pd.Series:
        """One value per row of `wide` (columns: metric names); NaN where undefined."""
        columns = {
            f"__m{i}": wide[name].astype("float64")
            if name in wide.columns
            else pd.Series(np.nan, index=wide.index)
            for i, name in enumerate(self.metrics)
        }
        with np.errstate(divide="ignore", invalid="ignore"):
            result = _evaluate(self.tree.body, columns, wide.index)
        result = pd.Series(result, index=wide.index, dtype="float64")
        return result.where(np.isfinite(result))


def _evaluate(node: ast.AST, columns: Mapping[str, pd.Series], index) -> pd.Series:
    if isinstance(node, ast.Name):
        return columns[node.id]
    if isinstance(node, ast.Constant):
        return pd.Series(float(node.value), index=index)
    if isinstance(node, ast.UnaryOp):
        operand = _evaluate(node.operand, columns, index)
        return -operand if isinstance(node.op, ast.USub) else operand
    left = _evaluate(node.left, columns, index)
    right = _evaluate(node.right, columns, index)
    if isinstance(node.op, ast.Div):
        return left / right.where(right != 0)
    return _OPERATORS[type(node.op)](left, right)
