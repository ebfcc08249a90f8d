"""Real `chief worker` processes on Redis: priorities under load, kill -9 mid-task, FLUSHALL mid-run,
breaker + dead letters, two workers sharing the load, auto-scaling, malformed messages."""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import asynccontextmanager

import pytest
import yaml

from chief.core.bus.keys import Keys
from chief.core.bus.redis import connect
from chief.core.engine import Engine
from chief.core.messages import EventType, Lane
from chief.core.workflows import parse_workflow
from tests.test_redis_support import settings_for, wait_for

pytest_plugins = ["tests.test_redis_support"]  # Redis fixtures: prefix, private server, workers

pytestmark = pytest.mark.timeout(120)


def workflow(steps: list[dict], name: str = "t") -> object:
    return parse_workflow(yaml.safe_dump({"name": name, "steps": steps}), fmt="yaml")


@asynccontextmanager
async def orchestrator(tmp_path, db_url, redis_url, prefix, **settings):
    """An engine with no worker of its own: every step has to go through Redis to a worker process."""
    engine = await Engine.open(settings_for(tmp_path, db_url, redis_url, prefix, **settings), workers=0)
    try:
        yield engine
    finally:
        await engine.close()


async def next_events(queue, type_, count, timeout=30.0):
    got = []
    async with asyncio.timeout(timeout):
        while len(got) < count:
            event = await queue.get()
            if event.type == type_:
                got.append(event)
    return got


async def assert_each_step_recorded_once(engine, execution_id, keys):
    rows = await engine.store.list_steps(execution_id)
    succeeded = Counter(r.task_key for r in rows if r.status == "succeeded")
    assert succeeded == Counter(keys), rows
    events = await engine.store.list_events(execution_id)
    done = Counter(e.task_key for e in events if e.type == EventType.STEP_SUCCEEDED)
    assert done == Counter(keys)


async def assert_each_attempt_recorded_once(engine, execution_id, keys):
    """After Redis lost a task mid-run, the engine may have sent it again (a new attempt) while the first
    delivery was still running: each (step, attempt) has one result, every step has one."""
    rows = await engine.store.list_steps(execution_id)
    finals = Counter((r.task_key, r.attempt) for r in rows if r.status == "succeeded")
    assert {k for k, _ in finals} == set(keys), rows
    assert set(finals.values()) == {1}


async def test_worker_takes_higher_lanes_first_under_load(tmp_path, migrated_pg, shared_redis_url, redis_prefix,
                                                          worker_procs_factory):
    lanes = ["low", "normal", "high", "critical"]
    spec = workflow([{"key": f"{lanes[i % 4]}-{i}", "agent": "echo", "prompt": str(i), "priority": lanes[i % 4]}
                     for i in range(16)])
    procs = worker_procs_factory(migrated_pg, shared_redis_url, redis_prefix)
    async with orchestrator(tmp_path, migrated_pg, shared_redis_url, redis_prefix) as engine:
        async with engine.bus.subscribe(None) as events:
            execution_id = await engine.start(spec)
            await next_events(events, EventType.STEP_QUEUED, 16)  # all waiting before any worker is up
            procs.start("w1", "--agents", "echo", "--concurrency", "1")
            record = await asyncio.wait_for(engine.wait(execution_id, finished=True), 60)
        assert record.status == "succeeded"
        started = [e.task_key for e in await engine.store.list_events(execution_id) if e.type == EventType.STEP_STARTED]
        order = [Lane[k.split("-")[0].upper()] for k in started]
        assert order == sorted(order, reverse=True), started


async def test_a_worker_killed_mid_task_leaves_it_to_another_and_each_step_is_recorded_once(
        tmp_path, migrated_pg, shared_redis_url, redis_prefix, worker_procs_factory):
    spec = workflow([{"key": f"s{i}", "agent": "backend", "prompt": f"part {i}"} for i in range(3)])
    procs = worker_procs_factory(migrated_pg, shared_redis_url, redis_prefix)
    procs.start("doomed", "--concurrency", "3", CHIEF_OFFLINE_LATENCY_MS="60000", CHIEF_CLAIM_S="1")
    await procs.wait_live("doomed")
    async with orchestrator(tmp_path, migrated_pg, shared_redis_url, redis_prefix, lease_s=120) as engine:
        async with engine.bus.subscribe(None) as events:
            execution_id = await engine.start(spec)
            await next_events(events, EventType.STEP_STARTED, 3)
            procs.kill("doomed")  # kill -9 with three tasks in flight
            procs.start("rescuer", "--concurrency", "3", CHIEF_CLAIM_S="1")
            record = await asyncio.wait_for(engine.wait(execution_id, finished=True), 60)
        assert record.status == "succeeded", record.error
        await assert_each_step_recorded_once(engine, execution_id, ["s0", "s1", "s2"])
        assert "reclaimed" in procs.log("rescuer")


