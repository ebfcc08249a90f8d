"""Auto-scaling of a worker's concurrency (MIN..MAX) from the queue depth, and `--concurrency` parsing."""

from __future__ import annotations

import pytest

from chief.core.bus import LocalBus
from chief.core.errors import ChiefError
from chief.core.messages import AgentMessage
from chief.core.scaling import Autoscaler, parse_concurrency
from chief.core.worker import Worker


def test_parse_concurrency_takes_n_or_a_range():
    assert parse_concurrency("4") == (4, 4)
    assert parse_concurrency("2..10") == (2, 10)
    for bad in ("0", "5..2", "x", "1..y"):
        with pytest.raises(ChiefError, match="--concurrency"):
            parse_concurrency(bad)


async def test_autoscaler_grows_with_the_queue_up_to_max_and_halves_down_to_min_when_idle():
    bus = LocalBus()
    worker = Worker(bus, store=None, registry=None, concurrency=2)
    scaler = Autoscaler(worker, 2, 8, idle_s=0.0)
    for i in range(5):
        await bus.send(AgentMessage(sender="e", recipient="a", type="task", correlation_id=str(i)))
    assert await scaler.tick() == 5  # 0 running + 5 waiting
    for i in range(5, 20):
        await bus.send(AgentMessage(sender="e", recipient="a", type="task", correlation_id=str(i)))
    assert await scaler.tick() == 8  # capped at MAX
    assert worker.limit == 8
    while await bus.receive(timeout=0) is not None:
        pass
    assert await scaler.tick() == 8  # idle starts now
    assert await scaler.tick() == 4  # idle for idle_s: halve
    assert await scaler.tick() == 2  # idle for another idle_s: halve again
    assert await scaler.tick() == 2  # never below MIN


async def test_worker_dead_letters_a_task_delivered_too_often_instead_of_running_it_again(tmp_path):
    from chief.core.bus import Delivery
    from chief.core.messages import StepTask
    from chief.core.store import Store
    from chief.core.worker import MAX_DELIVERIES

    store = await Store.open(f"sqlite:///{tmp_path / 'w.db'}")
    try:
        bus = LocalBus()
        worker = Worker(bus, store, registry=None)
        task = StepTask(execution_id="e1", task_key="s", step_key="s", agent="echo", prompt="p")
        message = AgentMessage(sender="engine", recipient="echo", type="task", payload=task.model_dump(),
                               correlation_id="e1:s:1")
        reply = bus.expect_reply(message.correlation_id)
        await worker.handle(Delivery(message, deliveries=MAX_DELIVERIES + 1))
        assert (await reply).payload["status"] == "failed"
        dead = await store.list_dead_letters()
        assert len(dead) == 1 and "without a result" in dead[0].reason
    finally:
        await store.close()
