"""The bus interface: how the engine sends step tasks to workers and gets results and live events back.

`LocalBus` (in-process, asyncio) and `RedisBus` (Redis Streams) implement it; the engine and the worker
only ever see this interface.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from ..messages import AgentMessage, Event, Lane


@dataclass
class Delivery:
    """A task handed to a worker; `ack()` it once its result is recorded."""

    message: AgentMessage
    token: Any = None  # transport-specific (stream id, ...)
    deliveries: int = 1  # how many times this message has been delivered
    error: str | None = None  # set when the transport could not read the message (it goes to the dead letters)


def send_lane(message: AgentMessage) -> Lane:
    """The lane a task travels in: its priority, clamped to the four lanes.

    (A re-sent task, a "fix", already comes one lane up from `StepRunner.dispatch`.)
    """
    return Lane(max(min(int(message.priority), int(Lane.CRITICAL)), int(Lane.LOW)))


@dataclass
class _Subscription:
    execution_id: str | None
    queue: asyncio.Queue[Event] = field(default_factory=asyncio.Queue)


class Bus(abc.ABC):
    """Carries task messages to workers, result messages back, and live events to subscribers."""

    name: str = "bus"

    def __init__(self) -> None:
        self._replies: dict[str, asyncio.Future[AgentMessage]] = {}
        self._subscriptions: list[_Subscription] = []

    async def start(self) -> None:  # noqa: B027 - optional: LocalBus has nothing to start
        """Connect / start background readers."""

    async def close(self) -> None:
        """Release connections and wake every waiter."""
        for fut in self._replies.values():
            if not fut.done():
                fut.cancel()
        self._replies.clear()

    # -- tasks --------------------------------------------------------------------------------------
    @abc.abstractmethod
    async def send(self, message: AgentMessage) -> None:
        """Queue a task for its recipient agent, in the lane of its priority."""

    @abc.abstractmethod
    async def receive(self, recipients: Collection[str] | None = None, timeout: float | None = None) -> Delivery | None:
        """The next task for one of `recipients` (all when None): highest lane first; None on timeout."""

    @abc.abstractmethod
    async def ack(self, delivery: Delivery) -> None:
        """Acknowledge a task whose result has been recorded."""

    @abc.abstractmethod
    async def depth(self, recipients: Collection[str] | None = None) -> int:
        """How many tasks wait (not yet delivered) for these recipients."""

    async def reply_and_ack(self, message: AgentMessage, delivery: Delivery) -> None:
        """Send a result and acknowledge its task (RedisBus does both in one round trip)."""
        await self.reply(message)
        await self.ack(delivery)

    async def holds(self, correlation_id: str) -> bool:
        """Whether the transport still has this task (waiting, or being run): a result may still come.

        False by default (the in-process bus: the engine's lease alone decides to send again)."""
        return False

    async def abandon(self, delivery: Delivery) -> None:  # noqa: B027 - optional: LocalBus relies on the lease
        """Give up a task without a recorded result (the worker failed): let it be delivered again later."""

    async def dead_letter(self, entry: dict[str, Any]) -> None:  # noqa: B027 - optional
        """Also put a dead letter on the transport's dead-letter stream (the database keeps the record)."""

    # -- results ------------------------------------------------------------------------------------
    def expect_reply(self, correlation_id: str) -> asyncio.Future[AgentMessage]:
        """A future resolved by the result with this correlation id; call before sending the task."""
        fut = self._replies.get(correlation_id)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self._replies[correlation_id] = fut
        return fut

    def forget_reply(self, correlation_id: str) -> None:
        """Stop waiting for a result (timed out, cancelled)."""
        fut = self._replies.pop(correlation_id, None)
        if fut is not None and not fut.done():
            fut.cancel()

    def _resolve_reply(self, message: AgentMessage) -> bool:
        fut = self._replies.pop(message.correlation_id, None)
        if fut is None or fut.done():
            return False  # a duplicate or late result: the ledger already has it
        fut.set_result(message)
        return True

    @abc.abstractmethod
    async def reply(self, message: AgentMessage) -> None:
        """Send a result back to whoever waits on its correlation id."""

    # -- live events --------------------------------------------------------------------------------
    async def publish(self, events: Collection[Event]) -> None:
        """Publish events to live subscribers (in this process; RedisBus also to other processes)."""
        self._fan_out(events)

    def _fan_out(self, events: Collection[Event]) -> None:
        for sub in self._subscriptions:
            for event in events:
                if sub.execution_id is None or sub.execution_id == event.execution_id:
                    sub.queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self, execution_id: str | None = None) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue of live events of one execution (or all); unsubscribes on exit."""
        sub = _Subscription(execution_id)
        self._subscriptions.append(sub)
        try:
            yield sub.queue
        finally:
            self._subscriptions.remove(sub)
