"""Result cache: keyed by (agent, provider, model, rendered prompt), TTL, `cache: false`, hits visible."""

from __future__ import annotations

import asyncio

import pytest

from chief.core.bus import LocalBus
from chief.core.bus.keys import Keys
from chief.core.bus.redis import connect
from chief.core.cache import ResultCache, cache_key
from chief.core.messages import AgentMessage, EventType, StepResult, StepTask
from chief.core.plugins import register_temporary
from chief.core.store import Store
from chief.core.worker import Worker
from tests.fakes import ScriptedProvider, TestPlugin

pytest_plugins = ["tests.test_redis_support"]  # Redis fixtures: prefix, private server, workers


class AskingAgent:
    name, description, capabilities, provider, model = "asker", "asks its provider", ("ask",), "scripted", None

    async def run(self, task, ctx):
        return (await ctx.complete([{"role": "user", "content": task.prompt}])).text


@pytest.fixture(params=["local", "redis"])
async def cache(request):
    if request.param == "local":
        yield ResultCache(60)
        return
    client = connect(request.getfixturevalue("shared_redis_url"), max_connections=4)
    try:
        yield ResultCache(60, redis=client, keys=Keys(request.getfixturevalue("redis_prefix")))
    finally:
        await client.aclose(close_connection_pool=True)


def test_cache_key_changes_with_agent_provider_model_and_prompt():
    base = cache_key("a", "p", "m", "prompt")
    assert base == cache_key("a", "p", "m", "prompt")
    assert len({base, cache_key("b", "p", "m", "prompt"), cache_key("a", "q", "m", "prompt"),
                cache_key("a", "p", "n", "prompt"), cache_key("a", "p", "m", "prompt!")}) == 5


async def test_cache_keeps_a_result_for_its_ttl(cache):
    cache.ttl_s = 0.2
    await cache.set("d", {"output": "x"})
    assert await cache.get("d") == {"output": "x"}
    await asyncio.sleep(0.3)  # the TTL passes
    assert await cache.get("d") is None


async def test_cache_skips_values_that_are_not_json(cache):
    assert await cache.set("d", {"output": object()}) is False
    assert await cache.get("d") is None


@pytest.fixture
async def store(tmp_path):
    opened = await Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    yield opened
    await opened.close()


async def run_task(bus, worker, task_key, prompt="same prompt", cache=True):
    payload = StepTask(execution_id="e1", task_key=task_key, step_key=task_key, agent="asker", prompt=prompt,
                       cache=cache)
    message = AgentMessage(sender="engine", recipient="asker", type="task", payload=payload.model_dump(),
                           correlation_id=f"e1:{task_key}:1")
    reply = bus.expect_reply(message.correlation_id)
    await bus.send(message)
    await worker.handle(await bus.receive(timeout=1))
    return StepResult.model_validate((await asyncio.wait_for(reply, 5)).payload)


async def test_worker_answers_a_repeated_step_from_the_cache_and_says_so(store, cache):
    provider = ScriptedProvider(replies=["first answer", "second answer"])
    with register_temporary(TestPlugin(agents=[AskingAgent()], providers=[provider])) as registry:
        bus = LocalBus()
        worker = Worker(bus, store, registry, cache=cache)
        async with bus.subscribe("e1") as events:
            first = await run_task(bus, worker, "s1")
            second = await run_task(bus, worker, "s2")
            assert (first.output, first.cached) == ("first answer", False)
            assert (second.output, second.cached) == ("first answer", True)
            assert len(provider.asked) == 1
            succeeded = []
            while not events.empty():
                event = events.get_nowait()
                if event.type == EventType.STEP_SUCCEEDED:
                    succeeded.append((event.task_key, event.data.get("cached", False)))
        assert succeeded == [("s1", False), ("s2", True)]
        rows = {r.task_key: r for r in await store.list_steps("e1")}
        assert rows["s2"].cached and not rows["s1"].cached


async def test_worker_bypasses_the_cache_for_a_step_with_cache_false(store, cache):
    provider = ScriptedProvider(replies=["first answer", "second answer"])
    with register_temporary(TestPlugin(agents=[AskingAgent()], providers=[provider])) as registry:
        bus = LocalBus()
        worker = Worker(bus, store, registry, cache=cache)
        await run_task(bus, worker, "s1")
        again = await run_task(bus, worker, "s2", cache=False)
        assert (again.output, again.cached) == ("second answer", False)
        assert len(provider.asked) == 2
