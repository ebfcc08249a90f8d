"""Workflow scale: parse + validate + compile time for generated 10/100/1,000-step workflows."""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from chief.core.workflows import compile_workflow, parse_workflow


def generated(n: int) -> dict[str, Any]:
    """A chain with 9-wide fan-outs every 10 steps: `n` steps, realistic joins and templates."""
    steps: list[dict[str, Any]] = []
    for i in range(n):
        step: dict[str, Any] = {"key": f"s{i}", "agent": "echo", "prompt": f"step {i}"}
        if i:
            hub = (i - 1) // 10 * 10
            deps = [f"s{hub}"] if i % 10 else [f"s{j}" for j in range(max(hub, i - 9), i)]
            step["depends_on"] = deps
            step["prompt"] += " after {{" + deps[0] + ".result}}"
        steps.append(step)
    return {"name": f"gen-{n}", "steps": steps}


def _median_ms(func, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def run(sizes: tuple[int, ...] = (10, 100, 1000), repeat: int = 7) -> list[dict[str, Any]]:
    """Median milliseconds per phase and the per-step cost of parse+validate+compile."""
    rows = []
    for n in sizes:
        text = json.dumps(generated(n))
        spec = parse_workflow(text, fmt="json")
        parse = _median_ms(lambda t=text: parse_workflow(t, fmt="json"), repeat)
        compile_ = _median_ms(lambda s=spec: compile_workflow(s), repeat)
        total = parse + compile_
        rows.append({"steps": n, "parse_validate_ms": round(parse, 3), "compile_ms": round(compile_, 3),
                     "total_ms": round(total, 3), "per_step_us": round(total * 1000 / n, 1)})
    return rows
