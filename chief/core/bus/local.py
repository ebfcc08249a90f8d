"""LocalBus: the embedded, in-process bus (asyncio), with four priority lanes and aging."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Collection

from ..messages import AgentMessage, Lane
from .base import Bus, Delivery, send_lane

# A task that has waited this long in its lane is served before newer work of higher lanes, one lane
# up per period, so a steady stream of CRITICAL work cannot starve LOW work forever.
AGING_PERIOD_S = 5.0


class LocalBus(Bus):
    """Tasks in per-recipient heaps ordered by (effective lane, critical-path rank, age)."""

    name = "local"

    def __init__(self, *, aging_period_s: float = AGING_PERIOD_S) -> None:
        super().__init__()
        self.aging_period_s = aging_period_s
        self._queues: dict[str, list[tuple[int, int, int, float, AgentMessage]]] = {}
        self._seq = itertools.count()
        self._changed = asyncio.Condition()
        self._closed = False

    async def send(self, message: AgentMessage) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")
        heap = self._queues.setdefault(message.recipient, [])
        heapq.heappush(heap, (-int(send_lane(message)), -message.rank, next(self._seq), time.monotonic(), message))
        async with self._changed:
            self._changed.notify_all()

    def _effective(self, entry: tuple[int, int, int, float, AgentMessage], now: float) -> tuple[int, int, int]:
        neg_lane, neg_rank, seq, queued_at, _ = entry
        aged = int((now - queued_at) // self.aging_period_s)
        return (max(neg_lane - aged, -int(Lane.CRITICAL) - 1), neg_rank, seq)

    def _pop(self, recipients: Collection[str] | None) -> AgentMessage | None:
        now = time.monotonic()
        best_key = None
        best_heap = None
        best_entry = None
        names = self._queues.keys() if recipients is None else recipients
        for name in names:
            heap = self._queues.get(name)
            if not heap:
                continue
            # The heap head is the best by static priority; aging can only lift older entries, and
            # the oldest entry of each lower lane is found by a short scan (queues are small in-process).
            candidates = [heap[0]] + [e for e in heap[1:] if now - e[3] >= self.aging_period_s]
            for entry in candidates:
                key = self._effective(entry, now)
                if best_key is None or key < best_key:
                    best_key, best_heap, best_entry = key, heap, entry
        if best_heap is None:
            return None
        if best_heap[0] is best_entry:
            heapq.heappop(best_heap)
        else:
            best_heap.remove(best_entry)
            heapq.heapify(best_heap)
        return best_entry[4]

    async def receive(self, recipients: Collection[str] | None = None, timeout: float | None = None) -> Delivery | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        async with self._changed:
            while True:
                if self._closed:
                    return None
                message = self._pop(recipients)
                if message is not None:
                    return Delivery(message)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    return None

    async def ack(self, delivery: Delivery) -> None:
        """Nothing to do in-process: a task lives in memory until delivered."""

    async def depth(self, recipients: Collection[str] | None = None) -> int:
        names = self._queues.keys() if recipients is None else recipients
        return sum(len(self._queues.get(n, ())) for n in names)

    async def reply(self, message: AgentMessage) -> None:
        self._resolve_reply(message)

    async def close(self) -> None:
        self._closed = True
        async with self._changed:
            self._changed.notify_all()
        await super().close()
