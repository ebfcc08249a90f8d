"""`when:` conditions: what they can express, and what they can never do."""

from __future__ import annotations

from typing import Any

import pytest

from chief.core.errors import TemplateError
from chief.core.workflows import Ref, check_condition, condition_refs, evaluate_condition

INPUTS = {"mode": "full", "dry_run": False, "limit": 3, "files": ["a.txt", "b.csv"]}
RESULTS = {
    "triage": '{"severity": "high", "count": 4}',
    "review": "I APPROVE this change.",
    "skipped": None,
    "audit": {"issues": ["xss"], "ok": False},
}
STATUSES = {"triage": "succeeded", "audit": "failed", "skipped": "skipped"}


def _eval(expr: str, **kw: Any) -> bool:
    kw.setdefault("inputs", INPUTS)
    return evaluate_condition(expr, results=RESULTS, statuses=STATUSES, **kw)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("{{triage.severity}} == 'high'", True),
        ("{{triage.severity}} in ['high', 'critical'] and not {{inputs.dry_run}}", True),
        ("{{triage.count}} > {{limit}}", True),
        ("{{triage.count}} >= 5 or {{mode}} == 'quick'", False),
        ("contains(lower({{review}}), 'approve')", True),
        ("contains({{audit.issues}}, 'xss')", True),
        ("upper({{mode}}) == 'FULL'", True),
        ("len({{inputs.files}}) == 2", True),
        ("{{review}}.lower().startswith('i approve')", True),
        ("startswith({{review}}, 'I') and endswith(strip({{review}}), '.')", True),
        ("int('4') == {{triage.count}} and str({{limit}}) == '3' and float('0.5') < 1", True),
        ("bool({{skipped}})", False),
        ("{{skipped}} == None and {{skipped}} == null", True),
        ("status['audit'] == 'failed' and {{steps.triage.status}} == 'succeeded'", True),
        ("results['audit']['ok'] == false", True),
        ("inputs['mode'] == 'full'", True),
        ("'{{mode}}' == 'full'", True),
        ("'{{audit.issues}}' == '[\"xss\"]' or '{{audit.issues}}' == 'xss'", True),
        ("len([f for f in {{inputs.files}} if f.endswith('.csv')]) == 1", True),
        ("'b' if {{limit}} > 1 else ''", True),
    ],
)
def test_conditions_expressions(expr: str, expected: bool) -> None:
    assert check_condition(expr) is None
    assert _eval(expr) is expected


def test_conditions_item_and_index() -> None:
    assert evaluate_condition(
        "{{item.size}} > 10 and {{index}} == 1", inputs={}, results={}, item={"size": 11}, index=1
    )
    assert evaluate_condition("item == 'x' and index == 0", inputs={}, results={}, item="x", index=0)


def test_conditions_values_cannot_inject_code() -> None:
    evil = "x' or True or '"
    inputs = {"name": evil, "mode": "full"}
    for expr in (
        "{{name}} == 'admin'",
        "'{{name}}' == 'admin'",
        "{{inputs.name}} == 'admin' and {{mode}} == 'full'",
        "contains({{name}}, 'admin')",
    ):
        assert evaluate_condition(expr, inputs=inputs, results={}) is False
    assert evaluate_condition("{{name}} == \"x' or True or '\"", inputs=inputs, results={}) is True
    code = "__import__('os').system('echo hacked')"
    assert evaluate_condition("{{name}} == 'x'", inputs={"name": code}, results={}) is False


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('true')",
        "().__class__.__bases__[0].__subclasses__()",
        "{{mode}}.__class__",
        "inputs.__class__.__mro__",
        "{{mode}}.format(1)",
        "open('/etc/passwd')",
        "eval('1')",
        "getattr(inputs, 'x')",
        "lambda: 1",
        "(x := 1)",
        "x = 1",
        "import os",
    ],
)
def test_conditions_refuse_tricks(expr: str) -> None:
    assert check_condition(expr) is not None
    with pytest.raises(TemplateError):
        _eval(expr)


def test_conditions_attribute_tricks_are_refused_at_run_time_too() -> None:
    from chief.core.workflows.conditions import FUNCTIONS

    assert "getattr" not in FUNCTIONS and "type" not in FUNCTIONS
    with pytest.raises(TemplateError, match="__class__"):
        _eval("{{mode}}.__class__")


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("{{mode}} ==", "syntax error"),
        ("mode == 'full'", "unknown name 'mode' (write {{mode}}"),
        ("'{{mode}} mode' == 'full mode'", "inside a string literal"),
        ("", "empty condition"),
        ("{{ mode + 1 }}", "invalid reference"),
        ("{{mode", "unclosed"),
    ],
)
def test_conditions_check_explains_what_is_wrong(expr: str, reason: str) -> None:
    message = check_condition(expr)
    assert message is not None and reason in message
    with pytest.raises(TemplateError, match="condition"):
        _eval(expr)


def test_conditions_evaluation_errors_name_the_expression() -> None:
    with pytest.raises(TemplateError) as err:
        _eval("{{later.result}} == 'x'")
    assert "'{{later.result}} == 'x''" in str(err.value) or "{{later.result}}" in str(err.value)
    with pytest.raises(TemplateError, match=r"condition '\{\{limit\}\} > \{\{mode\}\}'.*TypeError"):
        _eval("{{limit}} > {{mode}}")
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        _eval("{{limit}} / 0 > 1")


def test_conditions_refs() -> None:
    assert condition_refs("{{a.result}} == 'x' and {{steps.b.status}} == 'failed'") == [
        Ref("step", "a", (), "a.result"),
        Ref("status", "b", (), "steps.b.status"),
    ]
    assert condition_refs("status['a'] == 'failed'") == []
