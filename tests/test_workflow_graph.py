"""The step graph: cycles, levels, critical path, priorities and the Mermaid drawing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chief.core.errors import WorkflowError
from chief.core.messages import Lane
from chief.core.workflows import (
    WorkflowSpec,
    critical_path,
    downstream_length,
    find_cycle,
    levels,
    load_workflow,
    priorities,
    spec_from_data,
    to_mermaid,
    topological_order,
)
from tests.workflow_gen import generate

DATA = Path(__file__).parent / "data" / "workflows"


def _spec(*steps: tuple[str, list[str]] | dict[str, Any], validate: bool = True) -> WorkflowSpec:
    rows = [
        s if isinstance(s, dict) else {"key": s[0], "agent": "writer", "prompt": "p", "depends_on": s[1]}
        for s in steps
    ]
    data = {"name": "g", "steps": rows}
    return spec_from_data(data) if validate else WorkflowSpec.model_validate(data)


@pytest.fixture
def diamond() -> WorkflowSpec:
    """a -> (b, c) -> d, plus a side step e after b and a lone step f."""
    return _spec(("a", []), ("b", ["a"]), ("c", ["a"]), ("d", ["b", "c"]), ("e", ["b"]), ("f", []))


def test_graph_levels_of_a_diamond(diamond: WorkflowSpec) -> None:
    assert levels(diamond) == [["a", "f"], ["b", "c"], ["d", "e"]]
    assert topological_order(diamond) == ["a", "f", "b", "c", "d", "e"]


def test_graph_downstream_length_of_a_diamond(diamond: WorkflowSpec) -> None:
    assert downstream_length(diamond) == {"a": 3, "b": 2, "c": 2, "d": 1, "e": 1, "f": 1}


def test_graph_critical_path_of_a_diamond_breaks_ties_by_file_order(diamond: WorkflowSpec) -> None:
    assert critical_path(diamond) == ["a", "b", "d"]


def test_graph_priorities_of_a_diamond(diamond: WorkflowSpec) -> None:
    assert priorities(diamond) == {
        "a": (Lane.HIGH, 3),
        "b": (Lane.HIGH, 2),
        "c": (Lane.NORMAL, 2),
        "d": (Lane.HIGH, 1),
        "e": (Lane.LOW, 1),
        "f": (Lane.LOW, 1),
    }


def test_graph_explicit_priority_wins() -> None:
    spec = _spec(
        {"key": "a", "agent": "x", "prompt": "p", "priority": "low"},
        {"key": "b", "agent": "x", "prompt": "p", "depends_on": ["a"]},
        {"key": "c", "agent": "x", "prompt": "p", "priority": "critical"},
    )
    assert priorities(spec) == {"a": (Lane.LOW, 2), "b": (Lane.HIGH, 1), "c": (Lane.CRITICAL, 1)}


def test_graph_code_review_priorities() -> None:
    spec = load_workflow(DATA / "code-review.yaml")
    assert critical_path(spec) == ["parse-changes", "security-audit", "aggregate"]
    assert priorities(spec)["quality-check"] == (Lane.NORMAL, 2)


def test_graph_find_cycle() -> None:
    assert find_cycle(_spec(("a", []), ("b", ["a"]))) is None
    spec = _spec(("x", []), ("b", ["c"]), ("c", ["a"]), ("a", ["b", "x"]), validate=False)
    assert find_cycle(spec) == ["b", "c", "a", "b"]  # b depends on c, c on a, a on b
    assert find_cycle(_spec(("a", ["a"]), validate=False)) == ["a", "a"]


def test_graph_unknown_dependencies_are_ignored() -> None:
    spec = _spec(("a", []), ("b", ["a", "ghost"]), validate=False)
    assert levels(spec) == [["a"], ["b"]]


@pytest.mark.parametrize("fn", [levels, downstream_length, critical_path, priorities])
def test_graph_ordering_functions_raise_on_a_cycle(fn: Any) -> None:
    spec = _spec(("a", ["b"]), ("b", ["a"]), validate=False)
    with pytest.raises(WorkflowError, match=r"cycle: a -> b -> a"):
        fn(spec)
    assert topological_order(spec) is None


def test_graph_generated_1000_steps() -> None:
    spec = spec_from_data(generate(1000))
    lv = levels(spec)
    assert len(lv) == 200  # 100 heads, each followed by one level of fan-out
    assert lv[0] == ["s0"] and lv[1] == [f"s{i}" for i in range(1, 10)]
    assert sum(len(level) for level in lv) == 1000
    length = downstream_length(spec)
    assert length["s0"] == 200 and length["s990"] == 2 and length["s999"] == 1 and length["s5"] == 199
    path = critical_path(spec)
    assert len(path) == 200
    assert path[:3] == ["s0", "s1", "s10"] and path[-1] == "s991"
    prios = priorities(spec)
    assert prios["s0"] == (Lane.HIGH, 200)
    assert prios["s1"] == (Lane.HIGH, 199)
    assert prios["s2"] == (Lane.NORMAL, 199)
    assert prios["s999"] == (Lane.LOW, 1)
    assert sum(1 for lane, _ in prios.values() if lane is Lane.HIGH) == 200
    order = topological_order(spec)
    assert order is not None
    seen: set[str] = set()
    for key in order:
        assert set(spec.step(key).depends_on) <= seen
        seen.add(key)


def test_graph_mermaid_of_the_seed_code_review() -> None:
    spec = load_workflow(DATA / "code-review-seed.yaml")
    assert to_mermaid(spec) == (
        "flowchart TD\n"
        '    parse_changes["parse-changes<br/>agent: backend"]\n'
        '    security_audit["security-audit<br/>agent: security"]\n'
        '    quality_check["quality-check<br/>agent: quality"]\n'
        '    aggregate_results["aggregate-results<br/>agent: product"]\n'
        "    parse_changes --> security_audit\n"
        "    parse_changes --> quality_check\n"
        "    security_audit --> aggregate_results\n"
        "    quality_check --> aggregate_results\n"
    )


def test_graph_mermaid_of_the_code_review_is_deterministic() -> None:
    spec = load_workflow(DATA / "code-review.yaml")
    expected = (
        "flowchart TD\n"
        '    parse_changes["parse-changes<br/>agent: backend"]\n'
        '    security_audit["security-audit<br/>agent: security"]\n'
        '    quality_check["quality-check<br/>capability: code-quality"]\n'
        '    aggregate["aggregate<br/>agent: product"]\n'
        "    parse_changes --> security_audit\n"
        "    parse_changes --> quality_check\n"
        "    security_audit --> aggregate\n"
        "    quality_check --> aggregate\n"
    )
    assert to_mermaid(spec) == expected
    assert to_mermaid(load_workflow(DATA / "code-review.json")) == expected


def test_graph_mermaid_marks_for_each_approval_and_odd_keys() -> None:
    digest = load_workflow(DATA / "document-digest.yaml")
    assert to_mermaid(digest) == (
        "flowchart TD\n"
        '    summarise["summarise<br/>capability: summarise<br/>for each"]\n'
        '    digest["digest<br/>agent: writer<br/>approval, when"]\n'
        "    summarise --> digest\n"
    )
    odd = _spec(
        ("end", []),
        ("a-b", ["end"]),
        ("a_b", ["a-b"]),
        {"key": "sub", "workflow": 'say "hi"', "depends_on": ["a_b"]},
        validate=False,
    )
    assert to_mermaid(odd) == (
        "flowchart TD\n"
        '    end_["end<br/>agent: writer"]\n'
        '    a_b["a-b<br/>agent: writer"]\n'
        '    a_b_2["a_b<br/>agent: writer"]\n'
        '    sub["sub<br/>workflow: say #quot;hi#quot;"]\n'
        "    end_ --> a_b\n"
        "    a_b --> a_b_2\n"
        "    a_b_2 --> sub\n"
    )
