"""SQLAlchemy models: one schema for SQLite and PostgreSQL (created and upgraded by the Alembic migrations).

Table names steer clear of LangGraph's (`checkpoints`, `writes`, `checkpoint_blobs`, `checkpoint_writes`,
`checkpoint_migrations`): its savers create those in the same database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Alembic keeps its revision here; named for Chief so that a database shared with another
# Alembic-managed application does not mix the two histories.
VERSION_TABLE = "chief_alembic_version"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def now_utc() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both dialects.

    SQLite keeps no zone (it stores text and gives back naive datetimes): values are converted to
    UTC before they are written (naive ones are taken as UTC) and read back as aware UTC, so text
    comparisons and ordering stay correct there too.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def json_type(*, none_as_null: bool = False) -> JSON:
    """JSON on SQLite, JSONB on PostgreSQL. `none_as_null`: Python None is SQL NULL, not JSON `null`."""
    return JSON(none_as_null=none_as_null).with_variant(JSONB(none_as_null=none_as_null), "postgresql")


# 64-bit ids on PostgreSQL; SQLite only autoincrements an `INTEGER PRIMARY KEY` (which is 64-bit there).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of Chief's tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Workflow(Base):
    """A workflow definition, kept once per content hash."""

    __tablename__ = "workflows"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    name: Mapped[str] = mapped_column(String(), index=True)
    version: Mapped[str] = mapped_column(String())
    content_hash: Mapped[str] = mapped_column(String(), unique=True)
    definition: Mapped[dict[str, Any]] = mapped_column(json_type())
    source: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)


class Execution(Base):
    """One run of a workflow (one LangGraph thread)."""

    __tablename__ = "executions"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    workflow_id: Mapped[str | None] = mapped_column(String(), ForeignKey("workflows.id"))
    workflow_name: Mapped[str] = mapped_column(String(), index=True)
    workflow_version: Mapped[str | None] = mapped_column(String())
    status: Mapped[str] = mapped_column(String(), index=True)
    inputs: Mapped[dict[str, Any]] = mapped_column(json_type())
    output: Mapped[Any] = mapped_column(json_type(none_as_null=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[str | None] = mapped_column(String())
    restored_from_checkpoint: Mapped[str | None] = mapped_column(String())
    conversation_id: Mapped[str | None] = mapped_column(String(), index=True)
    # Routing settings of this execution: {"conversation": {provider, model}, "canary": {...}, "stream": bool}
    settings: Mapped[dict[str, Any] | None] = mapped_column(json_type(none_as_null=True), nullable=True)
    control: Mapped[str | None] = mapped_column(String())
    owner: Mapped[str | None] = mapped_column(String())
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True, default=now_utc)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class StepExecution(Base):
    """The ledger: one row per (execution, task, attempt)."""

    __tablename__ = "step_executions"
    # The unique index also serves lookups by (execution_id, task_key) and ORDER BY attempt:
    # a second index on its first two columns would only cost writes.
    __table_args__ = (UniqueConstraint("execution_id", "task_key", "attempt"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # No foreign key to executions: a worker (maybe on another machine) records what it ran, and a
    # ledger row must never be refused because of the order in which rows reach the database.
    execution_id: Mapped[str] = mapped_column(String())
    task_key: Mapped[str] = mapped_column(String())
    step_key: Mapped[str] = mapped_column(String())
    attempt: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String())
    agent: Mapped[str | None] = mapped_column(String())
    provider: Mapped[str | None] = mapped_column(String())
    model: Mapped[str | None] = mapped_column(String())
    priority: Mapped[int | None] = mapped_column(Integer)
    item_index: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[Any] = mapped_column(json_type(none_as_null=True), nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
    tokens_in: Mapped[int | None] = mapped_column(Integer)
    tokens_out: Mapped[int | None] = mapped_column(Integer)
    tokens_estimated: Mapped[bool] = mapped_column(Boolean, default=False)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    duration_ms: Mapped[float | None] = mapped_column(Float)


class EventRow(Base):
    """An event of an execution; ids grow in the order events were recorded."""

    __tablename__ = "events"
    # (execution_id, id) serves "events of X after id N, in order" without a sort; AUTOINCREMENT
    # keeps SQLite from reusing the ids of deleted rows (readers page with `after_id`).
    __table_args__ = (Index("ix_events_execution_id_id", "execution_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[str] = mapped_column(String())
    type: Mapped[str] = mapped_column(String())
    step_key: Mapped[str | None] = mapped_column(String())
    task_key: Mapped[str | None] = mapped_column(String())
    data: Mapped[dict[str, Any]] = mapped_column(json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)


class AgentMessageRow(Base):
    """A message that went over the bus (task or result)."""

    __tablename__ = "agent_messages"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    sender: Mapped[str] = mapped_column(String())
    recipient: Mapped[str] = mapped_column(String())
    type: Mapped[str] = mapped_column(String())
    payload: Mapped[dict[str, Any]] = mapped_column(json_type())
    correlation_id: Mapped[str] = mapped_column(String(), index=True)
    priority: Mapped[int] = mapped_column(Integer)
    rank: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)


class DeadLetter(Base):
    """A step task that ran out of attempts (kept after its execution is gone)."""

    __tablename__ = "dead_letters"
    # AUTOINCREMENT: SQLite would otherwise hand a deleted row's id to the next one.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    execution_id: Mapped[str | None] = mapped_column(String())
    task_key: Mapped[str | None] = mapped_column(String())
    recipient: Mapped[str] = mapped_column(String())
    message: Mapped[dict[str, Any]] = mapped_column(json_type())
    reason: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    extra: Mapped[dict[str, Any]] = mapped_column(json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)


workflows = Workflow.__table__
executions = Execution.__table__
step_executions = StepExecution.__table__
events = EventRow.__table__
agent_messages = AgentMessageRow.__table__
dead_letters = DeadLetter.__table__


# -- chat (issue 3): the history Chainlit shows, kept by our data layer (chief/core/store/chat.py) ----------


class User(Base):
    """A chat user (password auth); `password_hash` is a salted scrypt hash, never the password."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    identifier: Mapped[str] = mapped_column(String(), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String())
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)


