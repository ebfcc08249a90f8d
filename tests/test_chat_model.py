"""The chat planned by a model through the OpenAI-compatible path, with the conversation's model setting,
answers streamed into the steps, and token totals per step, per run and per conversation (`/usage`).

A local stub server speaks OpenAI's chat completions protocol: it answers the Chief's planning call with a
workflow (as JSON) and the agents' calls with text, streamed as server-sent events. Set
`CHIEF_TRANSCRIPT_OUT=docs/transcripts/openai-planned.md` to keep the transcript this test writes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.e2e.server import ChatClient, start_server
from tests.http_stub import Reply, Seen, StubServer, openai_reply

PLAN = {
    "workflow": {
        "name": "tide-brief",
        "description": "Notes on a topic, then a short brief for a reader",
        "inputs": {"topic": {"type": "string", "required": True}},
        "steps": [
            {"key": "notes", "agent": "researcher", "prompt": "Write short notes on {{inputs.topic}}"},
            {"key": "brief", "agent": "writer", "prompt": "Write a two-sentence brief from: {{notes.result}}",
             "depends_on": ["notes"]},
        ],
        "output": "{{brief.result}}",
    },
    "inputs": {"topic": "tides"},
}
ANSWERS = {
    "researcher": "Tides are the rise and fall of the sea, pulled mostly by the Moon and partly by the Sun.",
    "writer": "The Moon's pull makes the sea rise and fall twice a day. Spring tides come when Sun and Moon line up.",
}


def answer(seen: Seen) -> Reply:
    """The stub's brain: a plan for the Chief's planning call, a persona's answer for an agent's call."""
    body = seen.body if isinstance(seen.body, dict) else {}
    messages = body.get("messages") or []
    system = str(messages[0].get("content", "")) if messages else ""
    model = body.get("model") or "stub"
    if "Chief-of-Staff" in system:
        return openai_reply("```json\n" + json.dumps(PLAN) + "\n```", model=model, usage=(900, 120))
    persona = "writer" if "writer" in system.lower() else "researcher"
    return openai_reply(ANSWERS[persona], model=model, stream=bool(body.get("stream")), pieces=5, usage=(60, 22))


def step_of(c: ChatClient, name: str) -> dict:
    return next((s for s in c.steps.values() if s.get("name") == name and s.get("type") == "tool"), {})


def final_answer(c: ChatClient) -> str | None:
    for s in c.steps.values():
        text = str(s.get("output") or "")
        if s.get("type") == "assistant_message" and text.startswith(ANSWERS["writer"][:20]):
            return text
    return None


async def test_chat_model_plans_with_openai_streams_steps_and_counts_tokens(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text('"openai:stub-chat-1": {input_per_mtok: 1000, output_per_mtok: 2000}\n')
    with StubServer(responder=answer) as stub:
        srv = start_server(tmp_path / "home", env={
            "CHIEF_PROVIDER": "openai", "CHIEF_OPENAI_BASE_URL": f"{stub.url}/v1", "OPENAI_API_KEY": "",
            "CHIEF_OPENAI_MODEL": "stub-default", "CHIEF_PRICES": str(prices),
        })
        c = ChatClient(srv.url)
        try:
            await c.connect()
            await c.wait_for(lambda c: c.has_text("I am the Chief"))
            panel = await c.wait_for(lambda c: c.by_type.get("chat_settings"))
            select = next(w for w in panel[-1] if w["id"] == "provider")
            assert {"label": "openai", "value": "openai"} in select["items"]  # the registry's providers
            # The conversation's model: the chat settings panel (as the browser sends it).
            await c.sio.emit("chat_settings_change", {"provider": "openai", "model": "stub-chat-1"})
            await c.wait_for(lambda c: c.has_text("This conversation now uses openai · stub-chat-1"))

            sent = [(len(c.steps), "Brief me on tides")]
            await c.send("Brief me on tides")
            await c.wait_for(lambda c: "model planner → `tide-brief`" in str(step_of(c, "plan").get("output")))
            answer_text = await c.wait_for(final_answer, timeout=60)
            sent.append((len(c.steps), "/usage"))
            await c.send("/usage")
            await c.wait_for(lambda c: c.has_text("**Usage of this conversation**"))
        finally:
            await c.close()
            srv.stop()

    plan_step = str(step_of(c, "plan").get("output"))
    assert "(planned with openai/stub-chat-1) · planning: 900 in / 120 out tokens" in plan_step
    # The planner's call and every agent's call went to the conversation's model; the agents streamed.
    calls = [s.body for s in stub.seen if s.path.endswith("/chat/completions")]
    assert calls[0]["messages"][0]["content"].startswith("You are the Chief-of-Staff") and not calls[0].get("stream")
    assert {b["model"] for b in calls} == {"stub-chat-1"}
    assert [b.get("stream") for b in calls[1:]] == [True, True]

    # Streamed tokens reached the client in the step, before its final status: replay what the page shows.
    tokens = c.by_type.get("stream_token", [])
    starts = {s["id"]: s.get("name") for s in c.by_type.get("stream_start", [])}
    assert {"notes", "brief"} <= set(starts.values()), starts
    shown: dict[str, str] = {}
    final_seen: dict[str, bool] = {}
    for event, data in c.events:
        if event == "stream_start":
            shown[data["id"]] = str(data.get("output") or "")
        elif event == "stream_token":
            assert not final_seen.get(data["id"]), "a token after the step's result"
            shown[data["id"]] += data["token"]
        elif event == "update_message" and isinstance(data, dict) and "succeeded" in str(data.get("output"))[:12]:
            final_seen[data["id"]] = True
    for name, persona in (("notes", "researcher"), ("brief", "writer")):
        step_id = next(i for i, n in starts.items() if n == name)
        assert shown[step_id].startswith("▶️ running") and shown[step_id].endswith("\n\n" + ANSWERS[persona])
        output = str(step_of(c, name).get("output"))
        assert output.startswith("✅ succeeded") and "60 in / 22 out tokens · openai/stub-chat-1" in output
        assert output.endswith(ANSWERS[persona])

    # Per run and per conversation totals (the stub reported usage: nothing is estimated).
    assert answer_text.startswith(ANSWERS["writer"])
    assert "Tokens: 120 in / 44 out, cost 0.2080" in answer_text  # (120 × 1000 + 44 × 2000) / 1e6
    usage = next(t for t in c.texts() if "**Usage of this conversation**" in t)
    assert "Tokens: 120 in / 44 out, cost 0.2080" in usage and "| `openai/stub-chat-1` | 120 | 44 |" in usage

    transcript = render_transcript(c, calls, sent, {n: sum(1 for t in tokens if starts[t["id"]] == n) + 1
                                                    for n in ("notes", "brief")})
    out = os.environ.get("CHIEF_TRANSCRIPT_OUT")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(transcript)
    assert "model planner → `tide-brief`" in transcript


def render_transcript(c: ChatClient, calls: list[dict], sent: list[tuple[int, str]], batches: dict[str, int]) -> str:
    """The conversation as a person saw it (messages and steps in order), and the model calls it made."""
    lines = ["# A chat planned by a model through the OpenAI-compatible path", "",
             "Produced by `tests/test_chat_model.py` (`CHIEF_PROVIDER=openai`, `CHIEF_OPENAI_BASE_URL` = a local",
             "server speaking OpenAI's chat completions protocol; conversation model set in the chat settings).", ""]
    said = dict(sent)
    for index, step in enumerate(c.steps.values()):
        if index in said:
            lines += [f"**User:** {said[index]}", ""]
        kind, name = step.get("type"), step.get("name")
        text = str(step.get("output") or "").strip()
        if kind == "user_message":
            lines += [f"**User:** {text}", ""]
        elif kind == "assistant_message":
            lines += ["**Chief:**", "", *[f"> {line}" for line in text.splitlines()], ""]
        elif kind == "tool" and text:
            streamed = f" _(streamed live in {batches[name]} pieces)_" if name in batches else ""
            lines += [f"- step `{name}`: " + text.replace("\n\n", " — ").replace("\n", " ") + streamed, ""]
    lines += ["## Model calls the server received", "", "| # | model | stream | system prompt starts |",
              "| --- | --- | --- | --- |"]
    for i, body in enumerate(calls, 1):
        system = str(body["messages"][0]["content"]).splitlines()[0][:60]
        lines.append(f"| {i} | `{body['model']}` | {bool(body.get('stream'))} | {system} |")
    return "\n".join(lines) + "\n"


async def test_chat_model_setting_routes_runs_and_survives_a_reload(tmp_path: Path) -> None:
    """The conversation's model goes on the run's settings and its steps; a reopened thread keeps it."""
    import sqlite3

    from tests.e2e.server import add_user
    from tests.test_chat_socket import login_cookie

    add_user(tmp_path, "alice", "alice-password")
    srv = start_server(tmp_path, auth=True)
    first = again = None
    try:
        cookie = await login_cookie(srv, "alice", "alice-password")
        first = ChatClient(srv.url, cookie=cookie)
        await first.connect()
        await first.wait_for(lambda c: c.has_text("I am the Chief"))
        await first.send("/help")  # the thread exists from the first message on
        await first.wait_for(lambda c: c.has_text("`/usage`"))
        await first.sio.emit("chat_settings_change", {"provider": "nope", "model": "x"})
        await first.wait_for(lambda c: c.has_text("no provider 'nope' is installed"))
        await first.sio.emit("chat_settings_change", {"provider": "offline", "model": "offline-large"})
        await first.wait_for(lambda c: c.has_text("This conversation now uses offline · offline-large"))
        thread_id = next(d["threadId"] for d in first.steps.values() if d.get("threadId"))
        await first.close()

        again = ChatClient(srv.url, cookie=cookie, thread_id=thread_id)
        await again.connect()
        panel = (await again.wait_for(lambda c: c.by_type.get("chat_settings")))[-1]
        assert {w["id"]: w["initial"] for w in panel} == {"provider": "offline", "model": "offline-large"}
        await again.send("what is the capital of France?")
        await again.wait_for(lambda c: any("Tokens: ~" in t for t in c.texts()), timeout=60)
        await again.send("/usage")
        await again.wait_for(lambda c: c.has_text("| `offline/offline-large` |"))
    finally:
        for c in (first, again):
            if c is not None:
                await c.close()
        srv.stop()
    db = sqlite3.connect(tmp_path / "chief.db")
    try:
        settings, execution = db.execute("select settings, id from executions where conversation_id=?",
                                         (thread_id,)).fetchone()
        models = {m for (m,) in db.execute("select model from step_executions where execution_id=? and "
                                           "status='succeeded'", (execution,))}
    finally:
        db.close()
    assert json.loads(settings) == {"stream": True, "conversation": {"provider": "offline", "model": "offline-large"}}
    assert models == {"offline-large"}
