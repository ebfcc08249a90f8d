"""The throughput section's orchestrator process: one `Engine` on the Redis bus (no embedded worker) that
runs waves of chained echo executions and prints its results, with its own peak memory, as one JSON line.

`python -m bench.orchestrator --db URL --prefix P --home DIR --steps N --plan 1x10,20x3,100x1`
(`CxW`: W waves of C executions started at once and waited for; steps/s = steps done / wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.workflows import parse_workflow

from .common import REDIS_URL, close_within, peak_rss_mb, run_async
from .durable import chain_yaml


def parse_plan(text: str) -> list[tuple[int, int]]:
    """`1x10,20x3` -> [(1, 10), (20, 3)]: (executions in flight, waves)."""
    plan = []
    for part in text.split(","):
        count, _, waves = part.partition("x")
        plan.append((int(count), int(waves or 1)))
    return plan


async def _wave(engine: Engine, spec: Any, count: int, tag: str) -> int:
    ids = [await engine.start(spec, {"tag": f"{tag}-{i}"}) for i in range(count)]
    records = await asyncio.gather(*(engine.wait(i, finished=True) for i in ids))
    return sum(r.status == "succeeded" for r in records)


async def measure(db_url: str, prefix: str, steps: int, plan: list[tuple[int, int]], home: Path) -> dict[str, Any]:
    """Steps/s for each (in flight, waves) of `plan`, after a warm-up wave."""
    settings = Settings(home=home, database_url=db_url,
                        redis_url=REDIS_URL, redis_prefix=prefix, embedded_workers=0, cache_ttl_s=0)
    spec = parse_workflow(chain_yaml(steps, "bench-throughput"))
    rows = []
    engine = await Engine.open(settings, workers=0)
    try:
        await _wave(engine, spec, min(20, max(c for c, _ in plan)), "warm")
        for count, waves in plan:
            ok = 0
            t0 = time.perf_counter()
            for w in range(waves):
                ok += await _wave(engine, spec, count, f"c{count}w{w}")
            elapsed = time.perf_counter() - t0
            done = count * waves
            rows.append({"in_flight": count, "executions": done, "succeeded": ok, "steps": done * steps,
                         "seconds": round(elapsed, 3), "steps_per_s": round(done * steps / elapsed, 1)})
        result = {"rows": rows, "peak_rss_mb": peak_rss_mb(os.getpid())}
        print(json.dumps(result), flush=True)  # before closing: a close that hangs cannot lose it
        return result
    finally:
        await close_within(engine.close(), "the orchestrator's engine")


def main() -> None:
    """Measure; the results are printed as one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.orchestrator")
    parser.add_argument("--db", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--plan", default="1x10,20x3,100x1")
    parser.add_argument("--home", required=True, help="CHIEF_HOME (the caller removes it)")
    args = parser.parse_args()
    run_async(measure(args.db, args.prefix, args.steps, parse_plan(args.plan), Path(args.home)))


if __name__ == "__main__":
    main()
