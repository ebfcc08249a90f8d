"""`chief worker` (run agents for steps carried by Redis) and `chief workers` (list the live ones)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from contextlib import AsyncExitStack

import click
from rich.table import Table

from ..core.config import Settings
from ..core.errors import ChiefError, UnknownAgent
from .common import EXIT_INTERRUPTED, EXIT_OK, console, run_async, to_json
from .main import cli


def _redis_settings() -> Settings:
    settings = Settings()
    if not settings.redis_url:
        raise ChiefError("CHIEF_REDIS_URL is not set: workers take steps from Redis "
                         "(e.g. export CHIEF_REDIS_URL=redis://127.0.0.1:6379/0); without it, "
                         "`chief run` and `chief chat` run their steps themselves")
    return settings


@cli.command("worker")
@click.option("--agents", default="", metavar="A,B", help="Agents to serve (comma-separated; default: all).")
@click.option("--concurrency", default="1..8", show_default=True, metavar="N|MIN..MAX",
              help="Tasks at once; a range scales with the queue depth.")
@click.option("--name", help="Worker name (default: worker-<host>-<pid>).")
@click.option("--idle-s", default=5.0, show_default=True, help="Idle time before concurrency shrinks.")
@run_async
async def worker_command(agents: str, concurrency: str, name: str | None, idle_s: float) -> int:
    """Run agents for the steps of any orchestrator, taken from Redis, until stopped (Ctrl-C / SIGTERM)."""
    from ..core.bus.redis import RedisBus
    from ..core.plugins import get_registry
    from ..core.scaling import Autoscaler, parse_concurrency
    from ..core.store import Store
    from ..core.worker import Worker, resilience_for

    settings = _redis_settings()
    minimum, maximum = parse_concurrency(concurrency)
    registry = get_registry()
    wanted = [a.strip() for a in agents.split(",") if a.strip()]
    for agent in wanted:
        if agent not in registry.agents:
            raise UnknownAgent(f"no agent '{agent}' (known: {', '.join(sorted(registry.agents))}; see `chief agents`)")
    served = wanted or sorted(registry.agents)
    async with AsyncExitStack() as stack:
        store = await Store.open(settings.resolved_database_url())
        stack.push_async_callback(store.close)
        bus = RedisBus(settings.redis_url or "", prefix=settings.redis_prefix, claim_idle_s=settings.claim_s)
        await bus.start()
        stack.push_async_callback(bus.close)
        breaker, cache = resilience_for(settings, bus)
        worker = Worker(bus, store, registry, agents=served, concurrency=minimum, name=name,
                        default_provider=settings.provider, default_model=settings.model,
                        breaker=breaker, cache=cache)
        scaler = Autoscaler(worker, minimum, maximum, redis=bus.redis, keys=bus.keys, idle_s=idle_s)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await scaler.beat()
        worker.start()
        scaler.start()
        console.print(f"worker {worker.name} serving {', '.join(served)} "
                      f"(concurrency {minimum}..{maximum}); Ctrl-C to stop", markup=False)
        await stop.wait()
        console.print(f"worker {worker.name}: stopping after the tasks in flight (again to stop now)",
                      markup=False)
        stop.clear()

        async def shutdown() -> None:
            await scaler.stop()
            await worker.stop()

        finishing = asyncio.create_task(shutdown())
        again = asyncio.create_task(stop.wait())
        await asyncio.wait({finishing, again}, return_when=asyncio.FIRST_COMPLETED)
        if not finishing.done():
            # Cold stop: tasks in flight stay pending in Redis; another worker takes them over after
            # CHIEF_CLAIM_S, and the ledger keeps their effect once.
            console.print(f"worker {worker.name}: stopped now; its tasks in flight go to other workers",
                          markup=False)
            sys.stdout.flush()
            os._exit(EXIT_INTERRUPTED)
        again.cancel()
    return EXIT_OK


@cli.command("workers")
@click.option("--json", "as_json", is_flag=True)
@run_async
async def workers_command(as_json: bool) -> int:
    """List live workers (by heartbeat): what they serve and their load."""
    from ..core.bus.keys import Keys
    from ..core.bus.redis import connect
    from ..core.scaling import list_workers

    settings = _redis_settings()
    redis = connect(settings.redis_url or "", max_connections=4)
    try:
        infos = await list_workers(redis, Keys(settings.redis_prefix))
    finally:
        await redis.aclose(close_connection_pool=True)
    if as_json:
        print(to_json([i.__dict__ for i in infos]))
        return EXIT_OK
    if not infos:
        console.print("no live workers (start one with `chief worker`)")
        return EXIT_OK
    table = Table(box=None, header_style="bold")
    for col in ("worker", "host/pid", "agents", "load", "concurrency", "processed", "seen"):
        table.add_column(col)
    now = time.time()
    for i in infos:
        table.add_row(i.name, f"{i.host}/{i.pid}", ", ".join(i.agents), f"{i.active}/{i.limit}",
                      f"{i.minimum}..{i.maximum}", str(i.processed), f"{now - i.seen_at:.1f}s ago")
    console.print(table)
    return EXIT_OK
