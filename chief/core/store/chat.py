"""Chat data: users, threads (conversations), chat steps (messages and steps), elements, feedback and files.

Separate from `Store` (workflows and executions) but on its connections: every method is one function of
a sync `Connection` run through `Store._call`, so it is one transaction that raises `StoreError` on
failure — never a logged warning and a lost write (what Chainlit's own SQLAlchemy layer does).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, update

from ..errors import AuthError
from .models import chat_elements, chat_feedback, chat_steps, files, now_utc, threads, users
from .store import Store

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str) -> str:
    """A salted scrypt hash (`scrypt$n$r$p$salt$hash`); the password itself is never stored."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str | None) -> bool:
    """Whether `password` matches a hash made by `hash_password` (constant-time compare)."""
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, n, r, p, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), dklen=32, n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(candidate.hex(), digest)


@dataclass
class UserRecord:
    """A chat user (no password hash: it never leaves the store)."""

    id: str
    identifier: str
    metadata: dict[str, Any]
    created_at: datetime


@dataclass
class FileRecord:
    """An uploaded file's row."""

    id: str
    user_id: str | None
    thread_id: str | None
    name: str
    mime: str
    size: int
    sha256: str
    storage_key: str
    status: str
    text: str | None
    error: str | None
    created_at: datetime


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _user(row: Any) -> UserRecord:
    return UserRecord(id=row.id, identifier=row.identifier, metadata=row._mapping["metadata"] or {}, created_at=row.created_at)


