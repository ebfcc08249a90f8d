"""The plan drawn as a graph: steps placed level by level (parallel steps side by side), coloured by status.

`board_props()` lays the graph out here (plain geometry, no browser work); the `PlanBoard` custom element
(`public/elements/PlanBoard.jsx`) draws it as SVG and is updated live as steps change status.
"""

from __future__ import annotations

from typing import Any

from ..core.workflows import WorkflowSpec, levels

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 170, 52, 26, 44, 16


def step_agent(spec: WorkflowSpec, key: str) -> str:
    """Who does a step: its agent, `capability: X`, or `workflow: X`."""
    step = spec.step(key)
    if step.agent:
        return step.agent
    if step.capability:
        return f"any {step.capability} agent"
    return f"workflow {step.workflow}"


def board_props(spec: WorkflowSpec, statuses: dict[str, str] | None = None, *, run_status: str = "planned",
                title: str | None = None) -> dict[str, Any]:
    """Props of the PlanBoard element: node boxes (x, y, status), edges, size."""
    statuses = statuses or {}
    rows = levels(spec)
    width = max(len(r) for r in rows) * (NODE_W + GAP_X) - GAP_X + 2 * PAD
    nodes: list[dict[str, Any]] = []
    for depth, row in enumerate(rows):
        row_w = len(row) * (NODE_W + GAP_X) - GAP_X
        x0 = (width - row_w) / 2
        for i, key in enumerate(row):
            step = spec.step(key)
            marks = [m for m, on in (("approval", step.approval), ("for each", bool(step.for_each)),
                                     ("if", bool(step.when))) if on]
            nodes.append({"key": key, "agent": step_agent(spec, key), "marks": marks,
                          "x": round(x0 + i * (NODE_W + GAP_X)), "y": PAD + depth * (NODE_H + GAP_Y),
                          "status": statuses.get(key, "pending")})
    edges = [[dep, s.key] for s in spec.steps for dep in s.depends_on]
    height = PAD * 2 + len(rows) * (NODE_H + GAP_Y) - GAP_Y
    return {"title": title or spec.name, "status": run_status, "nodes": nodes, "edges": edges,
            "width": width, "height": height, "nodeWidth": NODE_W, "nodeHeight": NODE_H}


def plan_markdown(spec: WorkflowSpec, *, planner: str, reason: str, inputs: dict[str, Any]) -> str:
    """The plan as text: workflow, why, and a table of steps with agent and order."""
    order = {key: n for n, row in enumerate(levels(spec), start=1) for key in row}
    lines = [f"**Plan: `{spec.name}`** — {spec.description.strip() or 'a workflow'}", "",
             f"_Planned by the {planner} planner: {reason}_" if reason else f"_Planned by the {planner} planner_",
             "", "| # | step | agent | after |", "| --- | --- | --- | --- |"]
    for step in sorted(spec.steps, key=lambda s: order[s.key]):
        after = ", ".join(step.depends_on) or "—"
        extra = " (needs approval)" if step.approval else ""
        lines.append(f"| {order[step.key]} | `{step.key}`{extra} | {step_agent(spec, step.key)} | {after} |")
    shown = {k: _short(v) for k, v in inputs.items()}
    if shown:
        lines += ["", "Inputs: " + ", ".join(f"`{k}` = {v}" for k, v in shown.items())]
    parallel = [row for row in levels(spec) if len(row) > 1]
    if parallel:
        lines += ["", "In parallel: " + "; ".join(" ‖ ".join(f"`{k}`" for k in row) for row in parallel)]
    return "\n".join(lines)


def _short(value: Any) -> str:
    if isinstance(value, list) and value and isinstance(value[0], dict) and "name" in value[0]:
        return ", ".join(str(v.get("name")) for v in value)
    if isinstance(value, dict) and "name" in value:
        return str(value["name"])
    text = " ".join(str(value).split())
    return (text[:60] + "…") if len(text) > 60 else text
