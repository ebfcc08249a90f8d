"""Where events go: one transaction in the store with the writes they describe, then live subscribers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from .bus import Bus
from .messages import LIVE_ONLY_EVENTS, AgentMessage, Event, EventType
from .store import StepRecord, Store

log = logging.getLogger(__name__)
TOKEN_BATCH_S = 0.075  # streamed text is published at most this often per step (a chat re-renders per batch)


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

    async def publish_live(self, events: Sequence[Event]) -> None:
        """Publish live-only events (`step.token`) to subscribers; they are never stored (no database write)."""
        for event in events:
            if event.type not in LIVE_ONLY_EVENTS:
                raise ValueError(f"{event.type} is a stored event: use emit(), not publish_live()")
        await self.bus.publish(events)


class TokenStream:
    """Batches a streaming answer's text into `step.token` events, published live every `TOKEN_BATCH_S`.

    Give `on_token` to a provider as its `on_token` option; call `close()` when the completion is over
    to publish what is left. A failed publish is logged and the stream goes on (the text is in the result).
    """

    def __init__(self, sink: EventSink, *, execution_id: str, step_key: str, task_key: str, attempt: int,
                 every_s: float = TOKEN_BATCH_S) -> None:
        self.sink = sink
        self.base = {"execution_id": execution_id, "step_key": step_key, "task_key": task_key}
        self.attempt = attempt
        self.every_s = every_s
        self.buffer: list[str] = []
        self.published = 0  # batches sent
        self._last = 0.0
        self._timer: asyncio.Task[None] | None = None
        self._publishing = False
        self._lock = asyncio.Lock()

    async def on_token(self, text: str) -> None:
        """Take one piece of text; publish the batch when `every_s` has passed since the last one."""
        if not text:
            return
        self.buffer.append(text)
        if time.monotonic() - self._last >= self.every_s:
            await self.flush()
        elif self._timer is None or self._timer.done():  # a pause in the stream still shows what came
            self._publishing = False
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(max(self.every_s - (time.monotonic() - self._last), 0.0))
        self._publishing = True
        await self.flush()

    async def flush(self) -> None:
        """Publish the buffered text now (one `step.token` event)."""
        async with self._lock:
            if not self.buffer:
                return
            text, self.buffer = "".join(self.buffer), []
            self._last = time.monotonic()
            event = Event(type=EventType.STEP_TOKEN, data={"text": text, "attempt": self.attempt}, **self.base)
            try:
                await self.sink.publish_live([event])
                self.published += 1
            except Exception as exc:  # noqa: BLE001 - streaming is a view; the answer is still recorded
                log.warning("cannot publish streamed text of %s: %s", self.base["task_key"], exc)

    async def close(self) -> None:
        """Publish what is left and stop the timer."""
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done():
            if self._publishing:  # a timer that is publishing finishes (its text is taken); others stop
                await timer
            else:
                timer.cancel()
        await self.flush()
