"""The step graph of a workflow: cycles, topological levels, critical path, priorities, Mermaid.

Edges run from a dependency to the step that depends on it (the order things happen); only a
cycle is reported the other way, along `depends_on`, so it reads like the file. Unknown
dependencies are ignored here (validation reports them); a cycle makes the ordering functions
raise WorkflowError naming it.
"""

from __future__ import annotations

import re
from collections import deque

from ..errors import Problem, WorkflowError
from ..messages import Lane
from .spec import WorkflowSpec


def _graph(spec: WorkflowSpec) -> tuple[list[str], list[list[int]]]:
    """Step keys in file order (first of duplicates) and, per step, the indexes of its known deps."""
    by_key = spec.steps_by_key
    keys = list(by_key)
    pos = {k: i for i, k in enumerate(keys)}
    deps = [[pos[d] for d in by_key[k].depends_on if d in pos] for k in keys]
    return keys, deps


def _children(deps: list[list[int]]) -> list[list[int]]:
    children: list[list[int]] = [[] for _ in deps]
    for i, ds in enumerate(deps):
        for d in ds:
            children[d].append(i)
    return children


def topological_order(spec: WorkflowSpec) -> list[str] | None:
    """Step keys with every step after its dependencies: the levels, in order; None if cyclic."""
    if find_cycle(spec) is not None:
        return None
    return [key for level in levels(spec) for key in level]


def _topo(deps: list[list[int]]) -> list[int] | None:
    children = _children(deps)
    missing = [len(ds) for ds in deps]
    ready = deque(i for i, m in enumerate(missing) if m == 0)
    order: list[int] = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for c in children[i]:
            missing[c] -= 1
            if missing[c] == 0:
                ready.append(c)
    return order if len(order) == len(deps) else None


def find_cycle(spec: WorkflowSpec) -> list[str] | None:
    """A dependency cycle, e.g. `["a", "b", "c", "a"]`: a depends on b, b on c, c on a; None if acyclic.

    The cycle is rotated to start at the step that comes first in the file.
    """
    keys, nexts = _graph(spec)  # walk along depends_on, so the cycle reads as written
    state = [0] * len(keys)  # 0 new, 1 on the stack, 2 done
    for root in range(len(keys)):
        if state[root]:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        path: list[int] = [root]
        state[root] = 1
        while stack:
            node, nxt = stack[-1]
            if nxt < len(nexts[node]):
                stack[-1] = (node, nxt + 1)
                child = nexts[node][nxt]
                if state[child] == 1:
                    cycle = path[path.index(child) :]
                    start = cycle.index(min(cycle))
                    cycle = cycle[start:] + cycle[:start]
                    return [keys[i] for i in cycle] + [keys[cycle[0]]]
                if state[child] == 0:
                    state[child] = 1
                    stack.append((child, 0))
                    path.append(child)
            else:
                state[node] = 2
                stack.pop()
                path.pop()
    return None


def _cycle_error(spec: WorkflowSpec) -> WorkflowError:
    cycle = find_cycle(spec) or []
    return WorkflowError(
        [Problem(f"cycle: {' -> '.join(cycle)}", spec.source or "", step=cycle[0] if cycle else None)]
    )


def _ordered(spec: WorkflowSpec) -> tuple[list[str], list[list[int]], list[int]]:
    keys, deps = _graph(spec)
    order = _topo(deps)
    if order is None:
        raise _cycle_error(spec)
    return keys, deps, order


def levels(spec: WorkflowSpec) -> list[list[str]]:
    """Topological levels: level 0 has no dependencies, each later step sits one below its deepest dep.

    Steps keep file order inside a level. Raises WorkflowError on a cycle.
    """
    keys, deps, order = _ordered(spec)
    level = [0] * len(keys)
    for i in order:
        if deps[i]:
            level[i] = 1 + max(level[d] for d in deps[i])
    out: list[list[str]] = [[] for _ in range(max(level, default=-1) + 1)]
    for i, k in enumerate(keys):
        out[level[i]].append(k)
    return out


def _downstream(deps: list[list[int]], order: list[int]) -> list[int]:
    children = _children(deps)
    length = [1] * len(deps)
    for i in reversed(order):
        if children[i]:
            length[i] = 1 + max(length[c] for c in children[i])
    return length


def downstream_length(spec: WorkflowSpec) -> dict[str, int]:
    """Per step, the number of steps in the longest chain starting at it (itself included)."""
    keys, deps, order = _ordered(spec)
    length = _downstream(deps, order)
    return {k: length[i] for i, k in enumerate(keys)}


def _critical(deps: list[list[int]], length: list[int]) -> list[int]:
    if not length:
        return []
    children = _children(deps)
    node = max(range(len(length)), key=lambda i: (length[i], -i))  # ties: first in the file
    path = [node]
    while children[node]:
        node = max(children[node], key=lambda c: (length[c], -c))
        path.append(node)
    return path


def critical_path(spec: WorkflowSpec) -> list[str]:
    """The longest chain of steps from a root to a leaf (ties broken by file order)."""
    keys, deps, order = _ordered(spec)
    return [keys[i] for i in _critical(deps, _downstream(deps, order))]


def priorities(spec: WorkflowSpec) -> dict[str, tuple[Lane, int]]:
    """Per step, its lane and rank. Rank is its downstream length; the lane is the step's
    `priority:` if given, else HIGH on the critical path, NORMAL if others wait on it, else LOW."""
    keys, deps, order = _ordered(spec)
    length = _downstream(deps, order)
    critical = set(_critical(deps, length))
    by_key = spec.steps_by_key
    out: dict[str, tuple[Lane, int]] = {}
    for i, k in enumerate(keys):
        explicit = by_key[k].priority
        if explicit:
            lane = Lane.parse(explicit)
        elif i in critical:
            lane = Lane.HIGH
        elif length[i] >= 2:
            lane = Lane.NORMAL
        else:
            lane = Lane.LOW
        out[k] = (lane, length[i])
    return out


_MERMAID_RESERVED = frozenset(
    {"end", "graph", "subgraph", "flowchart", "style", "class", "classdef", "click"}
)


def _mermaid_ids(keys: list[str]) -> dict[str, str]:
    ids: dict[str, str] = {}
    used: set[str] = set()
    for k in keys:
        base = re.sub(r"[^A-Za-z0-9_]", "_", k)
        if base.lower() in _MERMAID_RESERVED:
            base += "_"
        ident, n = base, 2
        while ident in used:
            ident, n = f"{base}_{n}", n + 1
        used.add(ident)
        ids[k] = ident
    return ids


def _label(text: str) -> str:
    return text.replace("&", "#amp;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def to_mermaid(spec: WorkflowSpec) -> str:
    """A deterministic Mermaid `flowchart TD` of the steps and their dependencies."""
    by_key = spec.steps_by_key
    keys = list(by_key)
    ids = _mermaid_ids(keys)
    lines = ["flowchart TD"]
    for k in keys:
        step = by_key[k]
        parts = [_label(k), f"{step.kind}: {_label(step.target)}"]
        marks = [
            m
            for m, on in (("for each", step.for_each), ("approval", step.approval), ("when", step.when))
            if on
        ]
        if marks:
            parts.append(", ".join(marks))
        lines.append(f'    {ids[k]}["{"<br/>".join(parts)}"]')
    for k in keys:
        for dep in by_key[k].depends_on:
            if dep in ids:
                lines.append(f"    {ids[dep]} --> {ids[k]}")
    return "\n".join(lines) + "\n"