async def test_flushall_mid_run_loses_no_execution(tmp_path, migrated_pg, private_redis, redis_prefix,
                                                   worker_procs_factory):
    keys = [f"s{i}" for i in range(4)]
    spec = workflow([{"key": k, "agent": "backend", "prompt": f"{k} after {{{{{keys[i - 1]}.result}}}}" if i else k,
                      **({"depends_on": [keys[i - 1]]} if i else {})} for i, k in enumerate(keys)])
    procs = worker_procs_factory(migrated_pg, private_redis, redis_prefix)
    procs.start("w1", "--concurrency", "2", CHIEF_OFFLINE_LATENCY_MS="300")
    await procs.wait_live("w1")
    async with orchestrator(tmp_path, migrated_pg, private_redis, redis_prefix, lease_s=2) as engine:
        async with engine.bus.subscribe(None) as events:
            execution_id = await engine.start(spec)
            while (await next_events(events, EventType.STEP_STARTED, 1))[0].task_key != "s1":
                pass
            client = connect(private_redis, max_connections=2)
            try:
                await client.flushall()  # Redis loses every stream, group, pending entry and result
            finally:
                await client.aclose(close_connection_pool=True)
            record = await asyncio.wait_for(engine.wait(execution_id, finished=True), 60)
        assert record.status == "succeeded", record.error
        await assert_each_attempt_recorded_once(engine, execution_id, keys)


async def test_a_provider_failing_every_call_opens_the_breaker_and_the_step_is_dead_lettered(
        tmp_path, migrated_pg, shared_redis_url, redis_prefix, worker_procs_factory):
    spec = workflow([{"key": "ask", "agent": "backend", "prompt": "hello",
                      "retry": {"attempts": 3, "backoff_s": 0.05, "max_backoff_s": 0.1}}])
    procs = worker_procs_factory(migrated_pg, shared_redis_url, redis_prefix)
    procs.start("w1", CHIEF_OFFLINE_FAILURE_RATE="1", CHIEF_BREAKER_MIN_CALLS="2", CHIEF_BREAKER_OPEN_S="60")
    await procs.wait_live("w1")
    async with orchestrator(tmp_path, migrated_pg, shared_redis_url, redis_prefix) as engine:
        record = await asyncio.wait_for(engine.run(spec), 60)
        assert record.status == "failed"
        assert "circuit breaker is open" in (record.error or "")
        retries = [e for e in await engine.store.list_events(record.id) if e.type == EventType.STEP_RETRYING]
        assert len(retries) == 2
        keys = Keys(redis_prefix)
        client = connect(shared_redis_url, max_connections=2)
        try:
            assert await client.hget(keys.breaker("offline"), "state") == b"open"
            dead = await client.xrange(keys.dead_letters)
        finally:
            await client.aclose(close_connection_pool=True)
        assert len(dead) == 1
        fields = dead[0][1]
        assert fields[b"task_key"] == b"ask" and b"circuit breaker is open" in fields[b"reason"]
        assert [d.task_key for d in await engine.store.list_dead_letters()] == ["ask"]


async def test_two_workers_share_the_load(tmp_path, migrated_pg, shared_redis_url, redis_prefix,
                                          worker_procs_factory):
    spec = workflow([{"key": f"s{i}", "agent": "backend", "prompt": f"part {i}"} for i in range(8)])
    procs = worker_procs_factory(migrated_pg, shared_redis_url, redis_prefix)
    for name in ("left", "right"):
        procs.start(name, "--concurrency", "1", CHIEF_OFFLINE_LATENCY_MS="200")
    await procs.wait_live("left", "right")
    async with orchestrator(tmp_path, migrated_pg, shared_redis_url, redis_prefix) as engine:
        record = await asyncio.wait_for(engine.run(spec), 60)
        assert record.status == "succeeded"
        by = Counter(e.data.get("worker") for e in await engine.store.list_events(record.id)
                     if e.type == EventType.STEP_SUCCEEDED)
        assert set(by) == {"left", "right"}, by


