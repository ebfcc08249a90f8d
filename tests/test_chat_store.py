"""Chat persistence: users and passwords, threads scoped to their user, steps saved in order, our data layer."""

from __future__ import annotations

import asyncio
import os
import tempfile

# Importing chainlit writes `.chainlit/` and `.files/` into its app folder: keep them out of the repository.
os.environ.setdefault("CHAINLIT_APP_ROOT", tempfile.mkdtemp(prefix="chief-chainlit-"))

import pytest  # noqa: E402
from chainlit.types import Feedback, Pagination, ThreadFilter  # noqa: E402

from chief.chat_app.data import ChiefDataLayer  # noqa: E402
from chief.core.errors import AuthError  # noqa: E402
from chief.core.store.chat import ChatStore, check_password, hash_password  # noqa: E402


@pytest.fixture
def chat(store) -> ChatStore:
    return ChatStore(store)


def test_chat_passwords_are_salted_hashes() -> None:
    one, two = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert one != two and "s3cret" not in one
    assert check_password("s3cret-pass", one) and not check_password("wrong", one)
    assert not check_password("x", None)


async def test_chat_users_add_authenticate_and_refuse_duplicates(chat: ChatStore) -> None:
    alice = await chat.add_user("alice", "correct horse")
    assert (await chat.authenticate("alice", "correct horse")).id == alice.id
    assert await chat.authenticate("alice", "wrong") is None
    assert await chat.authenticate("nobody", "x") is None
    with pytest.raises(AuthError, match="exists already"):
        await chat.add_user("alice", "another one")
    await chat.add_user("alice", "new password", replace_password=True)
    assert await chat.authenticate("alice", "new password") is not None


async def test_chat_threads_are_listed_per_user_only(chat: ChatStore) -> None:
    alice = await chat.add_user("alice", "password-a")
    bob = await chat.add_user("bob", "password-b")
    for i in range(3):
        await chat.upsert_thread(f"a{i}", name=f"alice {i}", user_id=alice.id)
    await chat.upsert_thread("b0", name="bob's", user_id=bob.id)
    rows, more = await chat.list_threads(alice.id, first=2)
    assert [r["id"] for r in rows] == ["a2", "a1"] and more
    rows, more = await chat.list_threads(alice.id, first=2, cursor="a1")
    assert [r["id"] for r in rows] == ["a0"] and not more
    assert [r["id"] for r in (await chat.list_threads(bob.id))[0]] == ["b0"]
    assert await chat.thread_owner("b0") == "bob"
    assert (await chat.list_threads(alice.id, search="1"))[0][0]["id"] == "a1"


async def test_chat_data_layer_keeps_the_last_write_of_each_step(chat: ChatStore) -> None:
    layer = ChiefDataLayer(chat)
    await layer.update_thread("t1", name="review")
    step = {"id": "s1", "threadId": "t1", "type": "tool", "name": "audit", "output": "", "createdAt": "2026-01-01"}
    # Chainlit fires these as unawaited tasks, in this order: the last one must win.
    tasks = [asyncio.create_task(layer.create_step(dict(step)))]
    for n in range(20):
        tasks.append(asyncio.create_task(layer.update_step({**step, "output": f"partial {n}"})))
    tasks.append(asyncio.create_task(layer.update_step({**step, "output": "final answer", "end": "2026-01-02"})))
    await asyncio.gather(*tasks)
    await layer.create_step({"id": "m1", "threadId": "t1", "type": "assistant_message", "output": "done"})
    await layer.upsert_feedback(Feedback(forId="m1", value=1))
    thread = await layer.get_thread("t1")
    assert thread is not None
    assert [s["id"] for s in thread["steps"]] == ["s1", "m1"]
    assert thread["steps"][0]["output"] == "final answer" and thread["steps"][0]["end"] == "2026-01-02"
    assert thread["steps"][1]["feedback"]["value"] == 1
    await layer.delete_step("m1")
    assert [s["id"] for s in (await layer.get_thread("t1"))["steps"]] == ["s1"]


async def test_chat_data_layer_users_and_thread_pages(chat: ChatStore) -> None:
    from chainlit.user import User

    layer = ChiefDataLayer(chat)
    persisted = await layer.create_user(User(identifier="carol"))
    assert persisted is not None and (await layer.get_user("carol")).id == persisted.id
    await layer.update_thread("t1", name="one", user_id=persisted.id)
    await layer.update_thread("t2", name="not hers")
    page = await layer.list_threads(Pagination(first=10), ThreadFilter(userId=persisted.id))
    assert [t["id"] for t in page.data] == ["t1"]
    assert await layer.get_thread_author("t1") == "carol"
    await layer.create_element(type("E", (), {"to_dict": lambda self: {"id": "e1", "threadId": "t1",
                                                                       "type": "custom", "props": {"a": 1}}})())
    assert (await layer.get_thread("t1"))["elements"][0]["props"] == {"a": 1}
    await layer.delete_thread("t1")
    assert await layer.get_thread("t1") is None
    await layer.close()


async def test_chat_files_are_recorded_per_thread(chat: ChatStore) -> None:
    record = await chat.add_file(name="a.txt", mime="text/plain", size=3, storage_key="0" * 64, status="extracted",
                                 thread_id="t1", text="abc")
    assert [f.id for f in await chat.list_files(thread_id="t1")] == [record.id]
    assert await chat.list_files(thread_id="t2") == []
