"""The store: every workflow, execution, step, event, agent message and dead letter, on SQLite or PostgreSQL.

The database is the truth. Every method raises `StoreError` (or a subclass) on failure; none logs and
returns None. Writes that belong together go through `record()`, which is one transaction.

Each method is one function of a sync `Connection`, run in one go: on PostgreSQL through the async
engine's `run_sync` (psycopg async), on SQLite in the store's own worker thread with pysqlite (one
thread hop per call; SQLite takes one writer at a time anyway).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import ChiefError, SchemaBehind, StoreError
from ..messages import AgentMessage, Event
from . import migrate as _migrate
from .engine import make_postgres_engine, make_sqlite_engine
from .models import dead_letters, events, executions, now_utc, step_executions, workflows
from .records import DeadLetterRecord, EventRecord, ExecutionRecord, StepRecord, WorkflowRecord
from .retry import retry_bound_s, with_retries
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
from .urls import dialect_name, mask_password, mask_url, normalize_url

T = TypeVar("T")
MIN_PREFIX = 6  # shortest id prefix `get_execution` accepts


def _detail(exc: BaseException) -> str:
    """The driver's own message (not SQLAlchemy's, which carries the statement and its parameters)."""
    return mask_password(" ".join(str(getattr(exc, "orig", None) or exc).split())[:300])


class Store:
    """Async access to Chief's database (SQLAlchemy 2 Core; psycopg 3 on PostgreSQL, pysqlite on SQLite)."""

    url: str  # the async SQLAlchemy URL in use

    def __init__(self, url: str) -> None:
        """Set up engines for `url` (no connection yet); use `Store.open()`, which also checks the schema."""
        self.url = normalize_url(url)
        self.display_url = mask_url(self.url)  # the URL without its password, for messages
        self.dialect: str = dialect_name(self.url)  # "sqlite" | "postgresql"
        self._sql = Statements(self.dialect)
        self._engine: AsyncEngine | None = None
        self._reader: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        self._thread: ThreadPoolExecutor | None = None
        self.retry_s: float = retry_bound_s()  # how long a call rides out a lost database (PostgreSQL)
        try:
            if self.dialect == "sqlite":
                self._sync_engine = make_sqlite_engine(self.url)
                self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chief-sqlite")
            else:
                self._engine = make_postgres_engine(self.url)
                # Reads run in autocommit: no BEGIN/ROLLBACK round trips around one SELECT.
                self._reader = self._engine.execution_options(isolation_level="AUTOCOMMIT")
        except ChiefError:
            raise
        except Exception as exc:
            raise self._failure("opening the database", exc) from exc

    @classmethod
    async def open(cls, url: str, *, migrate: bool | None = None) -> Store:
        """Connect. `migrate=None`: upgrade automatically on SQLite, refuse (SchemaBehind) elsewhere if behind."""
        store = cls(url)
        retry_s, store.retry_s = store.retry_s, 0.0  # a wrong URL or a server that is down fails at once
        try:
            await store._check_schema(store.dialect == "sqlite" if migrate is None else migrate)
        except BaseException:
            await store.close()
            raise
        store.retry_s = retry_s
        return store

    async def _check_schema(self, migrate: bool) -> None:
        rev = await self._call("reading the schema revision", _migrate.current_on, write=False)
        state = _migrate.schema_state(rev)
        if state == "current":
            return
        if state == "unknown":
            raise StoreError(
                f"database at {self.display_url} is at revision {rev}, which this Chief does not know "
                "(a newer Chief upgraded it): upgrade Chief"
            )
        if not migrate:
            raise SchemaBehind(
                f"database at {self.display_url} is at revision {rev or 'none (empty)'}, "
                f"this Chief needs {_migrate.head()}: run `chief db upgrade`"
            )
        try:
            await self._call("upgrading the schema", _migrate.upgrade_on, write=True)
        except StoreError:
            # Another process may have upgraded the same SQLite file at the same moment (its DDL takes
            # no lock up front); that is fine as long as the schema is now current.
            rev = await self._call("reading the schema revision", _migrate.current_on, write=False)
            if _migrate.schema_state(rev) != "current":
                raise

    async def close(self) -> None:
        """Close every pooled connection (and the SQLite worker thread)."""
        if self._engine is not None:
            engine, self._engine, self._reader = self._engine, None, None
            await engine.dispose()
        if self._thread is not None and self._sync_engine is not None:
            thread, self._thread = self._thread, None
            await asyncio.get_running_loop().run_in_executor(thread, self._sync_engine.dispose)
            thread.shutdown(wait=False)

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    def _failure(self, what: str, exc: BaseException) -> StoreError:
        detail = getattr(exc, "orig", None) or exc
        text = " ".join(str(detail).split())[:1000] or type(detail).__name__
        return StoreError(mask_password(f"{what} failed on {self.display_url}: {text}"))

    async def _call(self, what: str, fn: Callable[[Connection], T], *, write: bool) -> T:
        """Run `fn` on a connection, in one transaction if `write`; any failure becomes a StoreError.

        On PostgreSQL a lost connection (server restarted, backend terminated) is retried with backoff
        for `CHIEF_DB_RETRY_S`, then raises `StoreUnavailable`. A write whose COMMIT was cut off may
        have landed: the ledger's upserts make that harmless; an event may then be stored twice.
        """
        try:
            if self._thread is not None:
                return await asyncio.get_running_loop().run_in_executor(self._thread, self._in_thread, fn, write)
            return await with_retries(f"{what} on {self.display_url}", lambda: self._run_pg(fn, write),
                                      bound_s=self.retry_s, describe=_detail)
        except ChiefError:
            raise
        except Exception as exc:
            raise self._failure(what, exc) from exc

    async def _run_pg(self, fn: Callable[[Connection], T], write: bool) -> T:
        if self._engine is None or self._reader is None:
            raise StoreError(f"the store for {self.display_url} is closed")
        if write:
            async with self._engine.begin() as conn:
                return await conn.run_sync(fn)
        async with self._reader.connect() as conn:
            return await conn.run_sync(fn)

    def _in_thread(self, fn: Callable[[Connection], T], write: bool) -> T:
        assert self._sync_engine is not None
        if write:
            with self._sync_engine.begin() as conn:
                return fn(conn)
        with self._sync_engine.connect() as conn:
            return fn(conn)

    # -- workflows --------------------------------------------------------------------------------
    async def save_workflow(self, name: str, version: str, definition: dict[str, Any], source: str | None = None) -> WorkflowRecord:
        """Record a workflow definition; idempotent by content hash (same content -> same row).

        The hash covers name, version and definition (not `source`); the id is its first 32 hex digits.
        """
        version = str(version)
        try:
            digest = content_hash(name, version, definition)
        except TypeError as exc:
            raise StoreError(f"workflow {name!r} cannot be stored: {exc}") from exc
        by_hash = select(workflows).where(workflows.c.content_hash == digest)
        insert_ignore = self._sql.insert_ignore(workflows, ["content_hash"])
        row_values = {
            "id": digest[:32],
            "name": name,
            "version": version,
            "content_hash": digest,
            "definition": definition,
            "source": source,
        }

        def run(conn: Connection) -> WorkflowRecord:
            row = conn.execute(by_hash).first()
            if row is None:
                conn.execute(insert_ignore, {**row_values, "created_at": now_utc()})
                row = conn.execute(by_hash).one()
            return WorkflowRecord(**row._mapping)

        return await self._call(f"saving workflow {name!r}", run, write=True)

    async def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """The workflow with this id, or None."""
        stmt = select(workflows).where(workflows.c.id == workflow_id)

        def run(conn: Connection) -> WorkflowRecord | None:
            row = conn.execute(stmt).first()
            return None if row is None else WorkflowRecord(**row._mapping)

        return await self._call(f"reading workflow {workflow_id!r}", run, write=False)

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
        settings: dict[str, Any] | None = None,
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
            settings=dict(settings) if settings else None,
        )
        event_rows = [event_row(e) for e in events]
        insert_events = self._sql.insert_events

        def run(conn: Connection) -> None:
            conn.execute(insert(executions), vars(record))
            if event_rows:
                conn.execute(insert_events, event_rows)

        await self._call(f"creating execution {execution_id!r}", run, write=True)
        return record

    async def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        """The execution with this id, or with a unique id prefix of at least 6 characters."""
        by_id = self._sql.get_execution
        escaped = execution_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        by_prefix = (
            select(executions)
            .where(executions.c.id.like(escaped + "%", escape="\\"))
            .order_by(executions.c.id)
            .limit(5)
        )

        def run(conn: Connection) -> list[Any]:
            row = conn.execute(by_id, {"id": execution_id}).first()
            if row is not None or len(execution_id) < MIN_PREFIX:
                return [] if row is None else [row]
            return list(conn.execute(by_prefix).all())

        rows = await self._call(f"reading execution {execution_id!r}", run, write=False)
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

        def run(conn: Connection) -> list[ExecutionRecord]:
            return [execution_record(r) for r in conn.execute(stmt)]

        return await self._call("listing executions", run, write=False)

    async def set_control(self, execution_id: str, control: str | None) -> None:
        """Leave a request ("pause"/"resume"/"cancel") for the process driving the execution, or clear it."""
        if control not in (None, *EXECUTION_CONTROLS):
            raise StoreError(f"unknown control {control!r}; one of {EXECUTION_CONTROLS} or None")
        stmt = update(executions).where(executions.c.id == execution_id).values(control=control)

        def run(conn: Connection) -> None:
            if conn.execute(stmt).rowcount == 0:
                raise StoreError(f"no execution {execution_id!r} in {self.display_url}")

        await self._call(f"setting the control of execution {execution_id!r}", run, write=True)

    async def get_controls(self, execution_ids: Sequence[str]) -> dict[str, str]:
        """Pending controls of these executions (only those that have one)."""
        if not execution_ids:
            return {}
        t = executions
        stmt = select(t.c.id, t.c.control).where(t.c.id.in_(list(execution_ids)), t.c.control.is_not(None))

        def run(conn: Connection) -> dict[str, str]:
            return {r.id: r.control for r in conn.execute(stmt)}

        return await self._call("reading controls", run, write=False)

    async def acquire_lease(self, execution_id: str, owner: str, ttl_s: float) -> bool:
        """Take (or renew) the right to drive the execution; False if another live owner holds it.

        One conditional UPDATE: free, already ours, or expired. StoreError if there is no such execution.
        """
        t = executions
        exists = select(t.c.id).where(t.c.id == execution_id)

        def run(conn: Connection) -> bool:
            now = now_utc()
            stmt = (
                update(t)
                .where(
                    t.c.id == execution_id,
                    t.c.owner.is_(None) | (t.c.owner == owner) | t.c.lease_until.is_(None) | (t.c.lease_until < now),
                )
                .values(owner=owner, lease_until=now + timedelta(seconds=ttl_s))
            )
            if conn.execute(stmt).rowcount == 1:
                return True
            if conn.execute(exists).first() is None:
                raise StoreError(f"no execution {execution_id!r} in {self.display_url}")
            return False

        return await self._call(f"taking the lease of execution {execution_id!r}", run, write=True)

    async def take_over_lease(self, execution_id: str, dead_owner: str, owner: str, ttl_s: float) -> bool:
        """Take the lease from `dead_owner` (known to be gone) even before it expires; False if it moved on.

        A compare-and-set on the owner column: of two processes taking over at once, one wins.
        """
        t = executions

        def run(conn: Connection) -> bool:
            stmt = (
                update(t)
                .where(t.c.id == execution_id, t.c.owner == dead_owner)
                .values(owner=owner, lease_until=now_utc() + timedelta(seconds=ttl_s))
            )
            return conn.execute(stmt).rowcount == 1

        return await self._call(f"taking over the lease of execution {execution_id!r}", run, write=True)

    async def release_lease(self, execution_id: str, owner: str) -> None:
        """Give up the lease if `owner` holds it (no-op otherwise)."""
        t = executions
        stmt = update(t).where(t.c.id == execution_id, t.c.owner == owner).values(owner=None, lease_until=None)

        def run(conn: Connection) -> None:
            conn.execute(stmt)

        await self._call(f"releasing the lease of execution {execution_id!r}", run, write=True)

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
        exec_stmt = None
        if execution is not None:
            exec_id, fields = execution_update(execution)
            if fields:
                exec_stmt = update(executions).where(executions.c.id == exec_id).values(fields)
        step_rows = [step_row(s) for s in steps]
        event_rows = [event_row(e) for e in events]
        message_rows = [message_row(m) for m in messages]
        dl_row = dead_letter_row(dead_letter, now_utc()) if dead_letter is not None else None
        sql = self._sql

        def run(conn: Connection) -> list[int]:
            ids: list[int] = []
            if step_rows:
                conn.execute(sql.upsert_steps, step_rows[0] if len(step_rows) == 1 else step_rows)
            if event_rows:
                ids = list(conn.execute(sql.insert_events, event_rows[0] if len(event_rows) == 1 else event_rows).scalars())
            if message_rows:
                conn.execute(sql.insert_messages, message_rows[0] if len(message_rows) == 1 else message_rows)
            if dl_row is not None:
                conn.execute(insert(dead_letters), dl_row)
            if exec_stmt is not None and conn.execute(exec_stmt).rowcount == 0:
                raise StoreError(f"no execution {exec_id!r} to update in {self.display_url}")
            return ids

        return await self._call("recording", run, write=True)

    # -- ledger -----------------------------------------------------------------------------------
    async def final_step(self, execution_id: str, task_key: str) -> StepRecord | None:
        """The recorded final row (succeeded/failed/skipped/rejected) of a task, latest attempt, if any.

        One query on the (execution_id, task_key, attempt) unique index.
        """
        stmt = self._sql.final_step
        params = {"execution_id": execution_id, "task_key": task_key}

        def run(conn: Connection) -> StepRecord | None:
            row = conn.execute(stmt, params).first()
            return None if row is None else step_record(row)

        return await self._call(f"reading the ledger of {execution_id!r}/{task_key!r}", run, write=False)

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

        def run(conn: Connection) -> list[StepRecord]:
            return [step_record(r) for r in conn.execute(stmt)]

        return await self._call(f"listing the steps of {execution_id!r}", run, write=False)

    # -- events, dead letters ---------------------------------------------------------------------
    async def list_events(self, execution_id: str, *, after_id: int = 0, limit: int = 10_000) -> list[EventRecord]:
        """Events of an execution with an id above `after_id`, oldest first."""
        stmt = (
            select(events)
            .where(events.c.execution_id == execution_id, events.c.id > after_id)
            .order_by(events.c.id)
            .limit(limit)
        )

        def run(conn: Connection) -> list[EventRecord]:
            return [event_record(r) for r in conn.execute(stmt)]

        return await self._call(f"listing the events of {execution_id!r}", run, write=False)

    async def list_dead_letters(self, *, limit: int = 100) -> list[DeadLetterRecord]:
        """Dead letters, newest first."""
        stmt = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)

        def run(conn: Connection) -> list[DeadLetterRecord]:
            return [dead_letter_record(r) for r in conn.execute(stmt)]

        return await self._call("listing dead letters", run, write=False)

    async def get_dead_letter(self, dead_letter_id: int) -> DeadLetterRecord | None:
        """The dead letter with this id, or None."""
        stmt = select(dead_letters).where(dead_letters.c.id == dead_letter_id)

        def run(conn: Connection) -> DeadLetterRecord | None:
            row = conn.execute(stmt).first()
            return None if row is None else dead_letter_record(row)

        return await self._call(f"reading dead letter {dead_letter_id}", run, write=False)

    async def delete_dead_letter(self, dead_letter_id: int) -> bool:
        """Remove a dead letter (after it was retried or dismissed); False if there was none."""
        stmt = delete(dead_letters).where(dead_letters.c.id == dead_letter_id)

        def run(conn: Connection) -> bool:
            return conn.execute(stmt).rowcount > 0

        return await self._call(f"deleting dead letter {dead_letter_id}", run, write=True)
