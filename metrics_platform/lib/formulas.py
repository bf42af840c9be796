"""KPI formulas: arithmetic over metric names, parsed safely and evaluated per period.

A formula combines metric names with `+ - * /`, parentheses and numbers, e.g.
`(ga.active_users - ga.new_users) / ga.active_users`. A metric name is written as is when it is
dotted letters, digits and underscores, or in brackets otherwise (`[events.api-call.count]`).
Nothing else is accepted: no function calls, no attribute access, no Python.

A formula is at most `MAX_FORMULA_LENGTH` characters, `MAX_FORMULA_TERMS` numbers and metric
references and `MAX_FORMULA_DEPTH` levels of nested operations: anything larger is refused when
the settings load, with the key, not by the parser running out of memory or stack. Bare names
other than metric names are refused too (`__m0` and the like are the parser's own).

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
# A name that is not part of a metric reference or a number (`foo`, `__m0`, `e` in `2 e`).
_BARE_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*")
MAX_FORMULA_LENGTH = 2_000
MAX_FORMULA_TERMS = 200
MAX_FORMULA_DEPTH = 100
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
        if len(text) > MAX_FORMULA_LENGTH:
            raise ConfigurationError(
                f"{key}: the formula is {len(text):,} characters long; at most "
                f"{MAX_FORMULA_LENGTH:,} are allowed"
            )
        bare = _BARE_NAME.search(_REFERENCE.sub(" ", text))
        if bare:
            raise ConfigurationError(
                f"{key}: {bare.group()!r} is not a metric name (metric names are dotted, "
                "e.g. `ga.sessions`, or written in brackets)"
            )
        names: list[str] = []

        def placeholder(match: re.Match) -> str:
            name = match.group(1) or match.group(2)
            if not METRIC_NAME.fullmatch(name):
                raise ConfigurationError(f"{key}: {name!r} is not a valid metric name")
            if name not in names:
                names.append(name)
            return f"__m{names.index(name)}"

        source = _REFERENCE.sub(placeholder, text)
        placeholders = {f"__m{index}" for index in range(len(names))}
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError:
            raise ConfigurationError(f"{key}: {text!r} is not a valid formula") from None
        except (RecursionError, MemoryError):
            raise ConfigurationError(
                f"{key}: the formula nests too deeply (at most {MAX_FORMULA_DEPTH} levels)"
            ) from None
        _check_size(tree, key)
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
            if isinstance(node, ast.Name) and node.id in placeholders:
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


def _check_size(tree: ast.Expression, key: str) -> None:
    """Refuse a formula with too many terms or too deep a nesting (walked without recursion,
    so that evaluating it, which recurses, stays far from Python's stack limit)."""
    terms = 0
    pending: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while pending:
        node, depth = pending.pop()
        if depth > MAX_FORMULA_DEPTH:
            raise ConfigurationError(
                f"{key}: the formula nests more than {MAX_FORMULA_DEPTH} levels of operations"
            )
        if isinstance(node, (ast.Name, ast.Constant)):
            terms += 1
            if terms > MAX_FORMULA_TERMS:
                raise ConfigurationError(
                    f"{key}: the formula has more than {MAX_FORMULA_TERMS} terms"
                )
        pending.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


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
