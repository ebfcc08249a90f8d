"""Workflow scale: parse + validate + compile time for generated 10/100/1,000-step workflows, and how flat
the per-step cost stays from 10 to 1,000 steps.

`python -m bench.scale [--quick]`
"""

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


def run(sizes: tuple[int, ...] = (10, 100, 1000), repeat: int = 7) -> dict[str, Any]:
    """Median milliseconds per phase for each size, and the flatness of the per-step cost: the largest
    workflow's per-step time over the smallest's (1.0 = perfectly flat)."""
    rows = []
    for n in sizes:
        text = json.dumps(generated(n))
        spec = parse_workflow(text, fmt="json")
        parse = _median_ms(lambda t=text: parse_workflow(t, fmt="json"), repeat)
        compile_ = _median_ms(lambda s=spec: compile_workflow(s), repeat)
        total = parse + compile_
        rows.append({"steps": n, "parse_validate_ms": round(parse, 3), "compile_ms": round(compile_, 3),
                     "total_ms": round(total, 3), "per_step_us": round(total * 1000 / n, 1)})
    flatness = round(rows[-1]["per_step_us"] / rows[0]["per_step_us"], 2) if len(rows) > 1 else None
    return {"rows": rows, "repeat": repeat, "flatness": flatness}


def report(results: dict[str, Any]) -> None:
    """Print the section."""
    print(f"workflow parse + validate + compile (JSON text, median of {results['repeat']}, ms)")
    print(f"{'steps':>8} {'parse+validate':>15} {'compile':>9} {'total':>9} {'per step':>10}")
    for row in results["rows"]:
        print(f"{row['steps']:>8} {row['parse_validate_ms']:>15.2f} {row['compile_ms']:>9.2f} "
              f"{row['total_ms']:>9.2f} {row['per_step_us']:>8.1f}µs")
    if results["flatness"] is not None:
        first, last = results["rows"][0]["steps"], results["rows"][-1]["steps"]
        print(f"  per-step cost {last} vs {first} steps: x{results['flatness']}")


if __name__ == "__main__":
    import sys

    report(run(repeat=3 if "--quick" in sys.argv else 9))
