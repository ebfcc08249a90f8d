"""The messages that travel on the bus and the events an execution emits."""

from __future__ import annotations

import enum
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Lane(enum.IntEnum):
    """Priority lanes; a worker always takes the highest non-empty lane first (with aging, see the bus)."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, value: str | int | Lane) -> Lane:
        if isinstance(value, Lane):
            return value
        if isinstance(value, int):
            return cls(value)
        return cls[value.upper()]


def new_id() -> str:
    """A new random id (hex uuid4)."""
    return uuid.uuid4().hex


class AgentMessage(BaseModel):
    """One message on the bus: a step task for an agent, or the result coming back.

    `correlation_id` ties a result to its task; it is `<execution>:<task_key>:<attempt>`.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = Field(default_factory=new_id)
    sender: str
    recipient: str
    type: Literal["task", "result", "control"]
    payload: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str
    priority: int = Lane.NORMAL
    rank: int = 0  # critical-path length inside a lane: longer chains first
    attempt: int = 1
    created_at: float = Field(default_factory=time.time)


class StepTask(BaseModel):
    """The payload of a task message: everything a worker needs to run one step (or one item of it)."""

    model_config = ConfigDict(extra="forbid")

    execution_id: str
    task_key: str  # step key, "step[3]" for a for_each item, "parent/child" inside a sub-workflow
    step_key: str
    agent: str
    prompt: str
    provider: str | None = None
    model: str | None = None
    timeout_s: float | None = None
    attempts: int = 3  # total attempts allowed, including the first
    backoff_s: float = 1.0
    backoff_multiplier: float = 2.0
    max_backoff_s: float = 30.0
    cache: bool = True
    inputs: dict[str, Any] = Field(default_factory=dict)  # workflow inputs, for agents that want them
    stream: bool = False  # publish the answer's text live as it is generated (`step.token` events; chat runs)
    # The execution's routing settings (`Engine.start(settings=...)`): the chat's model choice
    # ({"provider", "model"}, routing level "conversation") and a canary arm's model ({"id",
    # "provider", "model"}, used in place of the global default).
    conversation: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None
    # Sent by an orchestrator that runs this step for the first time in a fresh execution: on its first
    # delivery of attempt 1 the worker skips the ledger lookup (nothing can be recorded yet).
    fresh: bool = False


class StepResult(BaseModel):
    """The payload of a result message, also what the ledger records for a finished step."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["succeeded", "failed"]
    output: Any = None
    error: str | None = None
    attempts: int = 1
    agent: str | None = None
    provider: str | None = None
    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_estimated: bool = False
    cached: bool = False
    duration_ms: float | None = None


class EventType(enum.StrEnum):
    """Every state change an execution or one of its steps goes through."""

    EXECUTION_CREATED = "execution.created"
    EXECUTION_STARTED = "execution.started"
    EXECUTION_PAUSING = "execution.pausing"
    EXECUTION_PAUSED = "execution.paused"
    EXECUTION_RESUMED = "execution.resumed"
    EXECUTION_WAITING = "execution.waiting_approval"
    EXECUTION_CANCELLED = "execution.cancelled"
    EXECUTION_SUCCEEDED = "execution.succeeded"
    EXECUTION_FAILED = "execution.failed"
    STEP_QUEUED = "step.queued"
    STEP_STARTED = "step.started"
    STEP_RETRYING = "step.retrying"
    STEP_SUCCEEDED = "step.succeeded"
    STEP_FAILED = "step.failed"
    STEP_SKIPPED = "step.skipped"
    STEP_WAITING_APPROVAL = "step.waiting_approval"
    STEP_APPROVED = "step.approved"
    STEP_REJECTED = "step.rejected"
    STEP_DEAD_LETTERED = "step.dead_lettered"
    STEP_TOKEN = "step.token"  # live only (never stored): a batch of the answer's text as it streams


LIVE_ONLY_EVENTS = frozenset({EventType.STEP_TOKEN})  # published to subscribers, never written to the store


class Event(BaseModel):
    """An event of an execution; stored in the `events` table and published live."""

    model_config = ConfigDict(extra="forbid")

    execution_id: str
    type: EventType
    step_key: str | None = None
    task_key: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)
    id: int | None = None  # assigned by the store


def is_stale_status(status: str, current: str | None) -> bool:
    """True for a "queued" that a view reads after a later status of the same step.

    The orchestrator records "queued" while the task travels to its worker, so that event may be
    stored after the worker's "running" or result; a view (chat, CLI) keeps the later status.
    """
    return status == "queued" and current not in (None, "", "pending", "planned", "queued")
