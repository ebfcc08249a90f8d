"""A run shown live in a chat session: its message and buttons, one Chainlit step per workflow step, the board.

The run lives in the engine; this only watches it. A watcher subscribes to the execution's events on the
bus, catches up from the store (so a reloaded page or a second session sees everything that happened),
and applies each event as it arrives: the step's status, the board's colours and the buttons.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import chainlit as cl
from chainlit.utils import utc_now

from ..core.messages import Event, EventType
from ..core.store import FINISHED_EXECUTION_STATUSES
from ..core.workflows import WorkflowSpec
from .board import board_props
from .runtime import ChatRuntime

log = logging.getLogger(__name__)

STEP_STATUS = {
    EventType.STEP_QUEUED: "queued", EventType.STEP_STARTED: "running", EventType.STEP_RETRYING: "retrying",
    EventType.STEP_SUCCEEDED: "succeeded", EventType.STEP_FAILED: "failed", EventType.STEP_SKIPPED: "skipped",
    EventType.STEP_WAITING_APPROVAL: "waiting", EventType.STEP_APPROVED: "approved",
    EventType.STEP_REJECTED: "rejected",
}
RUN_STATUS = {
    EventType.EXECUTION_CREATED: "pending", EventType.EXECUTION_STARTED: "running",
    EventType.EXECUTION_RESUMED: "running", EventType.EXECUTION_PAUSING: "pausing",
    EventType.EXECUTION_PAUSED: "paused", EventType.EXECUTION_WAITING: "waiting",
    EventType.EXECUTION_CANCELLED: "cancelled", EventType.EXECUTION_SUCCEEDED: "succeeded",
    EventType.EXECUTION_FAILED: "failed",
}
FINISHED = {"succeeded", "failed", "cancelled"}
ICONS = {"queued": "⏳", "running": "▶️", "retrying": "🔁", "succeeded": "✅", "failed": "❌", "skipped": "⏭️",
         "waiting": "✋", "approved": "👍", "rejected": "🚫"}


def as_text(value: Any) -> str:
    """A result as Markdown: text as is, data as a JSON block."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return "```json\n" + json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n```"


