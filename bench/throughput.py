"""Throughput: durable steps/s with 1, 20 and 100 executions in flight (chains of echo steps), one
orchestrator process and two `chief worker` processes on Redis + PostgreSQL; next to Celery running chains
of no-op tasks on the same Redis (2 prefork processes, its own key prefix) for the same counts, in the same
run. Also the peak memory (VmHWM) of the orchestrator and of each worker process.

`python -m bench.throughput [--quick]`
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import profile
from .common import (
    REDIS_URL,
    base_env,
    database,
    delete_keys,
    log_tail,
    new_prefix,
    peak_rss_mb,
    python_args,
    ratio,
    spawn,
    start_workers,
    stop,
    wait_for_workers,
    workdir,
)

Plan = list[tuple[int, int]]


def _plan_text(plan: Plan) -> str:
    return ",".join(f"{c}x{w}" for c, w in plan)


def chief_run(steps: int, plan: Plan, workers: int = 2, timeout_s: float = 600,
              profile_dir: Path | None = None) -> dict[str, Any]:
    """The orchestrator process and `workers` worker processes on a fresh database and Redis prefix
    (sampled by py-spy into `profile_dir` when given)."""
    prefix = new_prefix("tput")
    with workdir("throughput") as home, database() as url:
        started = start_workers(workers, db_url=url, prefix=prefix, home=home)
        try:
            asyncio.run(wait_for_workers(started, prefix))
            log = home / "orchestrator.log"
            orch = spawn(python_args("-m", "bench.orchestrator", "--db", url, "--prefix", prefix, "--home", str(home),
                                     "--steps", str(steps), "--plan", _plan_text(plan)),
                         env=base_env(CHIEF_HOME=str(home)), log=log, stdout=subprocess.PIPE)
            profilers = []
            if profile_dir is not None:
                profilers = [profile.attach("orchestrator", orch.pid, profile_dir)]
                profilers += [profile.attach(f"worker-{i}", p.pid, profile_dir) for i, (p, _) in enumerate(started)]
            try:
                out, _ = orch.communicate(timeout=timeout_s)
            finally:
                stop(orch)
                for profiler in profilers:
                    profile.detach(profiler)
            if orch.returncode != 0 or not out.strip():
                raise RuntimeError(f"the bench orchestrator exited with {orch.returncode}:\n{log_tail(log)}")
            result = json.loads(out.decode().strip().splitlines()[-1])
            result["worker_peak_rss_mb"] = [peak_rss_mb(p.pid) for p, _ in started]
            result["steps_each"] = steps
            result["workers"] = workers
            return result
        finally:
            for proc, _ in started:
                stop(proc)
            asyncio.run(delete_keys(prefix))


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def celery_run(steps: int, plan: Plan, concurrency: int = 2, timeout_s: float = 120) -> dict[str, Any]:
    """Celery chains of `steps` no-op tasks, `count` chains in flight per wave, on a prefork worker."""
    from celery import chain

    from .celery_app import make_app

    base = new_prefix("celery")
    prefix = f"{base}:"
    with workdir("celery") as home:
        log = home / "celery.log"
        worker = spawn(python_args("-m", "celery", "-A", "bench.celery_app", "worker", "--pool", "prefork",
                                   "--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-gossip",
                                   "--without-mingle", "--without-heartbeat", "-n", f"{prefix.rstrip(':')}@%h"),
                       env=base_env(CHIEF_BENCH_CELERY_PREFIX=prefix, CHIEF_BENCH_REDIS=REDIS_URL), log=log)
        app = make_app(prefix)
        try:
            def wave(count: int, timeout: float) -> int:
                results = [chain(*[app.signature("bench.noop", args=(i,))]
                                 + [app.signature("bench.noop") for _ in range(steps - 1)]).apply_async()
                           for i in range(count)]
                return sum(r.get(timeout=timeout) == i for i, r in enumerate(results))

            try:
                wave(min(20, max(c for c, _ in plan)), 60)  # warm up; waits for the worker to start
            except Exception as exc:
                raise RuntimeError(f"the Celery worker did not run the warm-up ({exc!r}):\n{log_tail(log)}") from exc
            rows = []
            for count, waves in plan:
                ok = 0
                t0 = time.perf_counter()
                for _ in range(waves):
                    ok += wave(count, timeout_s)
                elapsed = time.perf_counter() - t0
                done = count * waves
                rows.append({"in_flight": count, "chains": done, "succeeded": ok, "jobs": done * steps,
                             "seconds": round(elapsed, 3), "jobs_per_s": round(done * steps / elapsed, 1)})
            peaks = [peak_rss_mb(p) for p in [worker.pid, *_children(worker.pid)]]
            return {"rows": rows, "steps_each": steps, "concurrency": concurrency, "peak_rss_mb": peaks}
        finally:
            app.close()
            stop(worker)
            asyncio.run(delete_keys(base))


def run(*, quick: bool = False, steps: int | None = None, plan: Plan | None = None,
        celery: bool = True, profile_dir: Path | None = None) -> dict[str, Any]:
    """Chief, then Celery, for the same plan; the ratio per count."""
    steps = steps or (5 if quick else 10)
    plan = plan or ([(1, 4), (20, 1), (100, 1)] if quick else [(1, 20), (20, 5), (100, 3)])
    result: dict[str, Any] = {"chief": chief_run(steps, plan, profile_dir=profile_dir)}
    if profile_dir is not None:
        result["profiles"] = {p.stem: profile.summarize(p) for p in sorted(profile_dir.glob("*.txt"))}
    if celery:
        result["celery"] = celery_run(steps, plan)
        for ours, theirs in zip(result["chief"]["rows"], result["celery"]["rows"], strict=True):
            ours["celery_jobs_per_s"] = theirs["jobs_per_s"]
            ours["ratio"] = ratio(ours["steps_per_s"], theirs["jobs_per_s"])
    return result


def report(results: dict[str, Any]) -> None:
    """Print the section."""
    ours = results["chief"]
    print(f"throughput: chains of {ours['steps_each']} echo steps, one orchestrator process, {ours['workers']} "
          "worker processes (Redis + PostgreSQL); Celery: chains of no-op tasks, 2 prefork processes, same Redis")
    for row in ours["rows"]:
        celery = f"   Celery {row['celery_jobs_per_s']:7.1f} jobs/s  (x{row['ratio']})" if "ratio" in row else ""
        print(f"  {row['in_flight']:>3} in flight: Chief {row['steps_per_s']:7.1f} steps/s "
              f"({row['succeeded']}/{row['executions']} ok){celery}")
    for text in results.get("profiles", {}).values():
        print(text)
    print(f"  peak RSS: orchestrator {ours['peak_rss_mb']} MiB, workers {ours['worker_peak_rss_mb']} MiB"
          + (f"; Celery worker + children {results['celery']['peak_rss_mb']} MiB" if "celery" in results else ""))


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
