"""Streaming: a provider's tokens reach subscribers as `step.token` batches, live only (never stored)."""

from __future__ import annotations

import asyncio

import pytest

from chief.core.agents import Completion
from chief.core.bus import LocalBus
from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.events import EventSink, TokenStream
from chief.core.messages import Event, EventType
from chief.core.personas import PersonaAgent
from chief.core.plugins import register_temporary
from chief.core.store import Store
from chief.core.workflows import parse_workflow
from tests.fakes import TestPlugin

pytest_plugins = ["tests.test_redis_support"]  # Redis fixtures: a key prefix per test


class StreamingProvider:
    """Hands its answer to `on_token` word by word (when asked to stream); records the options it got."""

    name = "streamer"
    default_model = "stream-1"

    def __init__(self, text: str = "one two three four five six") -> None:
        self.text = text
        self.options: list[dict] = []

    async def complete(self, messages, *, model=None, **options) -> Completion:
        self.options.append(dict(options))
        on_token = options.get("on_token")
        if on_token is not None:
            for i, word in enumerate(self.text.split(" ")):
                await on_token(word if i == 0 else " " + word)
        return Completion(text=self.text, model=model or self.default_model, tokens_in=7, tokens_out=6)


@pytest.fixture
async def store(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 's.db'}")
    yield store
    await store.close()


async def next_event(queue: asyncio.Queue[Event]) -> Event:
    return await asyncio.wait_for(queue.get(), 5)


async def test_stream_tokens_batched_and_published_live_only(store) -> None:
    bus = LocalBus()
    sink = EventSink(store, bus)
    async with bus.subscribe("e1") as queue:
        held = TokenStream(sink, execution_id="e1", step_key="s", task_key="s", attempt=1, every_s=3600)
        held._last = asyncio.get_running_loop().time()  # as if a batch had just gone: the rest waits
        for piece in ("Hel", "lo", " wor", "ld"):
            await held.on_token(piece)
        assert queue.empty()  # batched, not one event per token
        await held.close()
        event = await next_event(queue)
        assert (event.type, event.data, event.task_key, event.id) == (EventType.STEP_TOKEN,
                                                                      {"text": "Hello world", "attempt": 1}, "s", None)
        eager = TokenStream(sink, execution_id="e1", step_key="s", task_key="s", attempt=2, every_s=0)
        await eager.on_token("a")
        await eager.on_token("b")
        assert [(await next_event(queue)).data["text"] for _ in range(2)] == ["a", "b"]
        timed = TokenStream(sink, execution_id="e1", step_key="s", task_key="s", attempt=3, every_s=0.05)
        await timed.on_token("first")  # the first piece goes at once
        await timed.on_token(" later")  # within the batch time: published by the timer, without more tokens
        assert (await next_event(queue)).data["text"] == "first"
        assert (await next_event(queue)).data["text"] == " later"
        await timed.close()
    assert await store.list_events("e1") == []  # live only: nothing in the database


async def test_stream_tokens_publish_live_refuses_stored_events(store) -> None:
    sink = EventSink(store, LocalBus())
    with pytest.raises(ValueError, match="step.succeeded is a stored event"):
        await sink.publish_live([Event(execution_id="e", type=EventType.STEP_SUCCEEDED)])


@pytest.fixture(params=["local", "redis"])
def engine_settings(request, tmp_path) -> Settings:
    """Embedded (SQLite, in-process bus), or PostgreSQL + Redis (token events over Redis pub/sub)."""
    if request.param == "local":
        return Settings(home=tmp_path)
    return Settings(home=tmp_path, database_url=request.getfixturevalue("migrated_pg"),
                    redis_url=request.getfixturevalue("shared_redis_url"),
                    redis_prefix=request.getfixturevalue("redis_prefix"))


async def run_streaming(settings_: Settings, provider: StreamingProvider, settings: dict | None):
    agent = PersonaAgent(name="talker", description="d", capabilities=["talk"], system_prompt="You talk.",
                         provider="streamer")
    with register_temporary(TestPlugin(agents=[agent], providers=[provider])) as registry:
        engine = await Engine.open(settings_, registry=registry)
        try:
            spec = parse_workflow("name: talk\nsteps:\n  - {key: say, agent: talker, prompt: 'say something'}\n")
            async with engine.bus.subscribe() as queue:
                execution_id = await engine.start(spec, {}, settings=settings)
                record = await asyncio.wait_for(engine.wait(execution_id), 30)
                seen = []
                while not queue.empty():
                    seen.append(queue.get_nowait())
            stored = await engine.store.list_events(execution_id)
        finally:
            await engine.close()
    return record, seen, stored


async def test_stream_tokens_of_a_chat_run_reach_subscribers(engine_settings) -> None:
    provider = StreamingProvider()
    record, seen, stored = await run_streaming(engine_settings, provider, {"stream": True})
    assert record.status == "succeeded"
    tokens = [e for e in seen if e.type == EventType.STEP_TOKEN]
    assert tokens and all(e.step_key == "say" and e.data["attempt"] == 1 for e in tokens)
    assert "".join(e.data["text"] for e in tokens) == provider.text
    done = next(i for i, e in enumerate(seen) if e.type == EventType.STEP_SUCCEEDED)
    assert max(i for i, e in enumerate(seen) if e.type == EventType.STEP_TOKEN) < done  # tokens before the result
    assert EventType.STEP_TOKEN not in {e.type for e in stored}


async def test_stream_tokens_not_asked_costs_nothing(tmp_path) -> None:
    provider = StreamingProvider()
    record, seen, _ = await run_streaming(Settings(home=tmp_path), provider, None)
    assert record.status == "succeeded"
    assert "on_token" not in provider.options[0]  # the provider was not asked to stream
    assert not [e for e in seen if e.type == EventType.STEP_TOKEN]
