"""The Redis bus round trip: dispatch -> worker process -> reply, p50/p95/p99, next to a bare redis-py PING
measured in the same run (interleaved, so drift on the machine hits both alike).

`python -m bench.bus --serve URL PREFIX` is the replier process: a worker with nothing to do.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from typing import Any

from chief.core.bus.redis import RedisBus, connect
from chief.core.messages import AgentMessage

from .common import (
    REDIS_URL,
    base_env,
    close_within,
    python_args,
    redis_prefix,
    run_async,
    spawn,
    stop,
    summary_ms,
    wait_for_key,
    workdir,
)


async def _serve(url: str, prefix: str) -> None:
    """Answer every task for recipient `bench` at once."""
    bus = RedisBus(url, prefix=prefix)
    await bus.start()
    client = connect(url, max_connections=2)
    await client.set(f"{prefix}:ready", "1")
    stop_event = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop_event.set)
    while not stop_event.is_set():
        delivery = await bus.receive(["bench"], timeout=0.5)
        if delivery is None:
            continue
        m = delivery.message
        await bus.reply_and_ack(AgentMessage(sender=m.recipient, recipient=m.sender, type="result",
                                             correlation_id=m.correlation_id, payload={"ok": True}), delivery)
    await client.aclose(close_connection_pool=True)
    await close_within(bus.close(), "the replier's bus")


async def _trip(bus: RedisBus, cid: str) -> None:
    reply = bus.expect_reply(cid)
    await bus.send(AgentMessage(sender="bench-orchestrator", recipient="bench", type="task", correlation_id=cid))
    await asyncio.wait_for(reply, 10)


async def round_trip(n: int = 2000) -> dict[str, Any]:
    """`n` sequential bus round trips through a replier process, and `n` bare PINGs (ms)."""
    with workdir("bus") as home:
        return await _round_trip(n, home / "replier.log")


async def _round_trip(n: int, log: Path) -> dict[str, Any]:
    async with redis_prefix("bus") as prefix:
        proc = spawn(python_args("-m", "bench.bus", "--serve", REDIS_URL, prefix), env=base_env(), log=log)
        bus = RedisBus(REDIS_URL, prefix=prefix)
        await bus.start()
        try:
            await wait_for_key(bus.redis, f"{prefix}:ready", proc=proc, log=log)
            pings: list[float] = []
            trips: list[float] = []
            for i in range(max(n // 10, 5)):  # warm up both paths
                await bus.redis.ping()
                await _trip(bus, f"warm{i}")
            for i in range(n):
                t0 = time.perf_counter()
                await bus.redis.ping()
                pings.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                await _trip(bus, str(i))
                trips.append((time.perf_counter() - t0) * 1000)
        finally:
            stop(proc)
            await close_within(bus.close(), "the bench's bus")
    return {"n": n, "bus": summary_ms(trips), "ping": summary_ms(pings)}


def run(*, quick: bool = False, n: int | None = None) -> dict[str, Any]:
    """The section's results."""
    return {"round_trip": run_async(round_trip(n or (500 if quick else 2000)))}


def report(results: dict[str, Any]) -> None:
    """Print the section."""
    rt = results["round_trip"]
    bus, ping = rt["bus"], rt["ping"]
    print(f"redis bus round trip (dispatch -> worker process -> reply), {rt['n']} sequential")
    print(f"  bus   p50 {bus['p50_ms']:.3f}  p95 {bus['p95_ms']:.3f}  p99 {bus['p99_ms']:.3f} ms")
    print(f"  PING  p50 {ping['p50_ms']:.3f}  p95 {ping['p95_ms']:.3f}  p99 {ping['p99_ms']:.3f} ms"
          "   (bare redis-py, same run)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        run_async(_serve(sys.argv[2], sys.argv[3]))
    else:
        report(run(quick="--quick" in sys.argv))
