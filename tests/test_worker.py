"""The worker: timeout, retries with exponential backoff and jitter, dead letters, effect once."""

import asyncio

import pytest

from chief.core.bus import LocalBus
from chief.core.messages import AgentMessage, StepResult, StepTask
from chief.core.plugins import register_temporary
from chief.core.store import StepRecord, Store
from chief.core.worker import Worker
from tests.fakes import FlakyAgent, ScriptedProvider, TestPlugin


@pytest.fixture
async def store(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    yield store
    await store.close()


class SlowAgent:
    name, description, capabilities, provider, model = "slow", "sleeps", ("slow",), None, None

    async def run(self, task, ctx):
        await asyncio.Event().wait()  # never finishes by itself


class AskingAgent:
    name, description, capabilities, provider, model = "asker", "asks its provider", ("ask",), "scripted", None

    async def run(self, task, ctx):
        return (await ctx.complete([{"role": "user", "content": task.prompt}])).text


def task_message(agent, task_key="s", **task):
    payload = StepTask(execution_id="e1", task_key=task_key, step_key=task_key, agent=agent, prompt="p", **task)
    return AgentMessage(sender="engine", recipient=agent, type="task", payload=payload.model_dump(),
                        correlation_id=f"e1:{task_key}:1")


@pytest.fixture
def flaky():
    return FlakyAgent()


@pytest.fixture
def provider():
    return ScriptedProvider(replies=["scripted answer"])


@pytest.fixture
def worker_parts(store, flaky, provider):
    sleeps = []

    async def record_sleep(seconds):
        sleeps.append(seconds)

    with register_temporary(TestPlugin(agents=[flaky, SlowAgent(), AskingAgent()], providers=[provider])) as registry:
        bus = LocalBus()
        worker = Worker(bus, store, registry, sleep=record_sleep)
        yield bus, worker, sleeps


async def run_one(bus, worker, message):
    reply = bus.expect_reply(message.correlation_id)
    await bus.send(message)
    delivery = await bus.receive(timeout=1)
    await worker.handle(delivery)
    return StepResult.model_validate((await asyncio.wait_for(reply, 5)).payload)


async def test_worker_retries_with_exponential_backoff_and_jitter(worker_parts, store, flaky):
    bus, worker, sleeps = worker_parts
    flaky.failures = 3
    result = await run_one(bus, worker, task_message("flaky", attempts=4, backoff_s=1.0, backoff_multiplier=2.0,
                                                     max_backoff_s=30))
    assert result.status == "succeeded" and result.attempts == 4
    assert len(sleeps) == 3
    for i, delay in enumerate(sleeps):  # 1, 2, 4 s, each plus up to 1 s of jitter
        assert 2**i <= delay <= 2**i + 1.0
    rows = await store.list_steps("e1")
    assert [r.status for r in rows] == ["retrying", "retrying", "retrying", "succeeded"]
    assert "flaky failure 1" in rows[0].error


async def test_worker_dead_letters_a_step_after_its_last_attempt(worker_parts, store, flaky):
    bus, worker, _ = worker_parts
    flaky.failures = 99
    result = await run_one(bus, worker, task_message("flaky", attempts=3, backoff_s=0.01))
    assert result.status == "failed" and "flaky failure 3" in result.error
    dead = await store.list_dead_letters()
    assert len(dead) == 1 and dead[0].attempts == 3 and dead[0].recipient == "flaky"
    assert dead[0].message["correlation_id"] == "e1:s:1"


async def test_worker_does_not_retry_an_error_that_says_it_is_final(worker_parts, flaky):
    bus, worker, sleeps = worker_parts
    flaky.failures, flaky.retryable = 99, False
    result = await run_one(bus, worker, task_message("flaky", attempts=5))
    assert result.status == "failed" and result.attempts == 1 and sleeps == []


async def test_worker_times_out_a_step_and_says_so(worker_parts):
    bus, worker, _ = worker_parts
    result = await run_one(bus, worker, task_message("slow", timeout_s=0.05, attempts=2, backoff_s=0.01))
    assert result.status == "failed"
    assert result.error == "step 's' timed out after 0.05 s"


async def test_worker_answers_a_duplicate_delivery_from_the_ledger(worker_parts, store, flaky):
    bus, worker, _ = worker_parts
    await store.record(steps=[StepRecord(execution_id="e1", task_key="s", step_key="s", attempt=1,
                                         status="succeeded", result="recorded before")])
    result = await run_one(bus, worker, task_message("flaky"))
    assert result.output == "recorded before"
    assert flaky.attempts == {}  # not run again


async def test_worker_routes_completions_to_the_agent_provider_and_records_usage(worker_parts, store, provider):
    bus, worker, _ = worker_parts
    result = await run_one(bus, worker, task_message("asker"))
    assert result.output == "scripted answer"
    assert provider.asked == [[{"role": "user", "content": "p"}]]
    row = [r for r in await store.list_steps("e1") if r.status == "succeeded"][0]
    assert (row.provider, row.model, row.tokens_in, row.tokens_out) == ("scripted", "scripted-1", 3, 5)


async def test_worker_sends_a_malformed_task_to_the_dead_letters_instead_of_crashing(worker_parts, store):
    bus, worker, _ = worker_parts
    bad = AgentMessage(sender="x", recipient="flaky", type="task", payload={"nonsense": True}, correlation_id="bad")
    await bus.send(bad)
    await worker.handle(await bus.receive(timeout=1))
    dead = await store.list_dead_letters()
    assert len(dead) == 1 and dead[0].reason.startswith("malformed task")


async def test_worker_runs_tasks_concurrently_up_to_its_limit(worker_parts, store):
    bus, worker, _ = worker_parts
    worker.start()
    try:
        replies = []
        for i in range(4):
            message = task_message("asker", task_key=f"t{i}")
            replies.append(bus.expect_reply(message.correlation_id))
            await bus.send(message)
        results = await asyncio.wait_for(asyncio.gather(*replies), 10)
        assert len(results) == 4
    finally:
        await worker.stop()


class BuggyAgent:
    name, description, capabilities, provider, model = "buggy", "has a bug", ("bug",), None, None

    async def run(self, task, ctx):
        return {}["missing"]


async def test_worker_names_the_plugin_whose_agent_raised(store):
    with register_temporary(TestPlugin(agents=[BuggyAgent()]), name="acme-agents") as registry:
        bus = LocalBus()
        worker = Worker(bus, store, registry)
        result = await run_one(bus, worker, task_message("buggy", attempts=1))
    assert result.status == "failed"
    assert "acme-agents" in result.error and "buggy" in result.error and "KeyError" in result.error
