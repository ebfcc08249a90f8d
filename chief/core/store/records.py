"""Plain records returned by the store (decoupled from the SQLAlchemy models)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Execution statuses. "pending": created, not started; "waiting": stopped at an approval.
EXECUTION_STATUSES = ("pending", "running", "pausing", "paused", "waiting", "succeeded", "failed", "cancelled")
FINISHED_EXECUTION_STATUSES = ("succeeded", "failed", "cancelled")
# Step statuses in the ledger. Final ones end a step; a node that finds a final row returns it.
STEP_STATUSES = ("queued", "running", "retrying", "succeeded", "failed", "skipped", "rejected", "waiting")
FINAL_STEP_STATUSES = ("succeeded", "failed", "skipped", "rejected")


@dataclass
class WorkflowRecord:
    id: str
    name: str
    version: str
    content_hash: str
    definition: dict[str, Any]
    source: str | None
    created_at: datetime


@dataclass
class ExecutionRecord:
    id: str
    workflow_id: str | None
    workflow_name: str
    workflow_version: str | None
    status: str
    inputs: dict[str, Any]
    output: Any
    error: str | None
    parent_id: str | None  # the execution this one was restored (forked) from
    restored_from_checkpoint: str | None
    conversation_id: str | None
    control: str | None  # a pending request from another process: "pause" | "resume" | "cancel"
    owner: str | None  # the process driving it (lease holder)
    lease_until: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    settings: dict[str, Any] | None = None  # routing settings (see `Engine.start`)


@dataclass
class StepRecord:
    execution_id: str
    task_key: str
    step_key: str
    attempt: int
    status: str
    agent: str | None = None
    provider: str | None = None
    model: str | None = None
    priority: int | None = None
    item_index: int | None = None
    result: Any = None
    error: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_estimated: bool = False
    cached: bool = False
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: float | None = None
    id: int | None = None


@dataclass
class EventRecord:
    id: int
    execution_id: str
    type: str
    step_key: str | None
    task_key: str | None
    data: dict[str, Any]
    created_at: datetime


@dataclass
class DeadLetterRecord:
    id: int
    execution_id: str | None
    task_key: str | None
    recipient: str
    message: dict[str, Any]  # the AgentMessage as a dict
    reason: str
    attempts: int
    created_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)