class RunView:
    """One execution as this session shows it."""

    def __init__(self, runtime: ChatRuntime, execution_id: str, spec: WorkflowSpec) -> None:
        self.runtime = runtime
        self.execution_id = execution_id
        self.spec = spec
        self.status = "pending"
        self.statuses: dict[str, str] = {}
        self.waiting: list[str] = []
        self.steps: dict[str, cl.Step] = {}
        self.message: cl.Message | None = None
        self.board: cl.CustomElement | None = None
        self.actions: list[cl.Action] = []
        self.last_event_id = 0
        self.answered = False
        self.subscribed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.note: str | None = None  # shown above the headline, e.g. "Still running from before:"

    # -- showing ------------------------------------------------------------------------------------
    def _headline(self) -> str:
        text = f"Run `{self.execution_id[:8]}` of **{self.spec.name}** — {self.status}"
        if self.note:
            text = f"{self.note}\n\n{text}"
        if self.waiting:
            text += "\n\nWaiting for your approval: " + ", ".join(f"`{k}`" for k in self.waiting)
        return text

    async def open_message(self, *, note: str | None = None) -> None:
        """Post the run's message with its board and buttons."""
        self.note = note
        self.board = cl.CustomElement(name="PlanBoard", props=self._props(), display="inline")
        self.message = cl.Message(content=self._headline(),
                                  author="Chief", elements=[self.board])
        await self.message.send()
        await self._set_actions()

    def _props(self) -> dict[str, Any]:
        return board_props(self.spec, self.statuses, run_status=self.status,
                           title=f"{self.spec.name} · {self.execution_id[:8]}")

    def _wanted_actions(self) -> list[cl.Action]:
        payload = {"execution_id": self.execution_id}
        if self.status in FINISHED:
            return []
        wanted: list[cl.Action] = []
        if self.status in ("running", "pending"):
            wanted.append(cl.Action(name="chief_pause", payload=payload, label="Pause", icon="pause"))
        if self.status == "paused":
            wanted.append(cl.Action(name="chief_resume", payload=payload, label="Resume", icon="play"))
        for key in self.waiting:
            wanted.append(cl.Action(name="chief_approve", payload={**payload, "step": key},
                                    label=f"Approve {key}", icon="check"))
            wanted.append(cl.Action(name="chief_reject", payload={**payload, "step": key},
                                    label=f"Reject {key}", icon="x"))
        wanted.append(cl.Action(name="chief_cancel", payload=payload, label="Cancel", icon="square"))
        return wanted

    async def _set_actions(self) -> None:
        if self.message is None:
            return
        wanted = self._wanted_actions()
        if [(a.name, a.label) for a in wanted] == [(a.name, a.label) for a in self.actions]:
            return
        for action in self.actions:
            await action.remove()
        self.actions = wanted
        self.message.actions = wanted
        for action in wanted:
            await action.send(for_id=self.message.id)

    async def _refresh(self) -> None:
        if self.message is None:
            return
        self.message.content = self._headline()
        await self.message.update()
        if self.board is not None:
            self.board.props = self._props()
            self.board.content = json.dumps(self.board.props)
            await self.board.update()
        await self._set_actions()

    def _step(self, event: Event) -> cl.Step:
        key = event.task_key or event.step_key or "?"
        step = self.steps.get(key)
        if step is None:
            parent = self.message.id if self.message is not None else None
            step = cl.Step(name=key, type="tool", parent_id=parent, show_input=False)
            step.start = utc_now()
            step.input = ""
            self.steps[key] = step
        return step

    # -- events -------------------------------------------------------------------------------------
    async def apply(self, event: Event) -> None:
        """Show one event (events at or before the last one shown are ignored)."""
        if event.id is not None:
            if event.id <= self.last_event_id:
                return
            self.last_event_id = event.id
        if event.type in STEP_STATUS:
            await self._apply_step(event)
        if event.type in RUN_STATUS:
            self.status = RUN_STATUS[event.type]
            if event.type == EventType.EXECUTION_WAITING:
                self.waiting = list(event.data.get("steps") or [])
            elif event.type in (EventType.EXECUTION_RESUMED, EventType.EXECUTION_STARTED):
                self.waiting = []
            await self._refresh()
            if self.status in FINISHED:
                await self._answer(event)
        elif event.step_key:
            await self._refresh()

    async def _apply_step(self, event: Event) -> None:
        status = STEP_STATUS[EventType(event.type)]
        key = event.step_key or ""
        base = key.split("[", 1)[0]
        self.statuses[base] = "running" if status == "approved" else status
        if status in ("approved", "rejected") and base in self.waiting:
            self.waiting.remove(base)
        step = self._step(event)
        data = event.data or {}
        agent = data.get("agent")
        line = f"{ICONS.get(status, '')} {status}" + (f" · {agent}" if agent else "")
        if status == "retrying":
            line += f" · attempt {data.get('attempt')} failed: {data.get('error')}"
        if status == "waiting":
            line += "\n\nWaiting for approval. Prompt:\n\n" + str(data.get("prompt") or "")[:2000]
        if status == "succeeded":
            step.output = f"{line}\n\n{as_text(data.get('output'))}"
        elif status in ("failed", "rejected"):
            step.is_error = status == "failed"
            step.output = f"{line}\n\n{data.get('error') or data.get('reason') or ''}"
        elif status == "skipped":
            step.output = f"{line}: {data.get('reason') or ''}"
        else:
            step.output = line
        if status in ("succeeded", "failed", "skipped", "rejected"):
            step.end = utc_now()
        if not getattr(step, "_chief_sent", False):
            step._chief_sent = True  # type: ignore[attr-defined]
            await step.send()
        else:
            await step.update()

    async def _answer(self, event: Event) -> None:
        if self.answered:
            return
        self.answered = True
        for step in self.steps.values():  # nothing is left spinning once the run is over
            if step.end is None:
                step.end = utc_now()
                await step.update()
        if self.status == "succeeded":
            record = await self.runtime.engine.store.get_execution(self.execution_id)
            output = event.data.get("output") if "output" in event.data else (record.output if record else None)
            text = as_text(output) or "(the run finished with no output)"
        elif self.status == "failed":
            text = f"❌ The run failed: {event.data.get('error') or 'see the failed step'}"
        else:
            text = "⏹️ The run was cancelled."
        await cl.Message(content=text, author="Chief").send()

    # -- watching -----------------------------------------------------------------------------------
    async def watch(self) -> None:
        """Subscribe, catch up from the store, then show live events until the run is finished."""
        engine = self.runtime.engine
        try:
            async with engine.bus.subscribe(self.execution_id) as queue:
                self.subscribed.set()
                await self.catch_up()
                while self.status not in FINISHED:
                    event = await queue.get()
                    await self.apply(event)
                    while not queue.empty():
                        await self.apply(queue.get_nowait())
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a session that went away must not take the run with it
            log.exception("watching run %s stopped", self.execution_id)
        finally:
            self.subscribed.set()

    async def catch_up(self) -> None:
        """Apply the stored events not shown yet (a re-attached view starts here)."""
        for record in await self.runtime.engine.store.list_events(self.execution_id, after_id=self.last_event_id):
            await self.apply(Event(execution_id=record.execution_id, type=record.type, step_key=record.step_key,
                                   task_key=record.task_key, data=record.data or {}, id=record.id))
        record = await self.runtime.engine.store.get_execution(self.execution_id)
        if record is not None and record.status in FINISHED_EXECUTION_STATUSES and self.status not in FINISHED:
            self.status = record.status
            await self._refresh()

    def start_watching(self) -> asyncio.Task[None]:
        """Watch in the background (in this session's context); returns the task."""
        self.task = asyncio.create_task(self.watch())
        self.runtime.watchers.setdefault(self.execution_id, set()).add(self.task)
        self.task.add_done_callback(lambda t: self.runtime.watchers.get(self.execution_id, set()).discard(t))
        return self.task
