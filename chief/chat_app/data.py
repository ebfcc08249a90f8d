"""Chief's Chainlit data layer: the chat history in our own tables (`chief.core.store.chat`).

Chainlit calls step writes from fire-and-forget tasks; here every write goes through one FIFO writer
that awaits the database, so writes land in the order Chainlit issued them (a step's final output is
never overwritten by an earlier update that arrived late), and `flush()` waits for all of them.
Threads are scoped to their user: reading another user's thread raises, listing shows only one's own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from chainlit.data.base import BaseDataLayer
from chainlit.types import Feedback, PageInfo, PaginatedResponse, Pagination, ThreadDict, ThreadFilter
from chainlit.user import PersistedUser, User

from ..core.store.chat import ChatStore

log = logging.getLogger(__name__)


class ChiefDataLayer(BaseDataLayer):
    """`BaseDataLayer` over Chief's database; writes are serialised and awaited."""

    def __init__(self, chat: ChatStore | Callable[[], ChatStore]) -> None:
        # A callable: the chat process opens its database after Chainlit asks for the data layer.
        self._chat = chat
        self._queue: asyncio.Queue[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] | None = None
        self._writer: asyncio.Task[None] | None = None

    @property
    def chat(self) -> ChatStore:
        """The chat store in use."""
        return self._chat if isinstance(self._chat, ChatStore) else self._chat()

    # -- the ordered writer ------------------------------------------------------------------------
    def _enqueue(self, op: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        # Called before the caller's first await: the queue order is the order Chainlit made its tasks.
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_loop(self._queue))
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put_nowait((op, future))
        return future

    async def _write_loop(self, queue: asyncio.Queue[Any]) -> None:
        while True:
            op, future = await queue.get()
            try:
                result = await op()
            except Exception as exc:  # noqa: BLE001 - handed to the caller, which raises it
                if not future.done():
                    future.set_exception(exc)
                else:
                    log.error("chat write failed: %s", exc)
            else:
                if not future.done():
                    future.set_result(result)
            finally:
                queue.task_done()

    async def _write(self, op: Callable[[], Awaitable[Any]]) -> Any:
        return await self._enqueue(op)

    async def flush(self) -> None:
        """Wait until every write issued so far is in the database."""
        if self._queue is not None:
            await self._write(_noop)

    # -- users ------------------------------------------------------------------------------------
    async def get_user(self, identifier: str) -> PersistedUser | None:
        user = await self.chat.get_user(identifier)
        if user is None:
            return None
        return PersistedUser(id=user.id, identifier=user.identifier, createdAt=user.created_at.isoformat(),
                             metadata=user.metadata)

    async def create_user(self, user: User) -> PersistedUser | None:
        existing = await self.get_user(user.identifier)
        if existing is not None:
            return existing
        await self._write(lambda: self.chat.add_user(user.identifier, metadata=user.metadata))
        return await self.get_user(user.identifier)

    # -- feedback ---------------------------------------------------------------------------------
    async def upsert_feedback(self, feedback: Feedback) -> str:
        return await self._write(lambda: self.chat.upsert_feedback(
            for_id=feedback.forId, value=feedback.value, thread_id=feedback.threadId, comment=feedback.comment,
            feedback_id=feedback.id))

    async def delete_feedback(self, feedback_id: str) -> bool:
        return await self._write(lambda: self.chat.delete_feedback(feedback_id))

    # -- elements ---------------------------------------------------------------------------------
    async def create_element(self, element: Any) -> None:
        data = element.to_dict()
        if not data.get("threadId"):
            return
        await self._write(lambda: self.chat.upsert_element(data))

    async def get_element(self, thread_id: str, element_id: str) -> Any:
        return await self.chat.get_element(thread_id, element_id)

    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        await self._write(lambda: self.chat.delete_element(element_id))

    # -- steps ------------------------------------------------------------------------------------
    async def create_step(self, step_dict: Any) -> None:
        data = dict(step_dict)
        await self._write(lambda: self._save_step(data))

    async def update_step(self, step_dict: Any) -> None:
        data = dict(step_dict)
        await self._write(lambda: self._save_step(data))

    async def save_step(self, step_dict: Any) -> None:
        """Persist a step's current state now (used for final states: awaited, in order)."""
        await self.update_step(step_dict)

    async def _save_step(self, data: dict[str, Any]) -> None:
        if not data.get("threadId"):
            return
        await self.chat.upsert_thread(data["threadId"])
        await self.chat.upsert_step(data)

    async def delete_step(self, step_id: str) -> None:
        await self._write(lambda: self.chat.delete_step(step_id))

    # -- threads ----------------------------------------------------------------------------------
    async def get_thread_author(self, thread_id: str) -> str:
        return await self.chat.thread_owner(thread_id) or ""

    async def delete_thread(self, thread_id: str) -> None:
        await self._write(lambda: self.chat.delete_thread(thread_id))

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter) -> PaginatedResponse[ThreadDict]:
        # Chainlit passes the signed-in user's id: nobody lists another user's threads.
        rows, more = await self.chat.list_threads(filters.userId, search=filters.search, first=pagination.first,
                                                  cursor=pagination.cursor)
        return PaginatedResponse(
            pageInfo=PageInfo(hasNextPage=more, startCursor=rows[0]["id"] if rows else None,
                              endCursor=rows[-1]["id"] if rows else None),
            data=rows,  # type: ignore[arg-type]
        )

    async def get_thread(self, thread_id: str) -> ThreadDict | None:
        await self.flush()  # what the user reopens includes every write made so far
        return await self.chat.get_thread(thread_id)  # type: ignore[return-value]

    async def update_thread(self, thread_id: str, name: str | None = None, user_id: str | None = None,
                            metadata: dict[str, Any] | None = None, tags: list[str] | None = None) -> None:
        await self._write(lambda: self.chat.upsert_thread(thread_id, name=name, user_id=user_id,
                                                          metadata=metadata, tags=tags))

    # -- the rest of the interface ----------------------------------------------------------------
    async def build_debug_url(self) -> str:
        return ""

    async def close(self) -> None:
        await self.flush()
        if self._writer is not None:
            self._writer.cancel()

    async def get_favorite_steps(self, user_id: str) -> list[Any]:
        return []


async def _noop() -> None:
    return None
