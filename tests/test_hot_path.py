"""The durable step's hot path: what it may skip (ledger reads in a fresh run, a separate "running" write
for a fast step) and what it must still do (read the ledger on re-runs and re-sends, show a slow step
running while it runs)."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from chief.core.bus import LocalBus
from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.messages import AgentMessage, EventType, StepResult, StepTask, is_stale_status
from chief.core.plugins import register_temporary
from chief.core.store import StepRecord, Store
from chief.core.worker import Worker
from chief.core.workflows import parse_workflow
from tests.fakes import CHAIN, GateAgent, TestPlugin


def count_calls(monkeypatch: pytest.MonkeyPatch, store: Store, name: str, calls: Counter,
                seen: list | None = None) -> None:
    """Count `store.<name>` calls (and keep their keyword arguments in `seen`)."""
    original = getattr(store, name)

    async def counted(*args, **kwargs):
        calls[name] += 1
        if seen is not None:
            seen.append(kwargs)
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, name, counted)


@pytest.fixture
async def engine(tmp_path):
    gate = GateAgent()
    with register_temporary(TestPlugin(agents=[gate])) as registry:
        engine = await Engine.open(Settings(home=tmp_path / "home"), registry=registry)
        engine.gate = gate
        try:
            yield engine
        finally:
            await engine.close()


async def test_hot_path_a_fresh_run_reads_no_ledger_but_a_resumed_one_does(engine, monkeypatch):
    calls: Counter = Counter()
    count_calls(monkeypatch, engine.store, "final_step", calls)
    assert (await engine.run(parse_workflow(CHAIN), {})).status == "succeeded"
    assert calls["final_step"] == 0  # nothing of a new execution can be in the ledger

    engine.gate.held.add("a")
    execution_id = await engine.start(parse_workflow(CHAIN))
    await asyncio.wait_for(engine.gate.started_event("a").wait(), 10)
    assert await engine.pause(execution_id) == "pausing"
    engine.gate.gate("a").set()
    assert (await engine.wait(execution_id)).status == "paused"
    calls.clear()
    await engine.resume(execution_id)
    assert (await engine.wait(execution_id, finished=True)).status == "succeeded"
    assert calls["final_step"] >= 2  # the resumed nodes looked in the ledger first
    assert engine.gate.runs["a"] == 2  # once per execution: the resumed one did not run `a` again


@pytest.fixture
async def worker_parts(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    gate = GateAgent()
    with register_temporary(TestPlugin(agents=[gate])) as registry:
        bus = LocalBus()
        yield bus, Worker(bus, store, registry), store, gate
    await store.close()


def message(agent: str, *, attempt: int = 1, fresh: bool = True, task_key: str = "s") -> AgentMessage:
    task = StepTask(execution_id="e1", task_key=task_key, step_key=task_key, agent=agent, prompt="p", fresh=fresh)
    return AgentMessage(sender="engine", recipient=agent, type="task", payload=task.model_dump(mode="json"),
                        correlation_id=f"e1:{task_key}:{attempt}", attempt=attempt)


async def handle(bus: LocalBus, worker: Worker, msg: AgentMessage) -> StepResult:
    reply = bus.expect_reply(msg.correlation_id)
    await bus.send(msg)
    await worker.handle(await bus.receive(timeout=1))
    return StepResult.model_validate((await asyncio.wait_for(reply, 5)).payload)


async def test_hot_path_the_worker_reads_the_ledger_unless_it_is_a_fresh_first_delivery(worker_parts, monkeypatch):
    bus, worker, store, gate = worker_parts
    calls: Counter = Counter()
    count_calls(monkeypatch, store, "final_step", calls)
    assert (await handle(bus, worker, message("echo"))).status == "succeeded"
    assert calls["final_step"] == 0
    await store.record(steps=[StepRecord(execution_id="e1", task_key="r", step_key="r", attempt=1,
                                         status="succeeded", result="recorded before")])
    # a re-send (attempt after the lease) and a task from a recovering orchestrator both look first
    resent = await handle(bus, worker, message("gate", attempt=4, task_key="r"))
    recovered = await handle(bus, worker, message("gate", fresh=False, task_key="r"))
    assert resent.output == recovered.output == "recorded before"
    assert calls["final_step"] == 2 and gate.runs["r"] == 0


async def test_hot_path_a_fast_step_is_recorded_in_one_write_with_its_start(worker_parts, monkeypatch):
    bus, worker, store, _ = worker_parts
    calls: Counter = Counter()
    writes: list = []
    count_calls(monkeypatch, store, "record", calls, writes)
    assert (await handle(bus, worker, message("echo"))).status == "succeeded"
    assert calls["record"] == 1
    assert [e.type for e in writes[0]["events"]] == [EventType.STEP_STARTED, EventType.STEP_SUCCEEDED]
    [row] = await store.list_steps("e1")
    assert row.status == "succeeded" and row.started_at is not None and row.started_at <= row.finished_at
    types = [e.type for e in await store.list_events("e1")]
    assert types == [EventType.STEP_STARTED, EventType.STEP_SUCCEEDED]


async def test_hot_path_a_slow_step_shows_running_while_it_runs(worker_parts, monkeypatch):
    bus, worker, store, gate = worker_parts
    running = asyncio.Event()
    original = store.record

    async def record(**kwargs):
        ids = await original(**kwargs)
        if any(s.status == "running" for s in kwargs.get("steps", ())):
            running.set()
        return ids

    monkeypatch.setattr(store, "record", record)
    gate.held.add("s")
    msg = message("gate")
    reply = bus.expect_reply(msg.correlation_id)
    await bus.send(msg)
    handling = asyncio.create_task(worker.handle(await bus.receive(timeout=1)))
    await asyncio.wait_for(running.wait(), 5)  # written after the deferral, while the agent still runs
    assert not handling.done()
    [row] = await store.list_steps("e1")
    assert row.status == "running"
    gate.gate("s").set()
    await handling
    assert StepResult.model_validate((await asyncio.wait_for(reply, 5)).payload).status == "succeeded"
    types = [e.type for e in await store.list_events("e1")]
    assert types == [EventType.STEP_STARTED, EventType.STEP_SUCCEEDED]  # started written once


def test_hot_path_views_ignore_a_queued_that_arrives_after_a_later_status() -> None:
    assert is_stale_status("queued", "running") and is_stale_status("queued", "succeeded")
    assert not is_stale_status("queued", None) and not is_stale_status("queued", "pending")
    assert not is_stale_status("running", "queued") and not is_stale_status("succeeded", "running")
