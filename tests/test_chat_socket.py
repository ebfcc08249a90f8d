"""The chat over its socket.io protocol (no browser): planning, live steps, commands, files, buttons, re-attach."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.server import APPROVAL_FLOW, ChatClient, ChatServer, start_server

DIFF = (b"diff --git a/app.py b/app.py\n--- a/app.py\n+++ b/app.py\n@@ -1,2 +1,3 @@\n import os\n"
        b"+os.system(input())\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatServer]:
    home = tmp_path_factory.mktemp("chat-socket")
    srv = start_server(home, env={"CHIEF_OFFLINE_LATENCY_MS": "250", "CHIEF_MAX_FILE_MB": "1"})
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
async def client(server: ChatServer):
    c = ChatClient(server.url)
    await c.connect()
    await c.wait_for(lambda c: c.has_text("I am the Chief"))
    try:
        yield c
    finally:
        await c.close()


def final_answer(c: ChatClient) -> str | None:
    for step in c.steps.values():
        text = str(step.get("output") or "")
        if step.get("type") == "assistant_message" and ("offline reply" in text or "run was cancelled" in text) \
                and "Run `" not in text and "Plan:" not in text:
            return text
    return None


def run_headline(c: ChatClient) -> str:
    """The latest run message's headline ("▶️ Run `abc` of **x** — running")."""
    lines = [str(s.get("output")) for s in c.steps.values()
             if s.get("type") == "assistant_message" and re.match(r"Run `\w+` of \*\*", str(s.get("output") or ""))]
    return lines[-1] if lines else ""


def step_output(c: ChatClient, name: str) -> str:
    for step in c.steps.values():
        if step.get("name") == name and step.get("type") == "tool":
            return str(step.get("output") or "")
    return ""


async def test_chat_socket_plans_runs_and_answers_with_live_steps(client: ChatClient, server: ChatServer) -> None:
    upload = await client.upload("changes.diff", DIFF, "text/x-diff")
    await client.send("Review this change for security and quality", [upload])
    await client.wait_for(lambda c: c.has_text("Plan: `code-review`"))
    answer = await client.wait_for(final_answer, timeout=60)
    assert "product lead" in answer
    for key in ("parse-changes", "security-audit", "quality-check", "aggregate"):
        assert step_output(client, key).startswith("✅ succeeded")
    assert "changes.diff" in step_output(client, "read-files")
    plan_text = next(t for t in client.texts() if "Plan: `code-review`" in t)
    assert "`security-audit` ‖ `quality-check`" in plan_text  # the parallel steps are named as such
    boards = [e for e in client.by_type["element"] if e.get("name") == "PlanBoard"]
    assert boards and boards[-1]["props"]["status"] == "succeeded"
    assert {n["status"] for n in boards[-1]["props"]["nodes"]} == {"succeeded"}
    # Both parallel steps were running at the same time: each started before the other finished.
    seen = [(e, d.get("name"), str(d.get("output"))[:12]) for e, d in client.events if isinstance(d, dict)]
    started = {name: i for i, (e, name, out) in enumerate(seen) if "running" in out and name in ("security-audit", "quality-check")}
    done = {name: i for i, (e, name, out) in enumerate(seen) if "succeeded" in out and name in ("security-audit", "quality-check")}
    assert max(started.values()) < min(done.values())


