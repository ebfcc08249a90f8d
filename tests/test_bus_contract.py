"""One contract for every bus: the same tests run against LocalBus and RedisBus (real Redis)."""

from __future__ import annotations

import asyncio

import pytest

from chief.core.bus import LocalBus, RedisBus
from chief.core.messages import AgentMessage, Event, EventType, Lane

pytest_plugins = ["tests.test_redis_support"]  # Redis fixtures: prefix, private server, workers


@pytest.fixture(params=["local", "redis"])
async def make_bus(request):
    """A factory of buses of one kind; a second bus of the same kind shares the first one's transport
    (for LocalBus: the same object; for RedisBus: the same prefix, another connection, like another process)."""
    made = []
    if request.param == "local":
        local = LocalBus(aging_period_s=0.1)

        async def make(**_):
            return local
        made.append(local)
    else:
        url = request.getfixturevalue("shared_redis_url")
        prefix = request.getfixturevalue("redis_prefix")

        async def make(**kwargs):
            bus = RedisBus(url, prefix=prefix, aging_period_s=0.1, **kwargs)
            await bus.start()
            made.append(bus)
            return bus
    try:
        yield make
    finally:
        for bus in made:
            await bus.close()


def msg(recipient="a", lane=Lane.NORMAL, cid="x", attempt=1, sender="engine-1"):
    return AgentMessage(sender=sender, recipient=recipient, type="task", correlation_id=cid, priority=int(lane),
                        attempt=attempt)


async def drain(bus, recipients=None):
    out = []
    while (d := await bus.receive(recipients, timeout=0)) is not None:
        out.append(d.message.correlation_id)
        await bus.ack(d)
    return out


async def test_bus_takes_higher_lanes_first(make_bus):
    bus = await make_bus()
    for cid, lane in [("low", Lane.LOW), ("normal", Lane.NORMAL), ("critical", Lane.CRITICAL), ("high", Lane.HIGH)]:
        await bus.send(msg(lane=lane, cid=cid))
    assert await drain(bus) == ["critical", "high", "normal", "low"]


async def test_bus_is_fifo_inside_a_lane(make_bus):
    bus = await make_bus()
    for i in range(6):
        await bus.send(msg(cid=str(i)))
    assert await drain(bus) == [str(i) for i in range(6)]


async def test_bus_ages_old_low_work_above_new_critical_work(make_bus):
    bus = await make_bus()
    await bus.send(msg(lane=Lane.LOW, cid="old-low"))
    await asyncio.sleep(0.5)  # five aging periods of 0.1 s: the LOW task is now above any lane
    await bus.send(msg(lane=Lane.CRITICAL, cid="new-critical"))
    assert await drain(bus) == ["old-low", "new-critical"]


async def test_bus_serves_only_the_recipients_asked_for_and_counts_depth(make_bus):
    bus = await make_bus()
    await bus.send(msg(recipient="security", cid="s"))
    await bus.send(msg(recipient="quality", cid="q"))
    assert await bus.depth(["security", "quality"]) == 2
    assert await drain(bus, ["quality"]) == ["q"]
    assert await bus.depth(["security"]) == 1
    assert await bus.depth(["quality"]) == 0


async def test_bus_receive_waits_for_a_send_and_times_out_when_empty(make_bus):
    bus = await make_bus()
    assert await bus.receive(["a"], timeout=0.05) is None
    waiting = asyncio.create_task(bus.receive(["a"], timeout=5))
    await asyncio.sleep(0.05)  # let the receiver block first
    other = await make_bus()
    await other.send(msg(cid="late"))
    delivery = await asyncio.wait_for(waiting, 6)
    assert delivery is not None and delivery.message.correlation_id == "late"
    await bus.ack(delivery)


async def test_bus_delivers_each_task_to_one_receiver(make_bus):
    first, second = await make_bus(), await make_bus()
    for i in range(10):
        await first.send(msg(cid=str(i)))
    got = await asyncio.gather(drain(first, ["a"]), drain(second, ["a"]))
    assert sorted(got[0] + got[1], key=int) == [str(i) for i in range(10)]


async def test_bus_reply_reaches_the_waiter_once(make_bus):
    orchestrator, worker = await make_bus(), await make_bus()
    waiter = orchestrator.expect_reply("e:s:1")
    await orchestrator.send(msg(cid="e:s:1"))
    delivery = await worker.receive(["a"], timeout=5)
    answer = AgentMessage(sender="a", recipient="engine-1", type="result", correlation_id="e:s:1",
                          payload={"status": "succeeded"})
    await worker.reply(answer)
    await worker.reply(answer)  # a duplicate result changes nothing
    got = await asyncio.wait_for(waiter, 5)
    assert got.payload == {"status": "succeeded"}
    await worker.ack(delivery)


async def test_bus_subscribers_get_the_events_of_their_execution(make_bus):
    bus, other = await make_bus(), await make_bus()
    async with bus.subscribe("e1") as mine, bus.subscribe(None) as everything:
        await other.publish([Event(execution_id="e2", type=EventType.STEP_QUEUED),
                             Event(execution_id="e1", type=EventType.STEP_STARTED)])
        got = await asyncio.wait_for(mine.get(), 5)
        assert (got.execution_id, got.type) == ("e1", EventType.STEP_STARTED)
        seen = {(await asyncio.wait_for(everything.get(), 5)).execution_id for _ in range(2)}
        assert seen == {"e1", "e2"}


async def test_bus_refuses_to_send_after_close(make_bus):
    bus = await make_bus()
    await bus.close()
    with pytest.raises(RuntimeError):
        await bus.send(msg())
