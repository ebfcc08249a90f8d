"""Where events go: one transaction in the store with the writes they describe, then live subscribers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .bus import Bus
from .messages import AgentMessage, Event
from .store import StepRecord, Store


class EventSink:
    """Records state changes with their events (one transaction), then publishes the events live.

    `observe` is called with every event after it is stored (plugins' `on_event`); it must not raise.
    """

    def __init__(self, store: Store, bus: Bus, observe: Callable[[Event], Any] | None = None):
        self.store = store
        self.bus = bus
        self.observe = observe

    async def emit(
        self,
        events: Sequence[Event] = (),
        *,
        steps: Sequence[StepRecord] = (),
        messages: Sequence[AgentMessage] = (),
        execution: dict[str, Any] | None = None,
        dead_letter: dict[str, Any] | None = None,
    ) -> None:
        """Store everything in one transaction; then publish the events (with their ids) live."""
        ids = await self.store.record(
            steps=steps, events=events, messages=messages, execution=execution, dead_letter=dead_letter
        )
        if not events:
            return
        for event, event_id in zip(events, ids, strict=False):
            event.id = event_id
        await self.bus.publish(events)
        if self.observe is not None:
            for event in events:
                self.observe(event)
