"""A run shown live in a chat session: its message and buttons, one Chainlit step per workflow step, the board.

The run lives in the engine; this only watches it. A watcher subscribes to the execution's events on the
bus, catches up from the store (so a reloaded page or a second session sees everything that happened),
and applies each event as it arrives: the step's status, the board's colours and the buttons.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import chainlit as cl
from chainlit.utils import utc_now

from ..core.accounting import usage_of_steps
from ..core.messages import Event, EventType, is_stale_status
from ..core.store import FINISHED_EXECUTION_STATUSES
from ..core.workflows import WorkflowSpec
from .board import board_props
from .runtime import ChatRuntime
from .settings import prices, usage_text

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


def tokens_text(tokens_in: Any, tokens_out: Any, *, estimated: bool = False) -> str:
    """`120 in / 45 out tokens` (with `~` when estimated), or "" when the step reported none."""
    if tokens_in is None and tokens_out is None:
        return ""
    mark = "~" if estimated else ""
    return f"{mark}{int(tokens_in or 0):,} in / {mark}{int(tokens_out or 0):,} out tokens"


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
        self.on_answer: Callable[[str], Any] | None = None  # told the final answer (the conversation's history)
        self.streaming: dict[str, int] = {}  # task key -> attempt whose text is streaming into its step
        self.token_texts: dict[str, str] = {}  # task key -> the token line shown in its step
        self.done_tasks: set[str] = set()  # task keys with a final status

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
        if event.type == EventType.STEP_TOKEN:
            await self._apply_token(event)
            return
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
        if is_stale_status(status, self.statuses.get(base)):
            return
        self.statuses[base] = "running" if status == "approved" else status
        if status in ("approved", "rejected") and base in self.waiting:
            self.waiting.remove(base)
        step = self._step(event)
        data = event.data or {}
        agent = data.get("agent")
        if agent:
            step._chief_agent = agent  # type: ignore[attr-defined]
        line = f"{ICONS.get(status, '')} {status}" + (f" · {agent}" if agent else "")
        if status == "retrying":
            line += f" · attempt {data.get('attempt')} failed: {data.get('error')}"
        if status == "waiting":
            line += "\n\nWaiting for approval. Prompt:\n\n" + str(data.get("prompt") or "")[:2000]
        if status in ("succeeded", "failed"):
            used = tokens_text(data.get("tokens_in"), data.get("tokens_out"))
            if used:
                self.token_texts[step_key_of(event)] = used
                line += f" · {used}"
                if data.get("provider"):
                    line += f" · {data.get('provider')}/{data.get('model')}"
            step.metadata = {**(step.metadata or {}), **{k: data.get(k) for k in (
                "provider", "model", "tokens_in", "tokens_out", "attempt", "duration_ms") if k in data}}
        streamed = self.streaming.get(step_key_of(event))
        if status == "running" and streamed is not None and streamed == data.get("attempt"):
            # "running" recorded after the first streamed text (the worker defers it): keep the text.
            body = (step.output or "").split("\n\n", 1)[1] if "\n\n" in (step.output or "") else ""
            step.output = f"{line}\n\n{body}"
            await step.update()
            return
        self.streaming.pop(step_key_of(event), None)
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
            self.done_tasks.add(step_key_of(event))
        if not getattr(step, "_chief_sent", False):
            step._chief_sent = True  # type: ignore[attr-defined]
            await step.send()
        else:
            await step.update()

    async def _apply_token(self, event: Event) -> None:
        """Streamed text of a running step: appended to its step as it arrives (live only, not stored)."""
        key = step_key_of(event)
        text = str((event.data or {}).get("text") or "")
        attempt = int((event.data or {}).get("attempt") or 1)
        if not text or key in self.done_tasks:  # a late batch after the result: the result has it all
            return
        step = self._step(event)
        if self.streaming.get(key) != attempt:  # the first text of this attempt: below the status line
            self.streaming[key] = attempt
            agent = f" · {getattr(step, '_chief_agent', '')}" if getattr(step, "_chief_agent", "") else ""
            step.output = f"{ICONS['running']} running{agent}\n\n"
            if not getattr(step, "_chief_sent", False):
                step._chief_sent = True  # type: ignore[attr-defined]
                await step.send()
            else:
                await step.update()
        await step.stream_token(text)

    async def _answer(self, event: Event) -> None:
        if self.answered:
            return
        self.answered = True
        for step in self.steps.values():  # nothing is left spinning once the run is over
            if step.end is None:
                step.end = utc_now()
                await step.update()
        usage_line = await self._usage()
        if self.status == "succeeded":
            record = await self.runtime.engine.store.get_execution(self.execution_id)
            output = event.data.get("output") if "output" in event.data else (record.output if record else None)
            text = as_text(output) or "(the run finished with no output)"
        elif self.status == "failed":
            text = f"❌ The run failed: {event.data.get('error') or 'see the failed step'}"
        else:
            text = "⏹️ The run was cancelled."
        await cl.Message(content=f"{text}\n\n{usage_line}" if usage_line else text, author="Chief",
                         metadata={"chief": "answer" if self.status == "succeeded" else "run-end",
                                   "execution_id": self.execution_id}).send()
        if self.on_answer is not None and self.status == "succeeded":
            self.on_answer(text)

    async def _usage(self) -> str:
        """The run's token totals (every attempt; cost with `CHIEF_PRICES`); each step's line gets its `~`
        and its failed attempts' tokens. One read of the run's rows, once per run."""
        try:
            rows = await self.runtime.engine.store.list_steps(self.execution_id)
        except Exception:  # noqa: BLE001 - the answer matters more than its token count
            log.exception("cannot read the token totals of run %s", self.execution_id)
            return ""
        table, problem = prices()
        for key, shown in list(self.token_texts.items()):
            mine = [r for r in rows if r.task_key == key]
            usage = usage_of_steps(mine)
            total = tokens_text(usage.tokens_in, usage.tokens_out, estimated=usage.estimated)
            step = self.steps.get(key)
            if step is not None and total and total != shown:
                if usage.calls > 1:
                    total += f" over {usage.calls} attempts"
                step.output = (step.output or "").replace(shown, total, 1)
                self.token_texts[key] = total
                await step.update()
        return usage_text(usage_of_steps(rows, table), problem=problem)

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


def step_key_of(event: Event) -> str:
    """The key a step is shown under (its task key: `x[3]` for a for_each item)."""
    return event.task_key or event.step_key or "?"
