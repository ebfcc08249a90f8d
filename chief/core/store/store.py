"""The store: every workflow, execution, step, event, agent message and dead letter, on SQLite or PostgreSQL.

The database is the truth. Every method raises `StoreError` (or a subclass) on failure; none logs and
returns None. Writes that belong together go through `record()`, which is one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import ChiefError, SchemaBehind, StoreError
from ..messages import AgentMessage, Event
from . import migrate as _migrate
from .engine import make_engine
from .models import dead_letters, events, executions, now_utc, step_executions, workflows
from .records import DeadLetterRecord, EventRecord, ExecutionRecord, StepRecord, WorkflowRecord
from .rows import (
    EXECUTION_CONTROLS,
    Statements,
    content_hash,
    dead_letter_record,
    dead_letter_row,
    event_record,
    event_row,
    execution_record,
    execution_update,
    message_row,
    step_record,
    step_row,
)
from .urls import mask_password, mask_url, normalize_url

MIN_PREFIX = 6  # shortest id prefix `get_execution` accepts


class Store:
    """Async access to Chief's database (SQLAlchemy 2 async engine; aiosqlite or psycopg)."""

    url: str  # the async SQLAlchemy URL in use

    def __init__(self, engine: AsyncEngine, url: str) -> None:
        """Wrap an engine; use `Store.open()`, which also checks (or upgrades) the schema."""
        self.url = url
        self.engine = engine
        self.dialect: str = engine.dialect.name  # "sqlite" | "postgresql"
        self.display_url = mask_url(url)  # the URL without its password, for messages
        self._sql = Statements(self.dialect)
        # Reads run in autocommit on PostgreSQL: no BEGIN/ROLLBACK round trips around one SELECT.
        self._reader: AsyncEngine = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if self.dialect == "postgresql" else engine
        )

    @classmethod
    async def open(cls, url: str, *, migrate: bool | None = None) -> Store:
        """Connect. `migrate=None`: upgrade automatically on SQLite, refuse (SchemaBehind) elsewhere if behind."""
        async_url = normalize_url(url)
        try:
            engine = make_engine(async_url)
        except OSError as exc:
            raise StoreError(f"cannot create the database at {mask_url(async_url)}: {exc}") from exc
        store = cls(engine, async_url)
        try:
            await store._check_schema(store.dialect == "sqlite" if migrate is None else migrate)
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def _check_schema(self, migrate: bool) -> None:
        rev = await self._revision()
        state = _migrate.schema_state(rev)
        if state == "unknown":
            raise StoreError(
                f"database at {self.display_url} is at revision {rev}, which this Chief does not know "
                "(a newer Chief upgraded it): upgrade Chief"
            )
        if state == "current":
            return
        if not migrate:
            raise SchemaBehind(
                f"database at {self.display_url} is at revision {rev or 'none (empty)'}, "
                f"this Chief needs {_migrate.head()}: run `chief db upgrade`"
            )
        try:
            with self._guard("upgrading the schema"):
                async with self.engine.begin() as conn:
                    await conn.run_sync(_migrate.upgrade_on)
        except StoreError:
            # Another process may have upgraded the same file at the same moment (SQLite DDL takes
            # no lock up front); that is fine as long as the schema is now current.
            if _migrate.schema_state(await self._revision()) != "current":
                raise

    async def _revision(self) -> str | None:
        with self._guard("reading the schema revision"):
            async with self._reader.connect() as conn:
                return await conn.run_sync(_migrate.current_on)

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn any failure below into a StoreError that says what failed, where (password masked)."""
        try:
            yield
        except ChiefError:
            raise
        except Exception as exc:
            detail = getattr(exc, "orig", None) or exc
            text = " ".join(str(detail).split())[:1000] or type(detail).__name__
            raise StoreError(mask_password(f"{what} failed on {self.display_url}: {text}")) from exc

    # -- workflows --------------------------------------------------------------------------------
    async def save_workflow(self, name: str, version: str, definition: dict[str, Any], source: str | None = None) -> WorkflowRecord:
        """Record a workflow definition; idempotent by content hash (same content -> same row)."""
        version = str(version)
        with self._guard(f"saving workflow {name!r}"):
            digest = content_hash(name, version, definition)
            by_hash = select(workflows).where(workflows.c.content_hash == digest)
            async with self.engine.begin() as conn:
                row = (await conn.execute(by_hash)).first()
                if row is None:
                    stmt = self._sql.insert_ignore(workflows, ["content_hash"])
                    await conn.execute(
                        stmt,
                        {
                            "id": digest[:32],
                            "name": name,
                            "version": version,
                            "content_hash": digest,
                            "definition": definition,
                            "source": source,
                            "created_at": now_utc(),
                        },
                    )
                    row = (await conn.execute(by_hash)).one()
        return WorkflowRecord(**row._mapping)

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow with this id, or None."""
        with self._guard(f"reading workflow {workflow_id!r}"):
            async with self._reader.connect() as conn:
                row = (await conn.execute(select(workflows).where(workflows.c.id == workflow_id))).first()
        return None if row is None else WorkflowRecord(**row._mapping)

    # -- executions -------------------------------------------------------------------------------
    async def create_execution(
        self,
        execution_id: str,
        workflow: WorkflowRecord,
        inputs: dict[str, Any],
        *,
        parent_id: str | None = None,
        restored_from_checkpoint: str | None = None,
        conversation_id: str | None = None,
        events: Sequence[Event] = (),
    ) -> ExecutionRecord:
        """Create an execution in status "pending" (and store `events` in the same transaction)."""
        record = ExecutionRecord(
            id=execution_id,
            workflow_id=workflow.id,
            workflow_name=workflow.name,
            workflow_version=workflow.version,
            status="pending",
            inputs=dict(inputs),
            output=None,
            error=None,
            parent_id=parent_id,
            restored_from_checkpoint=restored_from_checkpoint,
            conversation_id=conversation_id,
            control=None,
            owner=None,
            lease_until=None,
            created_at=now_utc(),
            started_at=None,
            finished_at=None,
        )
        with self._guard(f"creating execution {execution_id!r}"):
            event_rows = [event_row(e) for e in events]
            async with self.engine.begin() as conn:
                await conn.execute(insert(executions), vars(record))
                if event_rows:
                    await conn.execute(self._sql.insert_events, event_rows)
        return record

    async def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        """The execution with this id, or with a unique id prefix of at least 6 characters."""
        with self._guard(f"reading execution {execution_id!r}"):
            async with self._reader.connect() as conn:
                row = (await conn.execute(self._sql.get_execution, {"id": execution_id})).first()
                if row is not None or len(execution_id) < MIN_PREFIX:
                    return None if row is None else execution_record(row)
                escaped = execution_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                stmt = (
                    select(executions)
                    .where(executions.c.id.like(escaped + "%", escape="\\"))
                    .order_by(executions.c.id)
                    .limit(5)
                )
                rows = (await conn.execute(stmt)).all()
        if len(rows) > 1:
            shown = ", ".join(r.id for r in rows[:4]) + (", ..." if len(rows) > 4 else "")
            raise StoreError(f"execution id prefix {execution_id!r} is ambiguous ({shown}): give more characters")
        return execution_record(rows[0]) if rows else None

    async def list_executions(
        self,
        *,
        status: str | Sequence[str] | None = None,
        workflow: str | None = None,
        since: datetime | None = None,
        conversation_id: str | None = None,
        limit: int = 50,
    ) -> list[ExecutionRecord]:
        """Newest first. `workflow` matches the workflow's name or id; `since` is a created_at lower bound."""
        t = executions
        stmt = select(t)
        if status is not None:
            stmt = stmt.where(t.c.status == status if isinstance(status, str) else t.c.status.in_(list(status)))
        if workflow is not None:
            stmt = stmt.where((t.c.workflow_name == workflow) | (t.c.workflow_id == workflow))
        if since is not None:
            stmt = stmt.where(t.c.created_at >= since)
        if conversation_id is not None:
            stmt = stmt.where(t.c.conversation_id == conversation_id)
        stmt = stmt.order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit)
        with self._guard("listing executions"):
            async with self._reader.connect() as conn:
                rows = (await conn.execute(stmt)).all()
        return [execution_record(r) for r in rows]

    async def set_control(self, execution_id: str, control: str | None) -> None:
        """Leave a request ("pause"/"resume"/"cancel") for the process driving the execution, or clear it."""
        if control not in (None, *EXECUTION_CONTROLS):
            raise StoreError(f"unknown control {control!r}; one of {EXECUTION_CONTROLS} or None")
        with self._guard(f"setting control of execution {execution_id!r}"):
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    update(executions).where(executions.c.id == execution_id).values(control=control)
                )
                if result.rowcount == 0:
                    raise StoreError(f"no execution {execution_id!r} in {self.display_url}")

    async def get_controls(self, execution_ids: Sequence[str]) -> dict[str, str]:
        """Pending controls of these executions (only those that have one)."""
        if not execution_ids:
            return {}
        t = executions
        stmt = select(t.c.id, t.c.control).where(t.c.id.in_(list(execution_ids)), t.c.control.is_not(None))
        with self._guard("reading controls"):
            async with self._reader.connect() as conn:
                rows = (await conn.execute(stmt)).all()
        return {r.id: r.control for r in rows}

    async def acquire_lease(self, execution_id: str, owner: str, ttl_s: float) -> bool:
        """Take (or renew) the right to drive the execution; False if another live owner holds it."""
        t = executions
        now = now_utc()
        stmt = (
            update(t)
            .where(
                t.c.id == execution_id,
                (t.c.owner.is_(None)) | (t.c.owner == owner) | (t.c.lease_until.is_(None)) | (t.c.lease_until < now),
            )
            .values(owner=owner, lease_until=now + timedelta(seconds=ttl_s))
        )
        with self._guard(f"taking the lease of execution {execution_id!r}"):
            async with self.engine.begin() as conn:
                if (await conn.execute(stmt)).rowcount == 1:
                    return True
                exists = (await conn.execute(select(t.c.id).where(t.c.id == execution_id))).first()
        if exists is None:
            raise StoreError(f"no execution {execution_id!r} in {self.display_url}")
        return False

    async def release_lease(self, execution_id: str, owner: str) -> None:
        """Give up the lease if `owner` holds it (no-op otherwise)."""
        t = executions
        stmt = update(t).where(t.c.id == execution_id, t.c.owner == owner).values(owner=None, lease_until=None)
        with self._guard(f"releasing the lease of execution {execution_id!r}"):
            async with self.engine.begin() as conn:
                await conn.execute(stmt)

    # -- one transaction for what belongs together -------------------------------------------------
    async def record(
        self,
        *,
        steps: Sequence[StepRecord] = (),
        events: Sequence[Event] = (),
        messages: Sequence[AgentMessage] = (),
        execution: dict[str, Any] | None = None,
        dead_letter: dict[str, Any] | None = None,
    ) -> list[int]:
        """Write all of it in one transaction; return the ids given to `events`.

        - steps: upserted by (execution_id, task_key, attempt); a final status is never overwritten
          by a non-final one, and a second final write for the same key keeps the first (effect once).
          A None field in a later write keeps the value recorded earlier; queued_at and started_at
          keep the first value recorded.
        - execution: {"id": ..., "status": ..., optional "error", "output", "started_at", "finished_at",
          "control"} updates that execution row (StoreError if there is none).
        - dead_letter: {"execution_id", "task_key", "recipient", "message", "reason", "attempts"}
          (+ optional "extra" dict); "message" may be the AgentMessage itself.
        - messages: a message id recorded before is left as it was (a redelivery).
        """
        with self._guard("recording"):
            exec_update = execution_update(execution) if execution is not None else None
            step_rows = [step_row(s) for s in steps]
            event_rows = [event_row(e) for e in events]
            message_rows = [message_row(m) for m in messages]
            dl_row = dead_letter_row(dead_letter, now_utc()) if dead_letter is not None else None
            ids: list[int] = []
            sql = self._sql
            async with self.engine.begin() as conn:
                if exec_update is not None and exec_update[1]:
                    exec_id, fields = exec_update
                    result = await conn.execute(update(executions).where(executions.c.id == exec_id).values(fields))
                    if result.rowcount == 0:
                        raise StoreError(f"no execution {exec_id!r} to update in {self.display_url}")
                if step_rows:
                    await conn.execute(sql.upsert_steps, step_rows[0] if len(step_rows) == 1 else step_rows)
                if event_rows:
                    result = await conn.execute(sql.insert_events, event_rows[0] if len(event_rows) == 1 else event_rows)
                    ids = list(result.scalars())
                if message_rows:
                    await conn.execute(sql.insert_messages, message_rows)
                if dl_row is not None:
                    await conn.execute(insert(dead_letters), dl_row)
        return ids

    # -- ledger -----------------------------------------------------------------------------------
    async def final_step(self, execution_id: str, task_key: str) -> StepRecord | None:
        """The recorded final row (succeeded/failed/skipped/rejected) of a task, latest attempt, if any."""
        with self._guard(f"reading the ledger of {execution_id!r}/{task_key!r}"):
            async with self._reader.connect() as conn:
                result = await conn.execute(self._sql.final_step, {"execution_id": execution_id, "task_key": task_key})
                row = result.first()
        return None if row is None else step_record(row)

    async def list_steps(self, execution_id: str) -> list[StepRecord]:
        """All rows of an execution, in order of first queue time then attempt.

        A row recorded without queued_at sorts by its started_at or finished_at; rows with no time at
        all come last, in the order they were recorded.
        """
        t = step_executions
        first_seen = func.coalesce(t.c.queued_at, t.c.started_at, t.c.finished_at)
        stmt = (
            select(t)
            .where(t.c.execution_id == execution_id)
            .order_by(first_seen.is_(None), first_seen, t.c.attempt, t.c.id)
        )
        with self._guard(f"listing the steps of {execution_id!r}"):
            async with self._reader.connect() as conn:
                rows = (await conn.execute(stmt)).all()
        return [step_record(r) for r in rows]

    # -- events, dead letters ---------------------------------------------------------------------
    async def list_events(self, execution_id: str, *, after_id: int = 0, limit: int = 10_000) -> list[EventRecord]:
        """Events of an execution with an id above `after_id`, oldest first."""
        stmt = (
            select(events)
            .where(events.c.execution_id == execution_id, events.c.id > after_id)
            .order_by(events.c.id)
            .limit(limit)
        )
        with self._guard(f"listing the events of {execution_id!r}"):
            async with self._reader.connect() as conn:
                rows = (await conn.execute(stmt)).all()
        return [event_record(r) for r in rows]

    async def list_dead_letters(self, *, limit: int = 100) -> list[DeadLetterRecord]:
        """Dead letters, newest first."""
        stmt = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
        with self._guard("listing dead letters"):
            async with self._reader.connect() as conn:
                rows = (await conn.execute(stmt)).all()
        return [dead_letter_record(r) for r in rows]

    async def get_dead_letter(self, dead_letter_id: int) -> DeadLetterRecord | None:
        """The dead letter with this id, or None."""
        stmt = select(dead_letters).where(dead_letters.c.id == dead_letter_id)
        with self._guard(f"reading dead letter {dead_letter_id}"):
            async with self._reader.connect() as conn:
                row = (await conn.execute(stmt)).first()
        return None if row is None else dead_letter_record(row)

    async def delete_dead_letter(self, dead_letter_id: int) -> bool:
        """Remove a dead letter (after it was retried or dismissed); False if there was none."""
        stmt = delete(dead_letters).where(dead_letters.c.id == dead_letter_id)
        with self._guard(f"deleting dead letter {dead_letter_id}"):
            async with self.engine.begin() as conn:
                return (await conn.execute(stmt)).rowcount > 0
