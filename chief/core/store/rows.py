"""Conversions between the public records / messages and table rows, and the statements built once."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Insert, Select, Table, and_, bindparam, case, func, literal_column, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from ..errors import StoreError
from ..messages import AgentMessage, Event
from .engine import json_default
from .models import agent_messages, events, executions, step_executions
from .records import (
    EXECUTION_STATUSES,
    FINAL_STEP_STATUSES,
    STEP_STATUSES,
    DeadLetterRecord,
    EventRecord,
    ExecutionRecord,
    StepRecord,
)

# Keys `record(execution=...)` may update, besides "id".
EXECUTION_UPDATE_KEYS = frozenset({"status", "error", "output", "started_at", "finished_at", "control"})
EXECUTION_CONTROLS = ("pause", "resume", "cancel")
DEAD_LETTER_REQUIRED = ("recipient", "message", "reason", "attempts")
DEAD_LETTER_KEYS = frozenset({"execution_id", "task_key", "extra", *DEAD_LETTER_REQUIRED})

# Ledger columns on a repeated write: a later non-None value wins ...
_STEP_LATEST_WINS = (
    "agent", "provider", "model", "priority", "item_index", "result", "error",
    "tokens_in", "tokens_out", "finished_at", "duration_ms",
)  # fmt: skip
# ... except for these, where the first time recorded is the one kept.
_STEP_FIRST_WINS = ("queued_at", "started_at")
_STEP_FLAGS = ("tokens_estimated", "cached")
# Rendered inline (not as an expanding IN parameter) so the statements work with executemany and
# stay one prepared statement.
_FINAL_LITERALS = [literal_column(f"'{status}'") for status in FINAL_STEP_STATUSES]


def to_datetime(value: datetime | float | int | None) -> datetime | None:
    """Aware UTC datetime from a datetime (naive taken as UTC) or an epoch timestamp."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    raise StoreError(f"not a time: {value!r}")


