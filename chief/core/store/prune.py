"""Checkpoint retention: keep the newest N checkpoints of each finished execution, delete the rest.

A finished execution is only ever restored from (a restore forks one checkpoint into a new
execution), so what restore needs is each kept checkpoint with its channel values: on PostgreSQL the
blobs its `channel_versions` point at (blobs are shared between checkpoints, so a blob is deleted only
when no kept checkpoint refers to it); on SQLite each checkpoint row is whole. Checkpoints of
sub-workflow calls (namespaces other than the root's) belong to finished node runs and go too.

Unfinished executions (running, paused, waiting) are never touched: they continue from their head.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, select, text

from ..errors import StoreError
from .models import executions
from .records import FINISHED_EXECUTION_STATUSES
from .store import Store

DEFAULT_KEEP = 10  # per finished execution: enough to restore from any of its last steps


def default_keep() -> int:
    """`CHIEF_CHECKPOINT_KEEP` (default 10): checkpoints kept per finished execution; at least 1."""
    raw = os.environ.get("CHIEF_CHECKPOINT_KEEP")
    keep = int(raw) if raw not in (None, "") else DEFAULT_KEEP
    if keep < 1:
        raise StoreError("CHIEF_CHECKPOINT_KEEP must be at least 1 (the newest checkpoint is what restore forks)")
    return keep


@dataclass
class PruneReport:
    """What `prune_checkpoints` deleted (and would delete, with `dry_run`)."""

    executions: int = 0
    checkpoints: int = 0
    writes: int = 0
    blobs: int = 0
    per_execution: dict[str, int] = field(default_factory=dict)


async def prune_checkpoints(store: Store, *, keep: int | None = None, older_than: datetime | None = None,
                            execution_ids: Sequence[str] | None = None, dry_run: bool = False) -> PruneReport:
    """Delete all but the newest `keep` checkpoints of finished executions (finished before `older_than`).

    One transaction per execution; LangGraph's tables are read and written with plain SQL (its savers
    can only keep the latest one).
    """
    keep = default_keep() if keep is None else keep
    if keep < 1:
        raise StoreError("--keep must be at least 1 (the newest checkpoint is what restore forks)")
    t = executions
    stmt = select(t.c.id).where(t.c.status.in_(list(FINISHED_EXECUTION_STATUSES)))
    if older_than is not None:
        stmt = stmt.where(t.c.finished_at < older_than)
    if execution_ids:
        stmt = stmt.where(t.c.id.in_(list(execution_ids)))
    dialect = store.dialect

    def ids(conn: Connection) -> list[str]:
        if not _has_checkpoints(conn, dialect):
            return []
        return [r.id for r in conn.execute(stmt)]

    report = PruneReport()
    for execution_id in await store._call("listing finished executions", ids, write=False):
        counts = await store._call(f"pruning the checkpoints of {execution_id!r}",
                                   lambda conn, e=execution_id: _prune_thread(conn, dialect, e, keep, dry_run),
                                   write=not dry_run)
        if counts[0]:
            report.executions += 1
            report.checkpoints += counts[0]
            report.writes += counts[1]
            report.blobs += counts[2]
            report.per_execution[execution_id] = counts[0]
    return report


def _has_checkpoints(conn: Connection, dialect: str) -> bool:
    if dialect == "sqlite":
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'"
    else:
        sql = "SELECT 1 FROM pg_tables WHERE tablename = 'checkpoints' AND schemaname = current_schema()"
    return conn.execute(text(sql)).first() is not None


def _prune_thread(conn: Connection, dialect: str, thread_id: str, keep: int, dry_run: bool) -> tuple[int, int, int]:
    """(checkpoints, writes, blobs) deleted from one thread."""
    rows = conn.execute(text("SELECT checkpoint_ns, checkpoint_id FROM checkpoints WHERE thread_id = :t"),
                        {"t": thread_id}).all()
    root = sorted((r.checkpoint_id for r in rows if r.checkpoint_ns == ""), reverse=True)  # ids grow with time
    kept = set(root[:keep])
    doomed = [(r.checkpoint_ns, r.checkpoint_id) for r in rows
              if r.checkpoint_ns != "" or r.checkpoint_id not in kept]
    if not doomed:
        return 0, 0, 0
    writes_table = "writes" if dialect == "sqlite" else "checkpoint_writes"
    params = {"t": thread_id, "kept": sorted(kept) or [""]}
    doomed_writes = (f"FROM {writes_table} WHERE thread_id = :t AND (checkpoint_ns <> '' "
                     "OR checkpoint_id NOT IN :kept)")
    doomed_checkpoints = "FROM checkpoints WHERE thread_id = :t AND (checkpoint_ns <> '' OR checkpoint_id NOT IN :kept)"
    expanding = [bindparam("kept", expanding=True)]
    writes = conn.execute(text(f"SELECT COUNT(*) {doomed_writes}").bindparams(*expanding), params).scalar_one()
    blobs = _garbage_blobs(conn, thread_id, kept) if dialect != "sqlite" else []
    if not dry_run:
        conn.execute(text(f"DELETE {doomed_writes}").bindparams(*expanding), params)
        conn.execute(text(f"DELETE {doomed_checkpoints}").bindparams(*expanding), params)
        for ns, channel, version in blobs:
            conn.execute(text("DELETE FROM checkpoint_blobs WHERE thread_id = :t AND checkpoint_ns = :ns "
                              "AND channel = :c AND version = :v"),
                         {"t": thread_id, "ns": ns, "c": channel, "v": version})
    return len(doomed), int(writes), len(blobs)


def _garbage_blobs(conn: Connection, thread_id: str, kept: set[str]) -> list[tuple[str, str, str]]:
    """PostgreSQL blobs of the thread that no kept checkpoint refers to (by channel and version)."""
    referenced: set[tuple[str, str]] = set()
    if kept:
        versions = conn.execute(
            text("SELECT checkpoint -> 'channel_versions' AS v FROM checkpoints WHERE thread_id = :t "
                 "AND checkpoint_ns = '' AND checkpoint_id IN :kept").bindparams(bindparam("kept", expanding=True)),
            {"t": thread_id, "kept": sorted(kept)},
        ).scalars()
        for mapping in versions:
            for channel, version in _as_dict(mapping).items():
                referenced.add((channel, str(version)))
    blobs = conn.execute(text("SELECT checkpoint_ns, channel, version FROM checkpoint_blobs WHERE thread_id = :t"),
                         {"t": thread_id}).all()
    return [(b.checkpoint_ns, b.channel, b.version) for b in blobs
            if b.checkpoint_ns != "" or (b.channel, b.version) not in referenced]


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str | bytes):
        import orjson

        return orjson.loads(value)
    return {}
