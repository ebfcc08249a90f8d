"""A generated large workflow for the graph and validation tests."""

from __future__ import annotations

from typing import Any


def generate(n: int, *, break_at: int | None = None) -> dict[str, Any]:
    """`n` steps: a chain of heads s0, s10, s20, ..., each fanning out to 9 steps that the next head joins.

    Each prompt names its dependencies' results; `break_at` makes that step also name the last step,
    which is not upstream of it (a validation error).
    """
    steps: list[dict[str, Any]] = []
    head: str | None = None
    group: list[str] = []
    for i in range(n):
        key = f"s{i}"
        if i % 10 == 0:
            deps = ([head] if head else []) + group
            head, group = key, []
        else:
            deps = [head]
            group.append(key)
        refs = " ".join(f"{{{{{d}.result}}}}" for d in deps) if deps else "{{inputs.topic}}"
        if i == break_at:
            refs += f" {{{{s{n - 1}.result}}}}"
        steps.append({"key": key, "agent": "writer", "prompt": f"Do {key}: {refs}", "depends_on": deps})
    return {"name": "w", "inputs": {"topic": "The topic"}, "steps": steps}
