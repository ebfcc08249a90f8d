"""Smart assignment: a capability step goes to the healthier, faster, less busy agent, away from an open
circuit breaker; an explicit `agent:` always wins. Through the engine (real dispatch, real ledger) and on
the `Assigner` itself."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass

import pytest

from chief.core.assignment import Assigner
from chief.core.breaker import BreakerPolicy, CircuitBreaker
from chief.core.bus.keys import Keys
from chief.core.bus.redis import connect
from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.plugins import register_temporary
from chief.core.store import migrate
from chief.core.workflows import parse_workflow
from tests.fakes import FlakyAgent, TestPlugin

pytest_plugins = ["tests.test_redis_support"]  # Redis fixtures: shared server, key prefix

ONE_STEP = """
name: one
steps:
  - {key: work, capability: work, prompt: "do it", retry: {attempts: 1}}
"""

FAN_OUT = """
name: fan
steps:
  - {key: each, capability: work, for_each: "{{inputs.items}}", prompt: "item {{item}}", retry: {attempts: 1}}
inputs:
  items: {type: list, default: [1, 2, 3, 4, 5, 6]}
"""


@dataclass
class Helper:
    """A healthy agent of capability `work`, optionally held until the test lets it go."""

    name: str
    description: str = "does the work"
    capabilities: tuple[str, ...] = ("work",)
    provider: str | None = None
    model: str | None = None
    hold: asyncio.Event | None = None
    started: list[str] | None = None  # task keys started, shared by the helpers of a test
    all_started: tuple[int, asyncio.Event] | None = None  # set the event once this many have started

    async def run(self, task, ctx):
        if self.started is not None:
            self.started.append(task.task_key)
            if self.all_started and len(self.started) >= self.all_started[0]:
                self.all_started[1].set()
        if self.hold is not None:
            await self.hold.wait()
        return f"{self.name}: {task.prompt}"


def broken(name: str = "broken", provider: str | None = None) -> FlakyAgent:
    """An agent of capability `work` that always fails (no retry)."""
    return FlakyAgent(name=name, capabilities=("work",), failures=10**6, retryable=False, provider=provider)


@pytest.fixture
async def open_engine(tmp_path, db_url):
    """`await open_engine(*agents)`: an engine on `db_url` with `agents` registered (no agents: the same
    ones again, e.g. for a second engine on the same database). The test closes its engines."""
    migrate.upgrade(db_url)
    with contextlib.ExitStack() as stack:
        registry = None

        async def make(*agents):
            nonlocal registry
            if agents:
                registry = stack.enter_context(register_temporary(TestPlugin(agents=list(agents))))
            return await Engine.open(Settings(home=tmp_path / "home", database_url=db_url), registry=registry)

        yield make


async def run_agents(engine, source: str, times: int = 1) -> list[str]:
    """Run `source` `times` times; the agents its steps ran on, in order."""
    spec = parse_workflow(source)
    agents = []
    for _ in range(times):
        record = await engine.run(spec)
        agents += [s.agent for s in sorted(await engine.store.list_steps(record.id), key=lambda s: s.task_key)
                   if s.status in ("succeeded", "failed")]
    return agents


async def test_assignment_capability_routing_prefers_the_healthy_agent(open_engine):
    engine = await open_engine(broken(), Helper("healthy"))
    try:
        agents = await run_agents(engine, ONE_STEP, times=8)
    finally:
        await engine.close()
    # the first run had nothing to go on (the first registered agent, which failed); every later one
    # went to the healthy agent
    assert agents[0] == "broken"
    assert agents[1:] == ["healthy"] * 7
    assert engine.assigner.metrics["broken"].error_rate == 1.0


async def test_assignment_is_seeded_from_the_ledger_when_an_engine_opens(open_engine):
    engine = await open_engine(broken(), Helper("healthy"))
    try:
        await run_agents(engine, ONE_STEP, times=2)  # broken fails once, healthy succeeds once
    finally:
        await engine.close()
    again = await open_engine()  # a new process: metrics from the ledger
    try:
        assert list(again.assigner.metrics["broken"].outcomes) == [False]
        assert list(again.assigner.metrics["healthy"].outcomes) == [True]
        assert await run_agents(again, ONE_STEP, times=3) == ["healthy"] * 3  # no failing first pick now
    finally:
        await again.close()


async def test_assignment_spreads_load_across_equal_agents(open_engine):
    started, hold, six = [], asyncio.Event(), (6, asyncio.Event())
    engine = await open_engine(Helper("first", hold=hold, started=started, all_started=six),
                               Helper("second", hold=hold, started=started, all_started=six))
    try:
        spec = parse_workflow(FAN_OUT)
        execution_id = await engine.start(spec)
        # six items dispatched at once: the in-flight counts send every other one to the other agent
        await asyncio.wait_for(six[1].wait(), 10)  # all six items are running (held)
        assert {name: m.in_flight for name, m in engine.assigner.metrics.items()} == {"first": 3, "second": 3}
        hold.set()
        record = await engine.wait(execution_id)
        assert record.status == "succeeded", record.error
        ran = Counter(s.agent for s in await engine.store.list_steps(record.id) if s.status == "succeeded" and "[" in s.task_key)
        assert ran == {"first": 3, "second": 3}
        # one at a time, equal agents take turns
        assert await run_agents(engine, ONE_STEP, times=4) in (["first", "second"] * 2, ["second", "first"] * 2)
    finally:
        await engine.close()


async def test_assignment_avoids_an_agent_whose_provider_breaker_is_open(open_engine):
    engine = await open_engine(Helper("on-a", provider="prov-a"), Helper("on-b", provider="prov-b"))
    try:
        breaker = engine.assigner.breaker
        assert breaker is engine.workers[0].breaker  # the workers' breaker, not a copy
        for _ in range(4):
            await breaker.record("prov-a", False)
        assert await breaker.state("prov-a") == "open"
        assert await run_agents(engine, ONE_STEP, times=4) == ["on-b"] * 4
    finally:
        await engine.close()


async def test_assignment_agent_named_by_the_step_is_never_overridden(open_engine):
    engine = await open_engine(broken(), Helper("healthy"))
    try:
        await run_agents(engine, ONE_STEP, times=3)  # the assigner now knows `broken` fails
        named = ONE_STEP.replace("capability: work", "agent: broken")
        assert await run_agents(engine, named, times=2) == ["broken", "broken"]
    finally:
        await engine.close()


# -- the Assigner on its own ---------------------------------------------------------------------


@pytest.fixture
def registry():
    agents = [Helper("slow"), Helper("fast"), Helper("other", capabilities=("else",))]
    with register_temporary(TestPlugin(agents=agents)) as registry:
        yield registry


async def test_assignment_prefers_the_faster_agent(registry):
    assigner = Assigner(registry)
    assigner.seed([("slow", True, 400.0)] * 10 + [("fast", True, 40.0)] * 10)
    picks = [(await assigner.choose(None, "work")).name for _ in range(5)]
    assert picks == ["fast"] * 5
    ranked = await assigner.rank("work")
    assert [c.name for c in ranked] == ["fast", "slow"] and ranked[1].score == pytest.approx(1.0)
    # a latency difference within the noise floor is no difference: turns again
    assigner = Assigner(registry)
    assigner.seed([("slow", True, 41.0)] * 10 + [("fast", True, 40.0)] * 10)
    assert {(await assigner.choose(None, "work")).name for _ in range(4)} == {"slow", "fast"}


async def test_assignment_errors_outweigh_latency_and_load(registry):
    assigner = Assigner(registry)
    assigner.seed([("fast", False, None)] * 5 + [("slow", True, 900.0)] * 5)
    for _ in range(3):
        assigner.begin("slow")  # busy, and ten times slower: still better than failing
    assert (await assigner.choose(None, "work")).name == "slow"


async def test_assignment_falls_back_when_every_agent_is_unhealthy(registry):
    breaker = CircuitBreaker(BreakerPolicy(min_calls=1))
    for provider in ("p1", "p2"):
        await breaker.record(provider, False)
    registry.agents["slow"].provider, registry.agents["fast"].provider = "p1", "p2"
    assigner = Assigner(registry, breaker=breaker)
    assigner.seed([("slow", False, None)] * 2 + [("fast", False, None)] * 6)
    ranked = await assigner.rank("work")
    assert all(c.breaker_open for c in ranked)  # both circuits open: both stay candidates
    assert (await assigner.choose(None, "work")).name == "slow"  # the less failing one


async def test_assignment_reads_a_shared_breaker_from_redis_off_the_hot_path(registry, shared_redis_url, redis_prefix):
    client = connect(shared_redis_url, max_connections=2)
    try:
        breaker = CircuitBreaker(BreakerPolicy(min_calls=1), redis=client, keys=Keys(redis_prefix))
        await breaker.record("p1", False)  # another worker opened p1's circuit
        registry.agents["slow"].provider, registry.agents["fast"].provider = "p2", "p1"
        assigner = Assigner(registry, breaker=breaker)
        assigner.seed([("fast", True, 10.0)] * 5 + [("slow", True, 300.0)] * 5)
        # the first choice does not wait on Redis: it starts a background read and goes by what it knows
        assert (await assigner.choose(None, "work")).name == "fast"
        await asyncio.wait_for(assigner._refresh, 5)
        assert (await assigner.choose(None, "work")).name == "slow"
        await assigner.close()
    finally:
        await client.aclose(close_connection_pool=True)
