"""LangGraph checkpointers for our database URLs, and forking a checkpoint into a new execution."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import ChiefError
from ..store.retry import retry_bound_s, with_retries


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
        # A checkout waits at most this long (psycopg's default is 30 s): while the database is down the
        # retry bound, not the pool, decides how long a checkpoint write keeps trying.
        checkout_s = max(0.5, min(5.0, retry_bound_s()))
        pool = AsyncConnectionPool(conninfo, min_size=1, max_size=10, open=False, timeout=checkout_s,
                                   kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
        await pool.open()
        stack.push_async_callback(pool.close)
        saver = _retrying_saver_class(AsyncPostgresSaver)(pool)
        await with_retries("setting up the checkpoint tables", saver.setup)
        return saver
    raise ChiefError(f"no checkpointer for database URL scheme '{url.split(':', 1)[0]}'")


_RETRYING: dict[type, type] = {}


def _retrying_saver_class(base: type) -> type:
    """`base` (AsyncPostgresSaver) whose reads and writes ride out lost connections (see `store.retry`).

    The pool drops a broken connection when it is given back, so the next attempt gets a live one.
    `alist` is left as it is: a generator cannot be replayed half-way; it serves history listings only.
    """
    if base in _RETRYING:
        return _RETRYING[base]

    class RetryingSaver(base):  # type: ignore[valid-type, misc]
        async def aget_tuple(self, config: Any) -> Any:
            return await with_retries("reading a checkpoint", lambda: super(RetryingSaver, self).aget_tuple(config))

        async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
            return await with_retries("writing a checkpoint", lambda: super(RetryingSaver, self).aput(
                config, checkpoint, metadata, new_versions))

        async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
            return await with_retries("writing a step's checkpoint writes", lambda: super(
                RetryingSaver, self).aput_writes(config, writes, task_id, task_path))

        async def adelete_thread(self, thread_id: str) -> None:
            return await with_retries("deleting checkpoints", lambda: super(RetryingSaver, self).adelete_thread(
                thread_id))

    RetryingSaver.__name__ = RetryingSaver.__qualname__ = f"Retrying{base.__name__}"
    _RETRYING[base] = RetryingSaver
    return RetryingSaver


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
