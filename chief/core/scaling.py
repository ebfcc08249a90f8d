"""Worker heartbeats (who is up, what they serve, their load) and auto-scaling of a worker's concurrency.

A worker beats every `HEARTBEAT_S` into a Redis hash that expires after three missed beats, so `chief
workers` lists only live workers. The autoscaler moves the worker's concurrency limit between MIN and MAX:
up at once to cover the queue depth of the agents it serves, down by half (never below MIN, never below
what is running) after `idle_s` without waiting work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .bus.keys import Keys
from .errors import ChiefError

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0


def parse_concurrency(text: str) -> tuple[int, int]:
    """`N` or `MIN..MAX` -> (min, max)."""
    try:
        low, _, high = text.partition("..")
        minimum, maximum = int(low), int(high or low)
    except ValueError as exc:
        raise ChiefError(f"--concurrency '{text}': use N or MIN..MAX, e.g. 2..10") from exc
    if minimum < 1 or maximum < minimum:
        raise ChiefError(f"--concurrency '{text}': need 1 <= MIN <= MAX")
    return minimum, maximum


@dataclass
class WorkerInfo:
    """What a live worker says about itself in its last heartbeat."""

    name: str
    host: str
    pid: int
    agents: list[str]  # ["*"] for all
    minimum: int
    maximum: int
    limit: int
    active: int
    processed: int
    started_at: float
    seen_at: float
    extra: dict[str, Any] = field(default_factory=dict)

    def serves(self, agent: str) -> bool:
        return "*" in self.agents or agent in self.agents


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def list_workers(redis: Any, keys: Keys) -> list[WorkerInfo]:
    """Live workers (heartbeat not expired), by name; forgets the ones that stopped beating."""
    names = [_s(n) for n in await redis.zrange(keys.workers, 0, -1)]
    if not names:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(keys.worker(name))
        rows = await pipe.execute()
    out, gone = [], []
    for name, row in zip(names, rows, strict=True):
        if not row:
            gone.append(name)
            continue
        r = {_s(k): _s(v) for k, v in row.items()}
        out.append(WorkerInfo(name=name, host=r.get("host", ""), pid=int(r.get("pid", 0)),
                              agents=[a for a in r.get("agents", "*").split(",") if a],
                              minimum=int(r.get("min", 1)), maximum=int(r.get("max", 1)),
                              limit=int(r.get("limit", 1)), active=int(r.get("active", 0)),
                              processed=int(r.get("processed", 0)), started_at=float(r.get("started_at", 0)),
                              seen_at=float(r.get("seen_at", 0))))
    if gone:
        await redis.zrem(keys.workers, *gone)
    return out


class Autoscaler:
    """Beats for a worker and scales its concurrency limit between `minimum` and `maximum`."""

    def __init__(self, worker: Worker, minimum: int, maximum: int, *, redis: Any = None, keys: Keys | None = None,
                 idle_s: float = 5.0, interval_s: float = 0.5, heartbeat_s: float = HEARTBEAT_S):
        self.worker = worker
        self.minimum, self.maximum = minimum, maximum
        self.redis = redis
        self.keys = keys or Keys()
        self.idle_s = idle_s
        self.interval_s = interval_s
        self.heartbeat_s = heartbeat_s
        self.started_at = time.time()
        self._idle_since: float | None = None
        self._last_beat = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start scaling and beating in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"autoscaler-{self.worker.name}")

    async def stop(self) -> None:
        """Stop, and remove this worker from the live list."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self.redis is not None:
            try:
                await self.redis.delete(self.keys.worker(self.worker.name))
                await self.redis.zrem(self.keys.workers, self.worker.name)
            except Exception as exc:  # noqa: BLE001 - stopping anyway; the heartbeat expires by itself
                log.warning("cannot remove worker %s from the live list: %s", self.worker.name, exc)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
                if time.monotonic() - self._last_beat >= self.heartbeat_s:
                    await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis away for a moment: try again next tick
                log.warning("worker %s: scaling / heartbeat failed: %s", self.worker.name, exc)
            await asyncio.sleep(self.interval_s)

    async def tick(self) -> int:
        """Adjust the limit once from the queue depth; returns the new limit."""
        worker = self.worker
        depth = await worker.bus.depth(worker.agents)
        # `active` counts the slot waiting in `receive` too, so running + waiting work is active + depth.
        want = worker.active + depth
        limit = worker.limit
        now = time.monotonic()
        if depth > 0:
            self._idle_since = None
            if want > limit and limit < self.maximum:
                limit = min(self.maximum, want)
        elif limit > self.minimum and worker.active < limit:
            if self._idle_since is None:
                self._idle_since = now
            elif now - self._idle_since >= self.idle_s:
                limit = max(self.minimum, worker.active, limit // 2)
                self._idle_since = now
        if limit != worker.limit:
            log.info("worker %s: concurrency %d -> %d (queue depth %d)", worker.name, worker.limit, limit, depth)
            await worker.set_limit(limit)
            if self.redis is not None:
                await self.beat()
        return limit

    async def beat(self) -> None:
        """Write this worker's heartbeat (expires after three missed beats)."""
        self._last_beat = time.monotonic()
        if self.redis is None:
            return
        worker = self.worker
        key = self.keys.worker(worker.name)
        mapping = {"host": socket.gethostname(), "pid": os.getpid(),
                   "agents": ",".join(sorted(worker.agents)) if worker.agents else "*",
                   "min": self.minimum, "max": self.maximum, "limit": worker.limit, "active": worker.active,
                   "processed": worker.processed, "started_at": self.started_at, "seen_at": time.time()}
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.pexpire(key, int(self.heartbeat_s * 3000))
            pipe.zadd(self.keys.workers, {worker.name: time.time()})
            await pipe.execute()
