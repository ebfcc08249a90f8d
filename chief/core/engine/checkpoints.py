"""LangGraph checkpointers for our database URLs, and forking a checkpoint into a new execution."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import ChiefError


@dataclass
class CheckpointInfo:
    """One checkpoint of an execution: what had finished and what was to run next."""

    id: str
    created_at: datetime | None
    step: int
    next: list[str]
    completed: list[str]
    parent_id: str | None


async def open_checkpointer(url: str, stack: AsyncExitStack) -> Any:
    """The saver for a database URL (AsyncSqliteSaver or AsyncPostgresSaver), set up and closed by `stack`."""
    if url.startswith("sqlite"):
        import aiosqlite
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = url.split("///", 1)[1] if "///" in url else ":memory:"
        conn = await aiosqlite.connect(path)
        stack.push_async_callback(conn.close)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA busy_timeout=10000")
        await conn.execute("PRAGMA synchronous=NORMAL")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        return saver
    if url.startswith("postgres"):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
            from psycopg.rows import dict_row
            from psycopg_pool import AsyncConnectionPool
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ChiefError("PostgreSQL support is not installed: pip install 'chief[postgres]'") from exc
        conninfo = "postgresql://" + url.split("://", 1)[1]
        pool = AsyncConnectionPool(conninfo, min_size=1, max_size=10, open=False,
                                   kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
        await pool.open()
        stack.push_async_callback(pool.close)
        saver = AsyncPostgresSaver(pool)
        await saver.setup()
        return saver
    raise ChiefError(f"no checkpointer for database URL scheme '{url.split(':', 1)[0]}'")


async def fork_checkpoint(saver: Any, source_thread: str, checkpoint_id: str, target_thread: str) -> dict[str, Any]:
    """Copy one checkpoint of `source_thread` as the head of a new thread; return the new config.

    Pending writes are deliberately not copied: they belong to tasks that ran after the checkpoint,
    and a restore re-runs exactly those.
    """
    source = {"configurable": {"thread_id": source_thread, "checkpoint_ns": "", "checkpoint_id": checkpoint_id}}
    found = await saver.aget_tuple(source)
    if found is None:
        raise ChiefError(f"no checkpoint '{checkpoint_id}' in execution {source_thread}")
    target = {"configurable": {"thread_id": target_thread, "checkpoint_ns": ""}}
    metadata = {**(found.metadata or {}), "source": "fork", "forked_from": f"{source_thread}/{checkpoint_id}"}
    return await saver.aput(target, found.checkpoint, metadata, found.checkpoint.get("channel_versions", {}))
