"""Showing an execution's progress in the terminal as its events arrive."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..core.messages import Event, EventType, is_stale_status

STYLE = {
    "pending": ("·", "dim"), "queued": ("◌", "cyan"), "running": ("▶", "yellow"), "retrying": ("↻", "magenta"),
    "waiting": ("⏸", "blue"), "succeeded": ("✔", "green"), "failed": ("✘", "red"), "skipped": ("⤼", "dim"),
    "rejected": ("⊘", "red"),
}

STEP_STATUS = {
    EventType.STEP_QUEUED: "queued", EventType.STEP_STARTED: "running", EventType.STEP_RETRYING: "retrying",
    EventType.STEP_SUCCEEDED: "succeeded", EventType.STEP_FAILED: "failed", EventType.STEP_SKIPPED: "skipped",
    EventType.STEP_WAITING_APPROVAL: "waiting", EventType.STEP_REJECTED: "rejected",
    EventType.STEP_APPROVED: "queued",
}


@dataclass
class StepLine:
    key: str
    agent: str = ""
    status: str = "pending"
    detail: str = ""
    started: float | None = None
    finished: float | None = None
    items: dict[str, str] = field(default_factory=dict)


def _short(value: Any, width: int = 70) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


class Progress:
    """Tracks step statuses from events; renders as a live table (TTY) or one line per change."""

    def __init__(self, console: Console, step_keys: list[str], agents: dict[str, str], *, live: bool):
        self.console = console
        self.steps = {key: StepLine(key, agents.get(key, "")) for key in step_keys}
        self.live_mode = live
        self._live: Live | None = None
        self.execution_status = "pending"

    def __enter__(self) -> Progress:
        if self.live_mode:
            # `self` renders a fresh table at every refresh, so running steps' times keep counting
            self._live = Live(self, console=self.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)

    def __rich__(self) -> Table:
        return self.table()

    def table(self) -> Table:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        table.add_column("", width=2)
        table.add_column("step")
        table.add_column("agent")
        table.add_column("status")
        table.add_column("time", justify="right")
        table.add_column("detail", overflow="ellipsis", no_wrap=True, max_width=60)
        now = time.monotonic()
        for line in self.steps.values():
            icon, style = STYLE.get(line.status, ("?", ""))
            elapsed = ""
            if line.started is not None:
                elapsed = f"{((line.finished or now) - line.started):.1f}s"
            status = line.status + (f" ({len(line.items)} items)" if line.items else "")
            # everything that came from a workflow or a model is Text, never rich markup
            table.add_row(Text(icon, style=style), Text(line.key), Text(line.agent), Text(status, style=style),
                          elapsed, Text(line.detail))
        return table

    def handle(self, event: Event) -> None:
        """Apply one event; print or refresh."""
        if event.type.value.startswith("execution."):
            self.execution_status = event.type.value.split(".", 1)[1]
            if not self.live_mode and event.type not in (EventType.EXECUTION_CREATED,):
                self._print_execution(event)
            elif self._live is not None and event.type in (EventType.EXECUTION_PAUSED, EventType.EXECUTION_WAITING):
                self._live.console.print(self._execution_text(event))
            return
        status = STEP_STATUS.get(event.type)
        key = event.step_key or ""
        if status is None or key not in self.steps:
            if key and key not in self.steps and "/" in key:  # a step inside a sub-workflow
                self.steps[key] = StepLine(key, str(event.data.get("agent", "")))
            else:
                return
        line = self.steps[key]
        item = bool(event.task_key and event.task_key != key and "[" in event.task_key)
        if is_stale_status(status, line.items.get(event.task_key or "") if item else line.status):
            return
        if item:
            line.items[event.task_key] = status
            line.status = "running" if status not in ("failed",) else status
        else:
            line.status = status
        line.agent = str(event.data.get("agent") or line.agent)
        now = time.monotonic()
        if status in ("queued", "running") and line.started is None:
            line.started = now
        if status in ("succeeded", "failed", "skipped", "rejected"):
            line.finished = now
        line.detail = self._detail(event)
        if self._live is not None:
            self._live.refresh()
        else:
            icon, style = STYLE.get(status, ("?", ""))
            self.console.print(Text.assemble((f"{icon} ", style), (f"{event.task_key or key:<24}", "bold"),
                                             (f" {status:<10}", style), f" {line.detail}"))

    def _detail(self, event: Event) -> str:
        data = event.data
        if event.type == EventType.STEP_RETRYING:
            return _short(f"attempt {data.get('attempt')} failed: {data.get('error')}; retry in {data.get('delay_s')}s")
        if event.type == EventType.STEP_FAILED:
            return _short(data.get("error", ""))
        if event.type == EventType.STEP_SKIPPED:
            return _short(data.get("reason", ""))
        if event.type == EventType.STEP_SUCCEEDED:
            return _short(data.get("output", ""))
        if event.type == EventType.STEP_QUEUED:
            return f"lane {data.get('lane')}"
        if event.type == EventType.STEP_WAITING_APPROVAL:
            return "waits for approval"
        return ""

    def _execution_text(self, event: Event) -> Text:
        name = event.type.value.split(".", 1)[1]
        detail = event.data.get("error") or event.data.get("reason") or ""
        if event.type == EventType.EXECUTION_WAITING:
            detail = "approval needed for: " + ", ".join(map(str, event.data.get("steps", [])))
        style = {"succeeded": "green", "failed": "red", "cancelled": "red", "paused": "blue"}.get(name, "bold")
        return Text.assemble(("execution ", "dim"), (name, style), f" {_short(detail, 100)}" if detail else "")

    def _print_execution(self, event: Event) -> None:
        self.console.print(self._execution_text(event))
