"""A write that waits a moment before it is made, so that a fast step's writes share one transaction.

A worker records "running" when it starts an attempt. For a step that finishes within
`RUNNING_WRITE_DELAY_S` (a no-op agent, a cache-like tool call) that write would be followed at
once by the result's; instead the "running" event and start time go into the result's transaction
(one commit per step instead of two; the events keep their order). A step that runs longer gets
its "running" write after the delay, so the chat still shows it running within that delay (DESIGN's
budget for a status change is 200 ms).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from .messages import Event

log = logging.getLogger(__name__)

RUNNING_WRITE_DELAY_S = 0.05


class DeferredStart:
    """The "running" write of one attempt: made after `delay_s`, or folded into the attempt's next write.

    `write(events, started_at)` makes the write on its own (in the background when the delay runs out).
    Before any later write of the same attempt, call `take()`: it returns the events and start time that
    still have to go with that write (the timer is stopped), or nothing when they were written already
    (after waiting for that write, so the order of the rows in the database holds).
    """

    def __init__(self, events: Sequence[Event], started_at: datetime,
                 write: Callable[[Sequence[Event], datetime], Awaitable[Any]], *,
                 delay_s: float = RUNNING_WRITE_DELAY_S) -> None:
        self.events = list(events)
        self.started_at = started_at
        self._write = write
        self._task: asyncio.Task[Any] | None = None
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._fire) if delay_s > 0 else None
        if self._timer is None:
            self._fire()

    def _fire(self) -> None:
        self._task = asyncio.create_task(self._write(self.events, self.started_at))

    async def take(self) -> tuple[list[Event], datetime | None]:
        """What the next write of this attempt must carry: `(events, started_at)`, or `([], None)`."""
        if self._timer is not None:
            self._timer.cancel()
        if self._task is None:
            return self.events, self.started_at
        try:
            await self._task
        except Exception as exc:  # noqa: BLE001 - the store was unreachable: the next write carries it instead
            log.warning("recording a step's start failed (%s); it goes with the step's next write", exc)
            return self.events, self.started_at
        return [], None

    def cancel(self) -> None:
        """Drop it (the attempt ends without another write, e.g. the worker is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