async def test_a_worker_scales_its_concurrency_up_with_the_queue_and_back_down_when_idle(
        tmp_path, migrated_pg, shared_redis_url, redis_prefix, worker_procs_factory):
    spec = workflow([{"key": f"s{i}", "agent": "backend", "prompt": f"part {i}"} for i in range(10)])
    procs = worker_procs_factory(migrated_pg, shared_redis_url, redis_prefix)
    procs.start("elastic", "--concurrency", "1..4", "--idle-s", "0.5", CHIEF_OFFLINE_LATENCY_MS="700")
    await procs.wait_live("elastic")
    keys = Keys(redis_prefix)
    client = connect(shared_redis_url, max_connections=2)

    async def limit() -> int:
        return int(await client.hget(keys.worker("elastic"), "limit") or 0)

    try:
        assert await limit() == 1
        async with orchestrator(tmp_path, migrated_pg, shared_redis_url, redis_prefix) as engine:
            execution_id = await engine.start(spec)
            await wait_for(lambda: _is(limit, 4))
            record = await asyncio.wait_for(engine.wait(execution_id, finished=True), 60)
            assert record.status == "succeeded"
        await wait_for(lambda: _is(limit, 1))
    finally:
        await client.aclose(close_connection_pool=True)


async def _is(getter, value) -> bool:
    return await getter() == value


async def test_a_malformed_message_goes_to_the_dead_letters_and_the_worker_goes_on(
        tmp_path, migrated_pg, shared_redis_url, redis_prefix, worker_procs_factory):
    keys = Keys(redis_prefix)
    client = connect(shared_redis_url, max_connections=2)
    procs = worker_procs_factory(migrated_pg, shared_redis_url, redis_prefix)
    try:
        await client.xadd(keys.task_stream("echo", Lane.NORMAL), {"m": "{not json"})
        await client.xadd(keys.task_stream("echo", Lane.HIGH), {"unexpected": "field"})
        procs.start("w1", "--agents", "echo")
        await procs.wait_live("w1")
        async with orchestrator(tmp_path, migrated_pg, shared_redis_url, redis_prefix) as engine:
            record = await asyncio.wait_for(engine.run(workflow([{"key": "after", "agent": "echo", "prompt": "ok"}])), 60)
            assert record.status == "succeeded"
            dead = await client.xrange(keys.dead_letters)
            reasons = sorted(fields[b"reason"].decode() for _, fields in dead)
            assert len(reasons) == 2 and all(r.startswith("malformed message on ") for r in reasons), reasons
            assert len(await engine.store.list_dead_letters()) == 2
            assert await client.xlen(keys.task_stream("echo", Lane.NORMAL)) == 0
    finally:
        await client.aclose(close_connection_pool=True)


async def test_a_step_longer_than_its_lease_is_not_sent_again_while_a_live_worker_runs_it(
        tmp_path, migrated_pg, shared_redis_url, redis_prefix, worker_procs_factory):
    procs = worker_procs_factory(migrated_pg, shared_redis_url, redis_prefix)
    procs.start("w1", CHIEF_OFFLINE_LATENCY_MS="2000")
    await procs.wait_live("w1")
    async with orchestrator(tmp_path, migrated_pg, shared_redis_url, redis_prefix, lease_s=0.3) as engine:
        record = await asyncio.wait_for(engine.run(workflow([{"key": "long", "agent": "backend", "prompt": "x"}])), 60)
        assert record.status == "succeeded"
        queued = [e for e in await engine.store.list_events(record.id) if e.type == EventType.STEP_QUEUED]
        assert len(queued) == 1
        assert {r.attempt for r in await engine.store.list_steps(record.id)} == {1}


async def test_a_redis_restart_mid_run_loses_no_execution(tmp_path, migrated_pg, private_redis_server, redis_prefix,
                                                          worker_procs_factory):
    keys = [f"s{i}" for i in range(4)]
    spec = workflow([{"key": k, "agent": "backend", "prompt": k, **({"depends_on": [keys[i - 1]]} if i else {})}
                     for i, k in enumerate(keys)])
    url = private_redis_server.url
    procs = worker_procs_factory(migrated_pg, url, redis_prefix)
    procs.start("w1", "--concurrency", "2", CHIEF_OFFLINE_LATENCY_MS="300")
    await procs.wait_live("w1")
    async with orchestrator(tmp_path, migrated_pg, url, redis_prefix, lease_s=2) as engine:
        async with engine.bus.subscribe(None) as events:
            execution_id = await engine.start(spec)
            while (await next_events(events, EventType.STEP_STARTED, 1))[0].task_key != "s1":
                pass
            await asyncio.to_thread(private_redis_server.restart)  # everything in Redis is gone
        record = await asyncio.wait_for(engine.wait(execution_id, finished=True), 60)
        assert record.status == "succeeded", record.error
        await assert_each_attempt_recorded_once(engine, execution_id, keys)
