"""Canary routes through the engine, on SQLite and PostgreSQL: a healthy candidate is promoted through every
stage; a failing candidate (a workflow version, or a model whose provider fails) is rolled back by itself and
new runs go back to the stable arm."""

from __future__ import annotations

import logging

import pytest

from chief.core.canary import Thresholds
from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.errors import ProviderError
from chief.core.personas import PersonaAgent
from chief.core.plugins import register_temporary
from chief.core.store import migrate
from chief.core.workflows import parse_workflow
from tests.fakes import FlakyAgent, ScriptedProvider, TestPlugin

STABLE = """
name: greet
version: 1
inputs:
  who: {default: you}
steps:
  - {key: hello, agent: echo, prompt: "v1 hello {{inputs.who}}"}
"""
HEALTHY = STABLE.replace("version: 1", "version: 2").replace("v1 hello", "v2 hello")
FAILING = HEALTHY.replace("agent: echo", "agent: broken")

TALK = """
name: talk
steps:
  - {key: ask, agent: talker, prompt: "say hi", retry: {attempts: 1}}
  - {key: other, agent: listener, prompt: "say bye", retry: {attempts: 1}, depends_on: [ask]}
"""


class DownProvider:
    """A provider whose every call fails (not retryable)."""

    name = "badprov"
    default_model = "bad-1"

    async def complete(self, messages, *, model=None, **options):
        raise ProviderError("badprov is down", retryable=False)


def persona(name: str) -> PersonaAgent:
    return PersonaAgent(name=name, description=name, capabilities=(name,), system_prompt="be brief")


@pytest.fixture
async def engine(tmp_path, db_url):
    migrate.upgrade(db_url)
    plugin = TestPlugin(agents=[FlakyAgent(name="broken", capabilities=("broken",), failures=10**6, retryable=False),
                                persona("talker"), persona("listener")],
                        providers=[ScriptedProvider("goodprov"), ScriptedProvider("newprov"), DownProvider()])
    with register_temporary(plugin) as registry:
        engine = await Engine.open(Settings(home=tmp_path / "home", database_url=db_url, provider="goodprov"),
                                   registry=registry)
        try:
            yield engine
        finally:
            await engine.close()


async def start_canary(engine, kind, subject, stable, candidate, *, stages=(10, 25, 50, 100), min_runs=2):
    if kind == "workflow":
        stable = (await engine.store.save_workflow("greet", "1", parse_workflow(stable).model_dump(mode="json"))).id
        spec = parse_workflow(candidate)
        candidate = (await engine.store.save_workflow("greet", str(spec.version), spec.model_dump(mode="json"))).id
    created = await engine.canaries.store.create(kind, subject, stable, candidate, list(stages),
                                                 Thresholds(min_runs=min_runs))
    engine.canaries.invalidate()  # this test made it outside the routes' cache
    return created


async def run_until(engine, spec, canary_id, statuses, limit=400):
    """Run `spec` until the canary reaches one of `statuses`; the shares seen (deduplicated) and the runs."""
    shares, runs = [], []
    for _ in range(limit):
        record = await engine.run(spec)
        arm = await engine.canaries.store.arm_of(record.id)
        runs.append((record, arm[1] if arm else None))
        current = await engine.canaries.store.get(canary_id)
        if not shares or shares[-1] != current.share:
            shares.append(current.share)
        if current.status in statuses:
            return current, shares, runs
    raise AssertionError(f"canary still {current.status} at {current.share}% after {limit} runs")


async def test_canary_healthy_workflow_version_is_promoted_through_every_stage(engine):
    c = await start_canary(engine, "workflow", "greet", STABLE, HEALTHY)
    final, shares, runs = await run_until(engine, parse_workflow(STABLE), c.id, {"promoted", "rolled_back"})
    assert final.status == "promoted", final.reason
    assert shares == [10, 25, 50, 100]
    assert "held at 100%" in final.reason
    for record, arm in runs:
        assert record.status == "succeeded"
        assert record.output.startswith("v2 hello" if arm == "candidate" else "v1 hello")
    # promoted: every new run takes the candidate, and is no longer counted
    after = [await engine.run(parse_workflow(STABLE)) for _ in range(5)]
    assert all(r.output.startswith("v2 hello") for r in after)
    assert [await engine.canaries.store.arm_of(r.id) for r in after] == [None] * len(after)


async def test_canary_failing_workflow_version_is_rolled_back(engine, caplog):
    caplog.set_level(logging.WARNING, logger="chief.core.canary")
    c = await start_canary(engine, "workflow", "greet", STABLE, FAILING)
    final, shares, runs = await run_until(engine, parse_workflow(STABLE), c.id, {"promoted", "rolled_back"})
    assert final.status == "rolled_back" and final.share == 0
    assert "candidate failed 1 of 1 runs at 10%" in final.reason
    assert any("rolled back" in r.getMessage() and c.id in r.getMessage() for r in caplog.records)
    failed = [record for record, arm in runs if arm == "candidate"]
    assert failed and all(r.status == "failed" and "broken" in (r.error or "") for r in failed)
    # rolled back: every new run is stable again and not counted
    after = [await engine.run(parse_workflow(STABLE)) for _ in range(15)]
    assert all(r.status == "succeeded" and r.output.startswith("v1 hello") for r in after)
    assert [await engine.canaries.store.arm_of(r.id) for r in after] == [None] * len(after)


async def test_canary_model_served_by_a_failing_provider_is_rolled_back(engine):
    c = await start_canary(engine, "model", "*", "goodprov:scripted-1", "badprov:bad-1", stages=(25, 50, 100))
    final, _, runs = await run_until(engine, parse_workflow(TALK), c.id, {"promoted", "rolled_back"})
    assert final.status == "rolled_back", final.reason
    for record, arm in runs:
        steps = [s for s in await engine.store.list_steps(record.id) if s.status in ("succeeded", "failed")]
        assert record.settings["canary"]["arm"] == arm
        if arm == "candidate":
            assert record.status == "failed" and "badprov is down" in record.error
        else:
            assert record.status == "succeeded"
            assert {(s.provider, s.model) for s in steps} == {("goodprov", "scripted-1")}
    after = await engine.run(parse_workflow(TALK))
    assert after.status == "succeeded" and after.settings is None


async def test_canary_model_on_one_agent_leaves_the_other_agents_alone(engine):
    c = await start_canary(engine, "model", "talker", "goodprov:scripted-1", "newprov:new-1", stages=(100,), min_runs=3)
    final, shares, runs = await run_until(engine, parse_workflow(TALK), c.id, {"promoted", "rolled_back"})
    assert (final.status, shares, len(runs)) == ("promoted", [100], 3)
    for record, _ in runs:
        used = {s.step_key: (s.provider, s.model) for s in await engine.store.list_steps(record.id)
                if s.status == "succeeded"}
        assert used == {"ask": ("newprov", "new-1"), "other": ("goodprov", "scripted-1")}


async def test_canary_routes_cache_the_active_canaries_between_refreshes(engine):
    assert await engine.canaries.active() == []
    created = await engine.canaries.store.create("workflow", "greet", "x", "y", [100], Thresholds())
    assert await engine.canaries.active() == []  # cached: starting an execution costs no query
    engine.canaries.refresh_s = 0.0  # what REFRESH_S seconds later does
    assert [c.id for c in await engine.canaries.active()] == [created.id]
