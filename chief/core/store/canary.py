"""Canaries and the executions each counts, on a `Store`'s database (the rules are in `chief.core.canary`).

Every method is one function of a sync `Connection` run through `Store._call`: one transaction, `StoreError`
on failure. State changes are conditional updates (`WHERE status = 'running' AND stage_index = n`), so two
orchestrators deciding at once change a canary once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select, update

from ..canary import ACTIVE_STATUSES, Canary, CanaryError, Thresholds
from .models import canaries, canary_runs, executions, now_utc
from .store import Store

MIN_PREFIX = 4  # shortest id prefix `get` accepts


def _canary(row: Any) -> Canary:
    return Canary(id=row.id, kind=row.kind, subject=row.subject, stable=row.stable, candidate=row.candidate,
                  stages=list(row.stages), stage_index=row.stage_index, status=row.status,
                  thresholds=Thresholds.of(row.thresholds), reason=row.reason, created_at=row.created_at,
                  updated_at=row.updated_at)


class CanaryStore:
    """Canary persistence over a `Store` (same engines, same error handling)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def _run(self, what: str, fn: Any, *, write: bool) -> Any:
        return await self.store._call(what, fn, write=write)

    async def create(self, kind: str, subject: str, stable: str, candidate: str, stages: Sequence[int],
                     thresholds: Thresholds) -> Canary:
        """Start a canary at its first stage; `CanaryError` if one is already running for (kind, subject)."""
        canary_id = secrets.token_hex(6)
        now = now_utc()
        values = {"id": canary_id, "kind": kind, "subject": subject, "stable": stable, "candidate": candidate,
                  "stages": list(stages), "stage_index": 0, "status": "running",
                  "thresholds": thresholds.as_dict(), "reason": None, "created_at": now, "updated_at": now,
                  "finished_at": None}
        running = select(canaries.c.id).where(canaries.c.kind == kind, canaries.c.subject == subject,
                                              canaries.c.status == "running")

        def run(conn: Connection) -> Canary:
            other = conn.execute(running).scalar()
            if other is not None:
                raise CanaryError(f"canary {other} is already running for {kind} '{subject}': promote it or "
                                  f"roll it back first (`chief canary rollback {other}`)")
            conn.execute(canaries.insert().values(**values))
            return _canary(conn.execute(select(canaries).where(canaries.c.id == canary_id)).one())

        return await self._run(f"starting a canary for {kind} {subject!r}", run, write=True)

    async def get(self, canary_id: str) -> Canary | None:
        """The canary with this id or unique id prefix; None if there is none (`CanaryError` if ambiguous)."""
        if len(canary_id) < MIN_PREFIX:
            raise CanaryError(f"canary id '{canary_id}' is too short: give at least {MIN_PREFIX} characters")
        stmt = select(canaries).where(canaries.c.id.startswith(canary_id, autoescape=True)).limit(2)

        def run(conn: Connection) -> list[Any]:
            return list(conn.execute(stmt))

        rows = await self._run(f"reading canary {canary_id!r}", run, write=False)
        exact = [r for r in rows if r.id == canary_id]
        if exact:
            return _canary(exact[0])
        if len(rows) > 1:
            raise CanaryError(f"canary id '{canary_id}' is ambiguous: give more characters")
        return _canary(rows[0]) if rows else None

    async def list_all(self, *, status: str | None = None, limit: int = 50) -> list[Canary]:
        """Canaries, newest first (only those in `status` if given)."""
        stmt = select(canaries).order_by(canaries.c.created_at.desc(), canaries.c.id).limit(limit)
        if status:
            stmt = stmt.where(canaries.c.status == status)

        def run(conn: Connection) -> list[Canary]:
            return [_canary(r) for r in conn.execute(stmt)]

        return await self._run("listing canaries", run, write=False)

    async def active(self) -> list[Canary]:
        """The canaries that route runs: per (kind, subject) the newest one running or promoted."""
        stmt = (select(canaries).where(canaries.c.status.in_(ACTIVE_STATUSES))
                .order_by(canaries.c.created_at.desc(), canaries.c.id))

        def run(conn: Connection) -> list[Canary]:
            return [_canary(r) for r in conn.execute(stmt)]

        seen: set[tuple[str, str]] = set()
        out = []
        for canary in await self._run("reading the active canaries", run, write=False):
            if (canary.kind, canary.subject) not in seen:
                seen.add((canary.kind, canary.subject))
                out.append(canary)
        return out

    async def join(self, execution_id: str, canary_id: str, stage_index: int, arm: str) -> None:
        """Count an execution in a canary's stage, on `arm`."""
        values = {"execution_id": execution_id, "canary_id": canary_id, "stage_index": stage_index, "arm": arm,
                  "created_at": now_utc()}

        def run(conn: Connection) -> None:
            conn.execute(canary_runs.insert().values(**values))

        await self._run(f"recording execution {execution_id} in canary {canary_id}", run, write=True)

    async def arm_of(self, execution_id: str) -> tuple[str, str, int] | None:
        """(canary id, arm, stage index) of an execution counted by a canary, or None."""
        stmt = select(canary_runs).where(canary_runs.c.execution_id == execution_id)

        def run(conn: Connection) -> Any:
            return conn.execute(stmt).first()

        row = await self._run(f"reading the canary of execution {execution_id}", run, write=False)
        return None if row is None else (row.canary_id, row.arm, row.stage_index)

    async def runs(self, canary_id: str) -> list[tuple[int, str, bool, float | None]]:
        """The finished (succeeded or failed) runs of a canary: `(stage_index, arm, ok, duration_ms)`."""
        stmt = (select(canary_runs.c.stage_index, canary_runs.c.arm, executions.c.status, executions.c.started_at,
                       executions.c.finished_at)
                .join(executions, executions.c.id == canary_runs.c.execution_id)
                .where(canary_runs.c.canary_id == canary_id, executions.c.status.in_(("succeeded", "failed"))))

        def run(conn: Connection) -> list[Any]:
            return list(conn.execute(stmt))

        out = []
        for r in await self._run(f"reading the runs of canary {canary_id}", run, write=False):
            duration = ((r.finished_at - r.started_at).total_seconds() * 1000
                        if r.started_at is not None and r.finished_at is not None else None)
            out.append((r.stage_index, r.arm, r.status == "succeeded", duration))
        return out

    async def advance(self, canary_id: str, from_stage: int, to_stage: int, reason: str | None = None) -> bool:
        """Move a running canary from stage `from_stage` to `to_stage`; False if it was no longer there."""
        stmt = (update(canaries)
                .where(canaries.c.id == canary_id, canaries.c.status == "running",
                       canaries.c.stage_index == from_stage)
                .values(stage_index=to_stage, reason=reason, updated_at=now_utc()))

        def run(conn: Connection) -> bool:
            return conn.execute(stmt).rowcount == 1

        return await self._run(f"promoting canary {canary_id}", run, write=True)

    async def finish(self, canary_id: str, status: str, reason: str | None,
                     from_statuses: Sequence[str] = ("running",)) -> bool:
        """Set a canary's final status (promoted | rolled_back) if it is in `from_statuses`; False if not."""
        now = now_utc()
        stmt = (update(canaries)
                .where(canaries.c.id == canary_id, canaries.c.status.in_(list(from_statuses)))
                .values(status=status, reason=reason, updated_at=now, finished_at=now))

        def run(conn: Connection) -> bool:
            return conn.execute(stmt).rowcount == 1

        return await self._run(f"setting canary {canary_id} to {status}", run, write=True)
