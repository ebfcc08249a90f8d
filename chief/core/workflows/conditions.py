"""`when:` conditions, evaluated with simpleeval (never `eval`).

A condition is a small expression: `and`, `or`, `not`, comparisons, `in`, literals, and the
functions `len`, `str`, `int`, `float`, `bool`, `lower`, `upper`, `strip`, `contains(a, b)`,
`startswith(a, b)` and `endswith(a, b)`. Each `{{ ref }}` in it stands for the ref's *value*:
it is replaced by a variable bound to that value, never by its text, so a value holding quotes
cannot change the expression. A ref quoted on its own (`'{{ x }}'`) is bound to the value as
rendered text (see `templates.format_value`). The names `inputs`, `results` and `status` are
the workflow inputs, the step results and the step statuses; inside a `for_each` step `item`
and `index` are the current element and its position.

    when: "{{ triage.severity }} in ['high', 'critical'] and not {{ inputs.dry_run }}"
    when: "contains(lower({{ review }}), 'approve') or status['audit'] == 'failed'"
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simpleeval import DISALLOW_METHODS, EvalWithCompoundTypes

from ..errors import TemplateError
from .templates import NO_ITEM, Ref, compile_template, format_value, resolve_ref


def _lower(value: Any) -> str:
    return "" if value is None else str(value).lower()


def _upper(value: Any) -> str:
    return "" if value is None else str(value).upper()


def _strip(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _contains(container: Any, part: Any) -> bool:
    if container is None:
        return False
    if isinstance(container, str):
        return str(part) in container
    return part in container


def _startswith(value: Any, prefix: Any) -> bool:
    return value is not None and str(value).startswith(str(prefix))


def _endswith(value: Any, suffix: Any) -> bool:
    return value is not None and str(value).endswith(str(suffix))


FUNCTIONS: dict[str, Any] = {
    "len": len,
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "lower": _lower,
    "upper": _upper,
    "strip": _strip,
    "contains": _contains,
    "startswith": _startswith,
    "endswith": _endswith,
}

_CONSTANTS = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}
_CONTEXT_NAMES = frozenset({"inputs", "results", "status", "item", "index"})
_PLACEHOLDER = re.compile(r"_tpl_[vs](\d+)")
_QUOTED = re.compile(r"""(['"])_tpl_v(\d+)\1""")

# Everything a condition may contain; anything else (lambda, walrus, await, starred, ...) is refused.
_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Mod, ast.FloorDiv,
    ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is, ast.IsNot,
    ast.Call, ast.keyword, ast.Name, ast.Load, ast.Store, ast.Constant, ast.Attribute, ast.Subscript,
    ast.Slice, ast.List, ast.Tuple, ast.Dict, ast.IfExp, ast.ListComp, ast.GeneratorExp, ast.comprehension,
)  # fmt: skip


@dataclass(frozen=True)
class _Compiled:
    code: str  # the expression with each {{ref}} replaced by a placeholder name
    refs: tuple[Ref, ...]
    as_text: frozenset[int]  # placeholders that were quoted: bound to the rendered text
    node: ast.Expr  # what simpleeval runs


def _comprehension_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            names.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
    return names


def _check_tree(tree: ast.Expression) -> None:
    local = _comprehension_names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise TemplateError(f"{type(node).__name__} is not allowed in a condition")
        if isinstance(node, ast.Attribute) and (node.attr.startswith("_") or node.attr in DISALLOW_METHODS):
            raise TemplateError(f"attribute '{node.attr}' is not allowed")
        if isinstance(node, ast.Name):
            name = node.id
            if _PLACEHOLDER.fullmatch(name) or name in local:
                continue
            if name.startswith("_"):
                raise TemplateError(f"name '{name}' is not allowed")
            if name not in _CONTEXT_NAMES and name not in _CONSTANTS and name not in FUNCTIONS:
                raise TemplateError(
                    f"unknown name '{name}' (write {{{{{name}}}}} for an input or a step's result)"
                )
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _PLACEHOLDER.search(node.value):
            raise TemplateError(
                "a {{ref}} inside a string literal is not substituted; compare the value instead, "
                "e.g. {{x}} == 'yes' or contains({{x}}, 'yes')"
            )


@functools.lru_cache(maxsize=4096)
def _compile(expr: str) -> _Compiled:
    if not expr or not expr.strip():
        raise TemplateError("empty condition")
    code_parts: list[str] = []
    refs: list[Ref] = []
    for literal, ref in compile_template(expr):
        code_parts.append(literal)
        if ref is not None:
            code_parts.append(f"_tpl_v{len(refs)}")
            refs.append(ref)
    as_text: set[int] = set()

    def _unquote(m: re.Match[str]) -> str:
        as_text.add(int(m.group(2)))
        return f"_tpl_s{m.group(2)}"

    code = _QUOTED.sub(_unquote, "".join(code_parts)).strip()
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError as e:
        raise TemplateError(f"syntax error: {e.msg}") from None
    _check_tree(tree)
    node = ast.Expr(value=tree.body)
    return _Compiled(code, tuple(refs), frozenset(as_text), node)


def condition_refs(expr: str) -> list[Ref]:
    """The `{{ ref }}`s of a condition, in order. Raises TemplateError if one is malformed."""
    if not expr or "{{" not in expr:
        return []
    return [ref for _, ref in compile_template(expr) if ref is not None]


def check_condition(expr: str) -> str | None:
    """Why `expr` is not a valid condition (syntax, unknown name, bad ref), or None if it is."""
    try:
        _compile(expr)
    except TemplateError as e:
        return str(e)
    return None


def evaluate_condition(
    expr: str,
    *,
    inputs: Mapping[str, Any],
    results: Mapping[str, Any],
    statuses: Mapping[str, str] | None = None,
    item: Any = NO_ITEM,
    index: int | None = None,
) -> bool:
    """Whether the condition holds. Raises TemplateError naming the expression and the reason."""
    try:
        compiled = _compile(expr)
    except TemplateError as e:
        raise TemplateError(f"condition {expr!r}: {e}") from None
    names: dict[str, Any] = dict(_CONSTANTS)
    names.update(inputs=dict(inputs), results=dict(results), status=dict(statuses or {}))
    if item is not NO_ITEM:
        names["item"] = item
    if index is not None:
        names["index"] = index
    try:
        for i, ref in enumerate(compiled.refs):
            value = resolve_ref(
                ref, inputs=inputs, results=results, statuses=statuses, item=item, index=index
            )
            names[f"_tpl_v{i}"] = value
            if i in compiled.as_text:
                names[f"_tpl_s{i}"] = format_value(value)
    except TemplateError as e:
        raise TemplateError(f"condition {expr!r}: {e}") from None
    evaluator = EvalWithCompoundTypes(names=names, functions=dict(FUNCTIONS))
    try:
        return bool(evaluator.eval(compiled.code, previously_parsed=compiled.node))
    except Exception as e:  # anything the user's expression does wrong is a TemplateError
        reason = str(e) or type(e).__name__
        raise TemplateError(f"condition {expr!r}: {type(e).__name__}: {reason}") from None