class ChatStore:
    """Chat persistence over a `Store`'s database (same engines, same error handling)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sql = store._sql  # dialect-specific INSERT ... ON CONFLICT helpers

    async def _run(self, what: str, fn: Any, *, write: bool) -> Any:
        return await self.store._call(what, fn, write=write)

    # -- users ------------------------------------------------------------------------------------
    async def add_user(self, identifier: str, password: str | None = None, *,
                       metadata: dict[str, Any] | None = None, replace_password: bool = False) -> UserRecord:
        """Create a user (AuthError if the name is taken, unless `replace_password` sets a new password)."""
        identifier = identifier.strip()
        if not identifier:
            raise AuthError("a user name cannot be empty")
        hashed = hash_password(password) if password else None

        def run(conn: Connection) -> UserRecord:
            row = conn.execute(select(users).where(users.c.identifier == identifier)).first()
            if row is not None:
                if not replace_password:
                    raise AuthError(f"user '{identifier}' exists already (use --reset to set a new password)")
                conn.execute(update(users).where(users.c.id == row.id).values(password_hash=hashed))
                return _user(row)
            uid = secrets.token_hex(16)
            conn.execute(users.insert().values(id=uid, identifier=identifier, password_hash=hashed,
                                               metadata=metadata or {}, created_at=now_utc()))
            return _user(conn.execute(select(users).where(users.c.id == uid)).one())

        return await self._run(f"adding user {identifier!r}", run, write=True)

    async def get_user(self, identifier: str) -> UserRecord | None:
        """The user with this name, or None."""

        def run(conn: Connection) -> UserRecord | None:
            row = conn.execute(select(users).where(users.c.identifier == identifier)).first()
            return None if row is None else _user(row)

        return await self._run("reading a user", run, write=False)

    async def authenticate(self, identifier: str, password: str) -> UserRecord | None:
        """The user if the password is right, else None (same answer for an unknown name)."""

        def run(conn: Connection) -> Any:
            return conn.execute(select(users).where(users.c.identifier == identifier)).first()

        row = await self._run("reading a user", run, write=False)
        if row is None:
            check_password(password, hash_password("x"))  # same cost as a real check: no user enumeration
            return None
        return _user(row) if check_password(password, row.password_hash) else None

    # -- threads ----------------------------------------------------------------------------------
    async def upsert_thread(self, thread_id: str, *, name: str | None = None, user_id: str | None = None,
                            metadata: dict[str, Any] | None = None, tags: list[str] | None = None) -> None:
        """Create the thread or update the given fields (None leaves a field as it is)."""
        now = now_utc()
        insert = self._sql.insert_ignore(threads, ["id"])

        def run(conn: Connection) -> None:
            conn.execute(insert, {"id": thread_id, "user_id": user_id, "name": name, "tags": tags or [],
                                  "metadata": metadata or {}, "created_at": now, "updated_at": now})
            row = conn.execute(select(threads).where(threads.c.id == thread_id)).one()
            values: dict[str, Any] = {"updated_at": now}
            if name is not None:
                values["name"] = name
            if user_id is not None and row.user_id is None:
                values["user_id"] = user_id
            if metadata is not None:
                values["metadata"] = {**(row._mapping["metadata"] or {}), **metadata}
            if tags is not None:
                values["tags"] = tags
            conn.execute(update(threads).where(threads.c.id == thread_id).values(**values))

        await self._run("saving a thread", run, write=True)

    async def thread_owner(self, thread_id: str) -> str | None:
        """The identifier of the thread's user (None: no such thread, or no user)."""
        stmt = (select(users.c.identifier).select_from(threads.join(users, users.c.id == threads.c.user_id))
                .where(threads.c.id == thread_id))
        return await self._run("reading a thread", lambda conn: conn.execute(stmt).scalar(), write=False)

    async def thread_user_id(self, thread_id: str) -> str | None:
        """The id of the thread's user, or None."""
        stmt = select(threads.c.user_id).where(threads.c.id == thread_id)
        return await self._run("reading a thread", lambda conn: conn.execute(stmt).scalar(), write=False)

    async def delete_thread(self, thread_id: str) -> None:
        """Delete a thread with its steps, elements and feedback (files stay in the file store)."""

        def run(conn: Connection) -> None:
            for table in (chat_steps, chat_elements, chat_feedback):
                conn.execute(delete(table).where(table.c.thread_id == thread_id))
            conn.execute(delete(threads).where(threads.c.id == thread_id))

        await self._run("deleting a thread", run, write=True)

    async def list_threads(self, user_id: str | None, *, search: str | None = None, first: int = 20,
                           cursor: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """A page of the user's threads, newest first, as Chainlit ThreadDicts; and whether there are more."""
        stmt = (select(threads, users.c.identifier).select_from(threads.outerjoin(users, users.c.id == threads.c.user_id))
                .order_by(threads.c.updated_at.desc(), threads.c.id.desc()))
        stmt = stmt.where(threads.c.user_id == user_id) if user_id is not None else stmt.where(threads.c.user_id.is_(None))
        if search:
            stmt = stmt.where(func.lower(threads.c.name).contains(search.lower()))

        def run(conn: Connection) -> tuple[list[dict[str, Any]], bool]:
            query = stmt
            if cursor:
                anchor = conn.execute(select(threads.c.updated_at).where(threads.c.id == cursor)).scalar()
                if anchor is not None:
                    query = query.where(or_(threads.c.updated_at < anchor,
                                            (threads.c.updated_at == anchor) & (threads.c.id < cursor)))
            rows = conn.execute(query.limit(first + 1)).all()
            return [self._thread_dict(r) for r in rows[:first]], len(rows) > first

        return await self._run("listing threads", run, write=False)

    @staticmethod
    def _thread_dict(row: Any, steps: list[dict[str, Any]] | None = None,
                     elements: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {"id": row.id, "createdAt": _iso(row.created_at), "name": row.name, "userId": row.user_id,
                "userIdentifier": row.identifier, "tags": row.tags or [], "metadata": row._mapping["metadata"] or {},
                "steps": steps or [], "elements": elements or []}

    async def get_thread(self, thread_id: str) -> dict[str, Any] | None:
        """The thread with its steps (in the order they were first written) and elements, or None."""
        head = (select(threads, users.c.identifier).select_from(threads.outerjoin(users, users.c.id == threads.c.user_id))
                .where(threads.c.id == thread_id))

        def run(conn: Connection) -> dict[str, Any] | None:
            row = conn.execute(head).first()
            if row is None:
                return None
            steps = [s.data for s in conn.execute(
                select(chat_steps.c.data).where(chat_steps.c.thread_id == thread_id).order_by(chat_steps.c.seq))]
            step_ids = select(chat_steps.c.id).where(chat_steps.c.thread_id == thread_id)
            feedback = {f.for_id: f for f in conn.execute(
                select(chat_feedback).where(chat_feedback.c.for_id.in_(step_ids)))}
            for step in steps:
                f = feedback.get(step.get("id"))
                if f is not None:
                    step["feedback"] = {"id": f.id, "forId": f.for_id, "value": f.value, "comment": f.comment}
            elements = [e.data for e in conn.execute(
                select(chat_elements.c.data).where(chat_elements.c.thread_id == thread_id)
                .order_by(chat_elements.c.created_at))]
            return self._thread_dict(row, steps, elements)

        return await self._run("reading a thread", run, write=False)

    # -- steps ------------------------------------------------------------------------------------
    async def upsert_step(self, step: dict[str, Any]) -> None:
        """Create or update a chat step from a Chainlit StepDict; fields sent later overwrite earlier ones."""
        step_id, thread_id = step["id"], step.get("threadId")
        insert = self._sql.insert_ignore(chat_steps, ["id"])
        seq = time.time_ns() // 1000
        now = now_utc()

        def run(conn: Connection) -> None:
            row = conn.execute(select(chat_steps).where(chat_steps.c.id == step_id).with_for_update()).first()
            if row is None:
                conn.execute(insert, {"id": step_id, "thread_id": thread_id or "", "parent_id": step.get("parentId"),
                                      "type": step.get("type") or "undefined", "name": step.get("name"),
                                      "data": step, "created_at": now, "seq": seq})
                return
            merged = {**(row.data or {}), **{k: v for k, v in step.items() if v is not None}}
            conn.execute(update(chat_steps).where(chat_steps.c.id == step_id).values(
                data=merged, name=merged.get("name"), type=merged.get("type") or row.type,
                thread_id=thread_id or row.thread_id))

        await self._run("saving a chat step", run, write=True)

    async def delete_step(self, step_id: str) -> None:
        """Delete a chat step and its elements and feedback."""

        def run(conn: Connection) -> None:
            conn.execute(delete(chat_elements).where(chat_elements.c.for_id == step_id))
            conn.execute(delete(chat_feedback).where(chat_feedback.c.for_id == step_id))
            conn.execute(delete(chat_steps).where(chat_steps.c.id == step_id))

        await self._run("deleting a chat step", run, write=True)

    # -- elements and feedback ----------------------------------------------------------------------
    async def upsert_element(self, element: dict[str, Any], *, file_id: str | None = None) -> None:
        """Create or replace an element (its dict as Chainlit sends it)."""
        insert = self._sql.insert_ignore(chat_elements, ["id"])
        values = {"id": element["id"], "thread_id": element.get("threadId"), "for_id": element.get("forId"),
                  "file_id": file_id, "data": element, "created_at": now_utc()}

        def run(conn: Connection) -> None:
            if conn.execute(insert, values).rowcount == 0:
                conn.execute(update(chat_elements).where(chat_elements.c.id == element["id"]).values(
                    data=element, for_id=values["for_id"], file_id=file_id))

        await self._run("saving an element", run, write=True)

    async def get_element(self, thread_id: str, element_id: str) -> dict[str, Any] | None:
        """An element's dict, or None."""
        stmt = select(chat_elements.c.data).where(chat_elements.c.id == element_id,
                                                  chat_elements.c.thread_id == thread_id)
        return await self._run("reading an element", lambda conn: conn.execute(stmt).scalar(), write=False)

    async def delete_element(self, element_id: str) -> None:
        """Delete an element."""
        stmt = delete(chat_elements).where(chat_elements.c.id == element_id)
        await self._run("deleting an element", lambda conn: conn.execute(stmt), write=True)

    async def upsert_feedback(self, *, for_id: str, value: int, thread_id: str | None = None,
                              comment: str | None = None, feedback_id: str | None = None) -> str:
        """Record a thumbs up/down (one per step); returns its id."""

        def run(conn: Connection) -> str:
            row = conn.execute(select(chat_feedback).where(chat_feedback.c.for_id == for_id)).first()
            if row is not None:
                conn.execute(update(chat_feedback).where(chat_feedback.c.id == row.id).values(value=value, comment=comment))
                return row.id
            fid = feedback_id or secrets.token_hex(16)
            thread = thread_id or conn.execute(select(chat_steps.c.thread_id).where(chat_steps.c.id == for_id)).scalar()
            conn.execute(chat_feedback.insert().values(id=fid, for_id=for_id, thread_id=thread, value=value,
                                                      comment=comment, created_at=now_utc()))
            return fid

        return await self._run("saving feedback", run, write=True)

    async def delete_feedback(self, feedback_id: str) -> bool:
        """Delete feedback; whether it existed."""
        stmt = delete(chat_feedback).where(chat_feedback.c.id == feedback_id)
        return await self._run("deleting feedback", lambda conn: conn.execute(stmt).rowcount > 0, write=True)

    # -- files ------------------------------------------------------------------------------------
    async def add_file(self, *, name: str, mime: str, size: int, storage_key: str, status: str,
                       user_id: str | None = None, thread_id: str | None = None, text: str | None = None,
                       error: str | None = None) -> FileRecord:
        """Record an uploaded file (its bytes are in the file store under `storage_key`)."""
        values = {"id": secrets.token_hex(16), "user_id": user_id, "thread_id": thread_id, "name": name,
                  "mime": mime, "size": size, "sha256": storage_key, "storage_key": storage_key,
                  "status": status, "text": text, "error": error, "created_at": now_utc()}

        def run(conn: Connection) -> FileRecord:
            conn.execute(files.insert().values(**values))
            return FileRecord(**values)

        return await self._run("saving a file record", run, write=True)

    async def list_files(self, *, thread_id: str | None = None, user_id: str | None = None) -> list[FileRecord]:
        """Files of a thread and/or a user, oldest first."""
        stmt = select(files).order_by(files.c.created_at)
        if thread_id is not None:
            stmt = stmt.where(files.c.thread_id == thread_id)
        if user_id is not None:
            stmt = stmt.where(files.c.user_id == user_id)
        return await self._run("listing files",
                               lambda conn: [FileRecord(**r._mapping) for r in conn.execute(stmt)], write=False)
