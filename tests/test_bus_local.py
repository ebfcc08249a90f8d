"""LocalBus: priority lanes, rank inside a lane, aging, recipients, replies and live events."""

import asyncio

import pytest

from chief.core.bus import LocalBus
from chief.core.messages import AgentMessage, Event, EventType, Lane


def msg(recipient="a", lane=Lane.NORMAL, rank=0, cid="x"):
    return AgentMessage(sender="t", recipient=recipient, type="task", correlation_id=cid, priority=int(lane), rank=rank)


async def drain(bus, recipients=None):
    out = []
    while (d := await bus.receive(recipients, timeout=0)) is not None:
        out.append(d.message.correlation_id)
    return out


async def test_local_bus_takes_higher_lanes_first_then_longer_chains():
    bus = LocalBus()
    await bus.send(msg(lane=Lane.LOW, cid="low"))
    await bus.send(msg(lane=Lane.NORMAL, rank=1, cid="normal-short"))
    await bus.send(msg(lane=Lane.NORMAL, rank=5, cid="normal-long"))
    await bus.send(msg(lane=Lane.CRITICAL, cid="fix"))
    await bus.send(msg(lane=Lane.HIGH, cid="high"))
    assert await drain(bus) == ["fix", "high", "normal-long", "normal-short", "low"]


async def test_local_bus_fifo_inside_the_same_lane_and_rank():
    bus = LocalBus()
    for i in range(5):
        await bus.send(msg(cid=str(i)))
    assert await drain(bus) == ["0", "1", "2", "3", "4"]


async def test_local_bus_aging_lifts_old_low_work_above_new_high_work(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("chief.core.bus.local.time.monotonic", lambda: clock[0])
    bus = LocalBus(aging_period_s=5.0)
    await bus.send(msg(lane=Lane.LOW, cid="old-low"))
    clock[0] += 12.0  # two aging periods: LOW -> HIGH, and older than the new HIGH task
    await bus.send(msg(lane=Lane.HIGH, cid="new-high"))
    assert await drain(bus) == ["old-low", "new-high"]


async def test_local_bus_serves_only_the_recipients_asked_for():
    bus = LocalBus()
    await bus.send(msg(recipient="security", cid="s"))
    await bus.send(msg(recipient="quality", cid="q"))
    assert await bus.depth() == 2
    assert await drain(bus, ["quality"]) == ["q"]
    assert await bus.depth(["security"]) == 1


async def test_local_bus_receive_waits_for_a_send_and_times_out_when_empty():
    bus = LocalBus()
    assert await bus.receive(timeout=0.01) is None
    waiter = asyncio.create_task(bus.receive(timeout=5))
    await asyncio.sleep(0)
    await bus.send(msg(cid="late"))
    delivery = await asyncio.wait_for(waiter, 5)
    assert delivery.message.correlation_id == "late"


async def test_local_bus_reply_resolves_the_waiter_once():
    bus = LocalBus()
    fut = bus.expect_reply("c1")
    reply = AgentMessage(sender="w", recipient="e", type="result", correlation_id="c1")
    await bus.reply(reply)
    await bus.reply(reply)  # a duplicate is ignored
    assert (await asyncio.wait_for(fut, 1)).correlation_id == "c1"


async def test_local_bus_subscribers_get_events_of_their_execution():
    bus = LocalBus()
    async with bus.subscribe("e1") as mine, bus.subscribe(None) as everything:
        await bus.publish([Event(execution_id="e1", type=EventType.STEP_QUEUED),
                           Event(execution_id="e2", type=EventType.STEP_QUEUED)])
        assert mine.qsize() == 1
        assert everything.qsize() == 2


async def test_local_bus_refuses_to_send_after_close():
    bus = LocalBus()
    await bus.close()
    with pytest.raises(RuntimeError):
        await bus.send(msg())