def content_hash(name: str, version: str, definition: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a workflow (name, version, definition; keys sorted)."""
    canonical = orjson.dumps(
        {"name": name, "version": version, "definition": definition},
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
        default=json_default,
    )
    return hashlib.sha256(canonical).hexdigest()


# -- rows written ----------------------------------------------------------------------------------


def step_row(step: StepRecord) -> dict[str, Any]:
    """The ledger row for `step` (its `id` is the database's)."""
    if step.status not in STEP_STATUSES:
        raise StoreError(f"unknown step status {step.status!r} for {step.task_key!r}; one of {STEP_STATUSES}")
    return {
        "execution_id": step.execution_id,
        "task_key": step.task_key,
        "step_key": step.step_key,
        "attempt": step.attempt,
        "status": step.status,
        "agent": step.agent,
        "provider": step.provider,
        "model": step.model,
        "priority": step.priority,
        "item_index": step.item_index,
        "result": step.result,
        "error": step.error,
        "tokens_in": step.tokens_in,
        "tokens_out": step.tokens_out,
        "tokens_estimated": bool(step.tokens_estimated),
        "cached": bool(step.cached),
        "queued_at": to_datetime(step.queued_at),
        "started_at": to_datetime(step.started_at),
        "finished_at": to_datetime(step.finished_at),
        "duration_ms": step.duration_ms,
    }


def event_row(event: Event) -> dict[str, Any]:
    """The `events` row for `event` (its id is given by the database)."""
    etype = event.type
    return {
        "execution_id": event.execution_id,
        "type": etype.value if hasattr(etype, "value") else str(etype),
        "step_key": event.step_key,
        "task_key": event.task_key,
        "data": event.data,
        "created_at": to_datetime(event.created_at),
    }


def message_row(message: AgentMessage) -> dict[str, Any]:
    """The `agent_messages` row for `message`."""
    return {
        "id": message.id,
        "sender": message.sender,
        "recipient": message.recipient,
        "type": message.type,
        "payload": message.payload,
        "correlation_id": message.correlation_id,
        "priority": int(message.priority),
        "rank": message.rank,
        "attempt": message.attempt,
        "created_at": to_datetime(message.created_at),
    }


def execution_update(values: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(execution id, columns to set) from a `record(execution=...)` mapping, checked."""
    if "id" not in values:
        raise StoreError("execution update needs the execution's 'id'")
    unknown = set(values) - EXECUTION_UPDATE_KEYS - {"id"}
    if unknown:
        raise StoreError(f"execution update has unknown keys {sorted(unknown)}; allowed: {sorted(EXECUTION_UPDATE_KEYS)}")
    fields = {k: v for k, v in values.items() if k != "id"}
    if "status" in fields and fields["status"] not in EXECUTION_STATUSES:
        raise StoreError(f"unknown execution status {fields['status']!r}; one of {EXECUTION_STATUSES}")
    if fields.get("control") not in (None, *EXECUTION_CONTROLS):
        raise StoreError(f"unknown control {fields['control']!r}; one of {EXECUTION_CONTROLS} or None")
    for key in ("started_at", "finished_at"):
        if key in fields:
            fields[key] = to_datetime(fields[key])
    return str(values["id"]), fields


def dead_letter_row(values: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The `dead_letters` row for a `record(dead_letter=...)` mapping, checked."""
    missing = [k for k in DEAD_LETTER_REQUIRED if values.get(k) is None]
    if missing:
        raise StoreError(f"dead letter is missing {missing}")
    unknown = set(values) - DEAD_LETTER_KEYS
    if unknown:
        raise StoreError(f"dead letter has unknown keys {sorted(unknown)}; allowed: {sorted(DEAD_LETTER_KEYS)}")
    message = values["message"]
    if isinstance(message, AgentMessage):
        message = message.model_dump(mode="json")
    return {
        "execution_id": values.get("execution_id"),
        "task_key": values.get("task_key"),
        "recipient": values["recipient"],
        "message": message,
        "reason": str(values["reason"]),
        "attempts": int(values["attempts"]),
        "extra": dict(values.get("extra") or {}),
        "created_at": now,
    }


# -- records read ----------------------------------------------------------------------------------


def step_record(row: Row[Any]) -> StepRecord:
    """A `StepRecord` from a `step_executions` row."""
    return StepRecord(**row._mapping)


def execution_record(row: Row[Any]) -> ExecutionRecord:
    """An `ExecutionRecord` from an `executions` row."""
    return ExecutionRecord(**row._mapping)


def event_record(row: Row[Any]) -> EventRecord:
    """An `EventRecord` from an `events` row."""
    return EventRecord(**row._mapping)


def dead_letter_record(row: Row[Any]) -> DeadLetterRecord:
    """A `DeadLetterRecord` from a `dead_letters` row."""
    data = dict(row._mapping)
    data["extra"] = data.get("extra") or {}
    return DeadLetterRecord(**data)


# -- statements built once per dialect ----------------------------------------------------------------


class Statements:
    """The hot-path statements, compiled once by SQLAlchemy's cache and reused on every call."""

    def __init__(self, dialect: str) -> None:
        self._insert = dialect_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        t = step_executions
        upsert = dialect_insert(t)
        new = upsert.excluded
        # "queued" is written by the orchestrator while the task travels: landing after the worker's
        # "running" (or a final status) it keeps that status.
        status = case((and_(new.status == literal_column("'queued'"), t.c.status != literal_column("'queued'")),
                       t.c.status), else_=new.status)
        set_: dict[str, Any] = {"status": status, "step_key": new.step_key}
        set_.update({c: func.coalesce(new[c], t.c[c]) for c in _STEP_LATEST_WINS})
        set_.update({c: func.coalesce(t.c[c], new[c]) for c in _STEP_FIRST_WINS})
        set_.update({c: or_(t.c[c], new[c]) for c in _STEP_FLAGS})
        # A final row is never touched again: not by a late non-final write, not by a second final one.
        self.upsert_steps: Insert = upsert.on_conflict_do_update(
            index_elements=[t.c.execution_id, t.c.task_key, t.c.attempt],
            set_=set_,
            where=t.c.status.not_in(_FINAL_LITERALS),
        )
        self.insert_events: Insert = events.insert().returning(events.c.id, sort_by_parameter_order=True)
        # A message delivered twice is recorded once.
        self.insert_messages: Insert = dialect_insert(agent_messages).on_conflict_do_nothing(
            index_elements=[agent_messages.c.id]
        )
        self.final_step: Select[Any] = (
            select(t)
            .where(
                t.c.execution_id == bindparam("execution_id"),
                t.c.task_key == bindparam("task_key"),
                t.c.status.in_(_FINAL_LITERALS),
            )
            .order_by(t.c.attempt.desc())
            .limit(1)
        )
        self.get_execution: Select[Any] = select(executions).where(executions.c.id == bindparam("id"))

    def insert_ignore(self, table: Table, index_elements: Sequence[str]) -> Insert:
        """INSERT that leaves an existing row (same `index_elements`) as it is."""
        return self._insert(table).on_conflict_do_nothing(index_elements=list(index_elements))