async def test_chat_socket_shows_a_step_status_within_200ms_of_its_event(client: ChatClient, server: ChatServer) -> None:
    await client.send("research the history of the transistor")
    await client.wait_for(final_answer, timeout=60)
    db = sqlite3.connect(server.home / "chief.db")
    try:
        execution = db.execute("select id from executions where workflow_name='research-report' "
                               "order by created_at desc limit 1").fetchone()[0]
        events = db.execute("select type, step_key, created_at from events where execution_id=? "
                            "and type in ('step.started', 'step.succeeded')", (execution,)).fetchall()
    finally:
        db.close()
    words = {"step.started": "running", "step.succeeded": "succeeded"}
    delays = []
    for type_, key, created in events:
        at = datetime.fromisoformat(created).timestamp()
        shown = next(t for (name, data), t in zip(client.events, client.received, strict=True)
                     if isinstance(data, dict) and data.get("name") == key and data.get("type") == "tool"
                     and words[type_] in str(data.get("output"))[:20] and t >= at - 0.001)
        delays.append(shown - at)
    assert len(delays) == 10
    print("step status shown after its event (s):", [round(d, 4) for d in sorted(delays)])
    delays.sort()
    assert delays[len(delays) // 2] < 0.2, delays  # the median; the report gives the spread
    assert delays[-1] < 1.0, delays


async def test_chat_socket_falls_back_to_a_plain_answer(client: ChatClient) -> None:
    await client.send("what is the capital of France?")
    await client.wait_for(lambda c: c.has_text("Plan: `answer`"))
    assert "assistant" in await client.wait_for(final_answer, timeout=30)


async def test_chat_socket_commands(client: ChatClient) -> None:
    await client.send("/help")
    await client.wait_for(lambda c: c.has_text("`/run NAME key=value ...`"))
    await client.send("/workflows")
    await client.wait_for(lambda c: c.has_text("| `code-review` |") and c.has_text("| `document-digest` |"))
    await client.send("/runs")
    await client.wait_for(lambda c: c.has_text("No runs in this conversation yet."))
    await client.send("/run research-report topic=tides audience=sailors")
    await client.wait_for(lambda c: c.has_text("Plan: `research-report`") and c.has_text("`audience` = sailors"))
    await client.wait_for(final_answer, timeout=60)
    await client.send("/runs")
    await client.wait_for(lambda c: c.has_text("| research-report | succeeded |"))
    await client.send("/run nope")
    await client.wait_for(lambda c: c.has_text("no workflow 'nope'"))
    await client.send("/frobnicate")
    await client.wait_for(lambda c: c.has_text("Unknown command `/frobnicate`"))
    await client.send("/pause")
    await client.wait_for(lambda c: c.has_text("only a running execution can pause"))


async def test_chat_socket_refuses_unreadable_and_too_large_files(client: ChatClient) -> None:
    png = await client.upload("photo.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png")
    big = await client.upload("big.txt", b"a" * (1024 * 1024 + 10), "text/plain")
    await client.send("summarise these", [png, big])
    await client.wait_for(lambda c: c.has_text("photo.png: cannot read a PNG image")
                          and c.has_text("big.txt: 1.0 MB is over the 1 MB limit"))
    await client.wait_for(lambda c: c.has_text("Plan: `answer`"))
    await client.wait_for(final_answer, timeout=30)  # the text of the message still gets an answer


async def test_chat_socket_pause_and_resume_from_the_buttons(client: ChatClient) -> None:
    await client.send("research the history of the transistor")
    await client.wait_for(lambda c: "running" in step_output(c, "outline"))
    pause = [a for a in client.actions() if a["name"] == "chief_pause"][-1]
    await client.action(pause)
    await client.wait_for(lambda c: "— paused" in run_headline(c), timeout=30)
    assert not step_output(client, "edit")  # nothing after the pause started
    resume = await client.wait_for(lambda c: next((a for a in c.actions() if a["name"] == "chief_resume"), None))
    await client.action(resume)
    answer = await client.wait_for(final_answer, timeout=60)
    assert "editor" in answer or "offline reply" in answer
    assert "— succeeded" in run_headline(client)


async def test_chat_socket_approve_a_step_from_its_button(client: ChatClient) -> None:
    flow = await client.upload("approve-demo.yaml", APPROVAL_FLOW.encode(), "text/yaml")
    await client.send("/run", [flow])
    await client.wait_for(lambda c: "waiting" in step_output(c, "publish"), timeout=30)
    approve = await client.wait_for(
        lambda c: next((a for a in c.actions() if a["name"] == "chief_approve"), None))
    assert approve["payload"]["step"] == "publish"
    await client.action(approve)
    await client.wait_for(final_answer, timeout=30)
    assert step_output(client, "publish").startswith("✅ succeeded")


async def test_chat_socket_cancel_command(client: ChatClient) -> None:
    await client.send("research the history of the transistor")
    await client.wait_for(lambda c: "running" in step_output(c, "outline"))
    await client.send("/cancel")
    await client.wait_for(lambda c: c.has_text("The run was cancelled."), timeout=30)


async def test_chat_socket_a_new_session_reattaches_to_a_running_run(server: ChatServer) -> None:
    first = ChatClient(server.url)
    await first.connect()
    await first.wait_for(lambda c: c.has_text("I am the Chief"))
    await first.send("research the history of the transistor")
    await first.wait_for(lambda c: "running" in step_output(c, "outline"))
    await first.close()  # the page is gone; the run is not
    second = ChatClient(server.url)
    await second.connect()
    try:
        await second.wait_for(lambda c: c.has_text("Still running from before"), timeout=30)
        answer = await second.wait_for(final_answer, timeout=60)
        assert "offline reply" in answer
        assert step_output(second, "outline").startswith("✅")  # caught up from the store
    finally:
        await second.close()


def test_chat_cli_requires_auth_off_loopback(tmp_path: Path) -> None:
    env = {**os.environ, "CHIEF_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "chief.cli", "chat", "--host", "0.0.0.0", "--no-auth"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--no-auth is only allowed on a loopback address" in done.stderr
    from chief.cli.chat import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3")


async def login_cookie(server: ChatServer, name: str, password: str) -> str:
    import httpx

    async with httpx.AsyncClient() as http:
        r = await http.post(f"{server.url}/login", data={"username": name, "password": password})
    assert r.status_code == 200, r.text
    return f"access_token={r.cookies['access_token']}"


async def test_chat_socket_users_cannot_touch_each_others_runs(tmp_path: Path) -> None:
    from tests.e2e.server import add_user

    add_user(tmp_path, "alice", "alice-password")
    add_user(tmp_path, "bob", "bob-password-1")
    srv = start_server(tmp_path, auth=True, env={"CHIEF_OFFLINE_LATENCY_MS": "400"})
    alice = bob = None
    try:
        import httpx

        async with httpx.AsyncClient() as http:
            r = await http.post(f"{srv.url}/login", data={"username": "alice", "password": "wrong"})
        assert r.status_code == 401
        alice = ChatClient(srv.url, cookie=await login_cookie(srv, "alice", "alice-password"))
        await alice.connect()
        await alice.wait_for(lambda c: c.has_text("I am the Chief"))
        await alice.send("research the history of the transistor")
        await alice.wait_for(lambda c: "running" in step_output(c, "outline"))
        run_id = next(a for a in alice.actions() if a["name"] == "chief_pause")["payload"]["execution_id"]
        bob = ChatClient(srv.url, cookie=await login_cookie(srv, "bob", "bob-password-1"))
        await bob.connect()
        await bob.wait_for(lambda c: c.has_text("I am the Chief"))
        assert not bob.has_text("Still running from before")  # alice's run is not re-attached for bob
        await bob.send(f"/cancel {run_id}")
        await bob.wait_for(lambda c: c.has_text(f"no run '{run_id}' in your conversations"))
        await bob.send("/runs")
        await bob.wait_for(lambda c: c.has_text("No runs in this conversation yet."))
        assert await alice.wait_for(final_answer, timeout=60)  # alice's run went on untouched
    finally:
        for c in (alice, bob):
            if c is not None:
                await c.close()
        srv.stop()


async def test_chat_socket_confirm_plans_waits_for_run(tmp_path: Path) -> None:
    srv = start_server(tmp_path, env={"CHIEF_CONFIRM_PLANS": "1"})
    c = ChatClient(srv.url)
    try:
        await c.connect()
        await c.wait_for(lambda c: c.has_text("I am the Chief"))
        await c.send("what is the capital of France?")
        run = await c.wait_for(lambda c: next((a for a in c.actions() if a["name"] == "chief_run_plan"), None))
        assert c.has_text("Plan: `answer`") and not run_headline(c)  # nothing runs before the click
        await c.action(run)
        assert "assistant" in await c.wait_for(final_answer, timeout=30)
        await c.action(run)  # a second click does not run it twice
        await c.wait_for(lambda c: c.has_text("already been run or discarded"))
    finally:
        await c.close()
        srv.stop()


async def test_chat_socket_reopening_a_conversation_reattaches_its_running_run(tmp_path: Path) -> None:
    from tests.e2e.server import add_user

    add_user(tmp_path, "alice", "alice-password")
    srv = start_server(tmp_path, auth=True, env={"CHIEF_OFFLINE_LATENCY_MS": "500"})
    first = again = None
    try:
        cookie = await login_cookie(srv, "alice", "alice-password")
        first = ChatClient(srv.url, cookie=cookie)
        await first.connect()
        await first.wait_for(lambda c: c.has_text("I am the Chief"))
        await first.send("research the history of the transistor")
        await first.wait_for(lambda c: "running" in step_output(c, "outline"))
        thread_id = next(d["threadId"] for d in first.steps.values() if d.get("threadId"))
        await first.close()
        again = ChatClient(srv.url, cookie=cookie, thread_id=thread_id)
        await again.connect()
        await again.wait_for(lambda c: c.has_text("This conversation's run is still going:"), timeout=30)
        assert "offline reply" in await again.wait_for(final_answer, timeout=60)
    finally:
        for c in (first, again):
            if c is not None:
                await c.close()
        srv.stop()
