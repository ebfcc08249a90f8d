"""The Redis bus: round trip (dispatch -> worker process -> reply) p50/p99 next to a bare redis-py PING
measured in the same run, and durable steps/s with 20 executions in flight (Redis bus, PostgreSQL ledger
and checkpoints, `chief worker` processes running the no-op `echo` agent).

`python -m bench.bus --serve URL PREFIX` is the echo-replier process used for the round trip.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from chief.core.bus.redis import RedisBus, connect
from chief.core.messages import AgentMessage

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("CHIEF_BENCH_REDIS", "redis://127.0.0.1:6379/0")
PG_ADMIN = os.environ.get("CHIEF_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)]


async def _serve(url: str, prefix: str) -> None:
    """Answer every task on recipient `bench` at once (a worker with nothing to do)."""
    bus = RedisBus(url, prefix=prefix)
    await bus.start()
    client = connect(url, max_connections=2)
    await client.set(f"{prefix}:ready", "1")
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        delivery = await bus.receive(["bench"], timeout=0.5)
        if delivery is None:
            continue
        m = delivery.message
        await bus.reply_and_ack(AgentMessage(sender=m.recipient, recipient=m.sender, type="result",
                                             correlation_id=m.correlation_id, payload={"ok": True}), delivery)
    await client.aclose(close_connection_pool=True)
    await bus.close()


async def _wait_key(client: Any, key: str, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await client.exists(key):
            await asyncio.sleep(0.05)


async def round_trip(n: int = 2000) -> dict[str, float]:
    """Sequential bus round trips through a replier process, and bare PINGs, in the same run (ms)."""
    prefix = f"bench-{secrets.token_hex(4)}"
    proc = subprocess.Popen([sys.executable, "-m", "bench.bus", "--serve", REDIS_URL, prefix], cwd=ROOT)
    bus = RedisBus(REDIS_URL, prefix=prefix)
    await bus.start()
    try:
        await _wait_key(bus.redis, f"{prefix}:ready")
        pings, trips = [], []
        for i in range(n // 10):  # warm up both paths
            await bus.redis.ping()
            await _trip(bus, f"warm{i}")
        for i in range(n):
            t0 = time.perf_counter()
            await bus.redis.ping()
            pings.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await _trip(bus, str(i))
            trips.append((time.perf_counter() - t0) * 1000)
        return {"n": n, "ping_p50_ms": statistics.median(pings), "ping_p99_ms": _pct(pings, 0.99),
                "bus_p50_ms": statistics.median(trips), "bus_p99_ms": _pct(trips, 0.99)}
    finally:
        proc.terminate()
        proc.wait(10)
        keys = [k async for k in bus.redis.scan_iter(f"{prefix}:*")]
        if keys:
            await bus.redis.delete(*keys)
        await bus.close()


async def _trip(bus: RedisBus, cid: str) -> None:
    reply = bus.expect_reply(cid)
    await bus.send(AgentMessage(sender="bench-orchestrator", recipient="bench", type="task", correlation_id=cid))
    await asyncio.wait_for(reply, 10)


def _create_db() -> tuple[str, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"chief_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(PG_ADMIN).set(database=name, drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return name, url


def _drop_db(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def steps_per_second(executions: int = 20, steps: int = 10, workers: int = 2,
                           redis: bool = True) -> dict[str, float]:
    """`executions` chains of `steps` echo steps in flight at once, on `workers` worker processes (or,
    with `redis=False`, the same on the in-process bus and one embedded worker: the baseline)."""
    from chief.core.config import Settings
    from chief.core.engine import Engine
    from chief.core.store import Store
    from chief.core.workflows import parse_workflow

    name, db_url = _create_db()
    prefix = f"bench-{secrets.token_hex(4)}"
    home = tempfile.mkdtemp(prefix="chief-bench-")
    procs = []
    try:
        store = await Store.open(db_url, migrate=True)
        await store.close()
        env = {**os.environ, "CHIEF_HOME": home, "CHIEF_DATABASE_URL": db_url, "CHIEF_REDIS_URL": REDIS_URL,
               "CHIEF_REDIS_PREFIX": prefix, "CHIEF_LOAD_PLUGINS": ""}
        for i in range(workers if redis else 0):
            procs.append(subprocess.Popen([sys.executable, "-m", "chief.cli", "worker", "--name", f"bench-{i}",
                                           "--agents", "echo", "--concurrency", "16"], env=env, cwd=ROOT,
                                          stdout=subprocess.DEVNULL))
        spec = parse_workflow(yaml.safe_dump({"name": "chain", "steps": [
            {"key": f"s{i}", "agent": "echo", "prompt": f"step {i}", **({"depends_on": [f"s{i - 1}"]} if i else {})}
            for i in range(steps)]}), fmt="yaml")
        settings = Settings(home=Path(home), database_url=db_url, redis_url=REDIS_URL if redis else None,
                            redis_prefix=prefix, embedded_workers=0)
        engine = await Engine.open(settings, workers=0 if redis else 1)
        try:
            if redis:
                await _wait_key(engine.bus.redis, f"{prefix}:worker:bench-{workers - 1}")
            await engine.run(spec)  # warm up: compile, connections, workers' first tasks
            t0 = time.perf_counter()
            ids = [await engine.start(spec) for _ in range(executions)]
            records = [await engine.wait(i, finished=True) for i in ids]
            elapsed = time.perf_counter() - t0
        finally:
            await engine.close()
        ok = sum(r.status == "succeeded" for r in records)
        return {"bus": "redis" if redis else "local", "executions": executions, "steps_each": steps,
                "workers": workers if redis else 0, "succeeded": ok,
                "seconds": elapsed, "steps_per_s": executions * steps / elapsed,
                "step_ms_avg": elapsed * 1000 / steps}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        client = connect(REDIS_URL, max_connections=2)
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose(close_connection_pool=True)
        _drop_db(name)


def run(quick: bool = False) -> dict[str, Any]:
    """Both measurements."""
    steps = 5 if quick else 10
    return {"round_trip": asyncio.run(round_trip(500 if quick else 2000)),
            "throughput": asyncio.run(steps_per_second(20, steps)),
            "throughput_local": asyncio.run(steps_per_second(20, steps, redis=False))}


def report(results: dict[str, Any]) -> None:
    rt, tp = results["round_trip"], results["throughput"]
    print(f"redis bus round trip (dispatch -> worker process -> reply), {rt['n']} sequential")
    print(f"  bus   p50 {rt['bus_p50_ms']:.3f} ms   p99 {rt['bus_p99_ms']:.3f} ms")
    print(f"  PING  p50 {rt['ping_p50_ms']:.3f} ms   p99 {rt['ping_p99_ms']:.3f} ms   (bare redis-py, same run)")
    print(f"durable steps, {tp['executions']} executions x {tp['steps_each']} chained echo steps in flight, "
          f"{tp['workers']} worker processes, PostgreSQL + Redis")
    print(f"  {tp['steps_per_s']:.0f} steps/s ({tp['succeeded']}/{tp['executions']} succeeded in {tp['seconds']:.2f} s)")
    lo = results["throughput_local"]
    print(f"  {lo['steps_per_s']:.0f} steps/s on the in-process bus, same database, same run (baseline: the "
          f"orchestrator's own cost) ({lo['succeeded']}/{lo['executions']} in {lo['seconds']:.2f} s)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        asyncio.run(_serve(sys.argv[2], sys.argv[3]))
    else:
        report(run(quick="--quick" in sys.argv))