class Thread(Base):
    """A conversation; `user_id` None only when auth is off (single-user local setup)."""

    __tablename__ = "threads"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(), index=True)
    name: Mapped[str | None] = mapped_column(String())
    tags: Mapped[list[str]] = mapped_column(json_type())
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True, default=now_utc)


class ChatStep(Base):
    """A chat message or step as Chainlit sends it (`data` is its whole StepDict, so history shows it as it was)."""

    __tablename__ = "chat_steps"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    thread_id: Mapped[str] = mapped_column(String(), index=True)
    parent_id: Mapped[str | None] = mapped_column(String())
    type: Mapped[str] = mapped_column(String())
    name: Mapped[str | None] = mapped_column(String())
    data: Mapped[dict[str, Any]] = mapped_column(json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    # Order of first write: Chainlit's createdAt strings can tie within a millisecond.
    seq: Mapped[int] = mapped_column(BigInteger)


class ChatElement(Base):
    """An element (file, image, custom) attached to a chat step; content lives in our file store."""

    __tablename__ = "chat_elements"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    thread_id: Mapped[str | None] = mapped_column(String(), index=True)
    for_id: Mapped[str | None] = mapped_column(String())
    file_id: Mapped[str | None] = mapped_column(String())
    data: Mapped[dict[str, Any]] = mapped_column(json_type())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)


class ChatFeedback(Base):
    """A thumbs up/down on a chat step."""

    __tablename__ = "chat_feedback"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    for_id: Mapped[str] = mapped_column(String(), index=True)
    thread_id: Mapped[str | None] = mapped_column(String())
    value: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)


class FileRow(Base):
    """An uploaded file: metadata and extracted text; the bytes are in the file store under `storage_key`."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(String(), index=True)
    thread_id: Mapped[str | None] = mapped_column(String(), index=True)
    name: Mapped[str] = mapped_column(String())
    mime: Mapped[str] = mapped_column(String())
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String())
    storage_key: Mapped[str] = mapped_column(String())
    status: Mapped[str] = mapped_column(String())  # stored | extracted | refused
    text: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)


users = User.__table__
threads = Thread.__table__
chat_steps = ChatStep.__table__
chat_elements = ChatElement.__table__
chat_feedback = ChatFeedback.__table__
files = FileRow.__table__


# -- canary routes (issue 7): kept by chief/core/store/canary.py, rules in chief/core/canary.py ----------


class CanaryRow(Base):
    """A canary: a candidate workflow version or model taking a growing share of runs."""

    __tablename__ = "canaries"

    id: Mapped[str] = mapped_column(String(), primary_key=True)
    kind: Mapped[str] = mapped_column(String())  # workflow | model
    subject: Mapped[str] = mapped_column(String(), index=True)  # workflow name; agent name or "*"
    stable: Mapped[str] = mapped_column(String())  # workflow id, or provider:model
    candidate: Mapped[str] = mapped_column(String())
    stages: Mapped[list[int]] = mapped_column(json_type())
    stage_index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(), index=True)  # running | promoted | rolled_back
    thresholds: Mapped[dict[str, Any]] = mapped_column(json_type())
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class CanaryRun(Base):
    """An execution counted by a canary: its arm and the stage it started in."""

    __tablename__ = "canary_runs"

    execution_id: Mapped[str] = mapped_column(String(), primary_key=True)
    canary_id: Mapped[str] = mapped_column(String(), index=True)
    stage_index: Mapped[int] = mapped_column(Integer)
    arm: Mapped[str] = mapped_column(String())  # stable | candidate
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=now_utc)


canaries = CanaryRow.__table__
canary_runs = CanaryRun.__table__
