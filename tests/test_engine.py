"""The embedded engine end to end: parallel joins, when, for_each, sub-workflows, approval,
pause/resume without re-running, cancel, restore from a checkpoint, failures and the ledger."""

import asyncio
from pathlib import Path

import pytest

from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.errors import InputError, InvalidTransition
from chief.core.messages import EventType
from chief.core.plugins import register_temporary
from chief.core.store import StepRecord
from chief.core.workflows import parse_workflow
from tests.fakes import CHAIN, FlakyAgent, GateAgent, ScriptedProvider, TestPlugin


@pytest.fixture
def gate():
    return GateAgent()


@pytest.fixture
async def engine(tmp_path, gate):
    provider = ScriptedProvider()
    with register_temporary(TestPlugin(agents=[gate, FlakyAgent()], providers=[provider])) as registry:
        engine = await Engine.open(Settings(home=tmp_path / "home"), registry=registry)
        engine.test_provider = provider
        try:
            yield engine
        finally:
            await engine.close()


async def events_of(engine, execution_id):
    return [(e.type, e.task_key) for e in await engine.store.list_events(execution_id)]


async def test_engine_runs_the_code_review_workflow_with_a_parallel_join(engine):
    spec = parse_workflow(Path("workflows/code-review.yaml").read_text(), source="workflows/code-review.yaml")
    record = await engine.run(spec, {"git_diff": Path("examples/changes.diff").read_text()})
    assert record.status == "succeeded", record.error
    assert "offline" in record.output.lower()
    steps = {s.task_key: s for s in await engine.store.list_steps(record.id) if s.status == "succeeded"}
    assert set(steps) == {"parse-changes", "security-audit", "quality-check", "aggregate"}
    assert steps["quality-check"].agent == "quality"  # the capability was routed to an agent that has it
    # the join: aggregate was queued only after both middle steps succeeded
    order = [(t, k) for t, k in await events_of(engine, record.id)]
    done = {k: i for i, (t, k) in enumerate(order) if t == EventType.STEP_SUCCEEDED}
    queued = {k: i for i, (t, k) in enumerate(order) if t == EventType.STEP_QUEUED}
    assert queued["aggregate"] > max(done["security-audit"], done["quality-check"])
    assert min(queued["security-audit"], queued["quality-check"]) > done["parse-changes"]


async def test_engine_runs_independent_steps_at_the_same_time(engine, gate):
    spec = parse_workflow("""
name: fan
steps:
  - {key: root, agent: gate, prompt: r}
  - {key: left, agent: gate, prompt: l, depends_on: [root]}
  - {key: right, agent: gate, prompt: r, depends_on: [root]}
  - {key: join, agent: gate, prompt: "{{left}} + {{right}}", depends_on: [left, right]}
""")
    gate.held.update({"left", "right"})
    execution_id = await engine.start(spec)
    # both middle steps are running at once: neither can finish until the test opens the gates
    await asyncio.wait_for(gate.started_event("left").wait(), 10)
    await asyncio.wait_for(gate.started_event("right").wait(), 10)
    gate.gate("left").set()
    gate.gate("right").set()
    record = await engine.wait(execution_id)
    assert record.status == "succeeded"
    assert "left done" in record.output and "right done" in record.output


async def test_engine_pause_lets_running_steps_finish_and_resume_never_reruns_them(engine, gate):
    gate.held.add("a")
    execution_id = await engine.start(parse_workflow(CHAIN))
    await asyncio.wait_for(gate.started_event("a").wait(), 10)
    assert await engine.pause(execution_id) == "pausing"
    gate.gate("a").set()  # the running step finishes...
    record = await engine.wait(execution_id)
    assert record.status == "paused"
    assert gate.runs == {"a": 1}  # ...and no new step started
    assert await engine.resume(execution_id) == "resumed"
    record = await engine.wait(execution_id)
    assert record.status == "succeeded"
    assert gate.runs == {"a": 1, "b": 1, "c": 1}
    types = [t for t, _ in await events_of(engine, execution_id)]
    assert EventType.EXECUTION_PAUSED in types and EventType.EXECUTION_RESUMED in types


async def test_engine_pause_from_another_process_through_the_store(engine, gate):
    gate.held.add("a")
    execution_id = await engine.start(parse_workflow(CHAIN))
    await asyncio.wait_for(gate.started_event("a").wait(), 10)
    await engine.store.set_control(execution_id, "pause")  # what `chief workflow pause` does elsewhere
    async with engine.bus.subscribe(execution_id) as events:
        while (await asyncio.wait_for(events.get(), 10)).type != EventType.EXECUTION_PAUSING:
            pass
    gate.gate("a").set()
    assert (await engine.wait(execution_id)).status == "paused"


async def test_engine_cancel_stops_the_execution_and_runs_nothing_more(engine, gate):
    gate.held.add("a")
    execution_id = await engine.start(parse_workflow(CHAIN))
    await asyncio.wait_for(gate.started_event("a").wait(), 10)
    assert await engine.cancel(execution_id) == "cancelled"
    record = await engine.get(execution_id)
    assert record.status == "cancelled" and record.finished_at is not None
    gate.gate("a").set()
    assert "b" not in gate.runs
    with pytest.raises(InvalidTransition):
        await engine.resume(execution_id)


async def test_engine_restore_from_a_checkpoint_reruns_only_what_follows_it(engine, gate):
    spec = parse_workflow(CHAIN)
    original = await engine.run(spec)
    assert original.status == "succeeded"
    checkpoints = await engine.checkpoints(original.id)
    before_c = next(c for c in checkpoints if c.next == ["c"])
    forked_id = await engine.restore(original.id, before_c.id)
    forked = await engine.wait(forked_id)
    assert forked.status == "succeeded" and forked.parent_id == original.id
    assert forked.restored_from_checkpoint == before_c.id
    assert gate.runs == {"a": 1, "b": 1, "c": 2}
    assert [s.task_key for s in await engine.store.list_steps(forked_id) if s.status == "succeeded"] == ["c"]
    assert (await engine.get(original.id)).status == "succeeded"  # the original is untouched


async def test_engine_when_false_skips_the_step_and_dependents_still_run(engine):
    spec = parse_workflow("""
name: cond
inputs: {mode: {default: quick}}
steps:
  - {key: deep, agent: gate, prompt: deep, when: "{{inputs.mode}} == 'full'"}
  - {key: report, agent: gate, prompt: "report [{{deep}}]", depends_on: [deep]}
""")
    record = await engine.run(spec)
    assert record.status == "succeeded"
    assert record.output.endswith("report []")
    assert (EventType.STEP_SKIPPED, "deep") in await events_of(engine, record.id)


async def test_engine_for_each_fans_out_and_gathers_results_in_order(engine, gate):
    spec = parse_workflow("""
name: each
inputs: {files: {type: list}}
steps:
  - {key: summarise, agent: gate, prompt: "file {{index}}: {{item.name}}", for_each: "{{inputs.files}}"}
  - {key: digest, agent: gate, prompt: "{{summarise}}", depends_on: [summarise]}
""")
    files = [{"name": f"f{i}.txt"} for i in range(5)]
    record = await engine.run(spec, {"files": files})
    assert record.status == "succeeded", record.error
    steps = await engine.store.list_steps(record.id)
    gathered = next(s for s in steps if s.task_key == "summarise" and s.status == "succeeded")
    assert gathered.result == [f"summarise[{i}] done: file {i}: f{i}.txt" for i in range(5)]
    assert all(gate.runs[f"summarise[{i}]"] == 1 for i in range(5))


async def test_engine_for_each_over_an_empty_list_goes_straight_on(engine):
    spec = parse_workflow("""
name: each-empty
inputs: {files: {type: list}}
steps:
  - {key: per-file, agent: gate, prompt: "{{item}}", for_each: "{{inputs.files}}"}
  - {key: after, agent: gate, prompt: "n=[{{per-file}}]", depends_on: [per-file]}
""")
    record = await engine.run(spec, {"files": []})
    assert record.status == "succeeded" and record.output.endswith("n=[]")


async def test_engine_runs_a_sub_workflow_as_a_step(engine, tmp_path):
    (tmp_path / "child.yaml").write_text("""
name: child
inputs: {topic: {required: true}}
steps:
  - {key: inner, agent: gate, prompt: "inner on {{inputs.topic}}"}
output: "child says {{inner}}"
""")
    (tmp_path / "parent.yaml").write_text("""
name: parent
steps:
  - {key: first, agent: gate, prompt: start}
  - key: sub
    workflow: child.yaml
    inputs: {topic: "{{first}}"}
    depends_on: [first]
  - {key: last, agent: gate, prompt: "got {{sub}}", depends_on: [sub]}
""")
    from chief.core.workflows import load_workflow

    record = await engine.run(load_workflow(tmp_path / "parent.yaml"))
    assert record.status == "succeeded", record.error
    assert "child says sub/inner done: inner on first done: start" in record.output
    keys = {s.task_key for s in await engine.store.list_steps(record.id)}
    assert "sub/inner" in keys


APPROVAL = """
name: approve-me
steps:
  - {key: draft, agent: gate, prompt: draft}
  - {key: publish, agent: gate, prompt: "publish {{draft}}", depends_on: [draft], approval: true}
  - {key: after, agent: gate, prompt: "after [{{publish}}]", depends_on: [publish]}
"""


async def test_engine_approval_waits_for_a_person_then_continues(engine, gate):
    execution_id = await engine.start(parse_workflow(APPROVAL))
    record = await engine.wait(execution_id)
    assert record.status == "waiting"
    assert "publish" not in gate.runs
    assert (EventType.STEP_WAITING_APPROVAL, "publish") in await events_of(engine, execution_id)
    with pytest.raises(InvalidTransition, match="not waiting"):
        await engine.approve(execution_id, "draft")
    assert await engine.approve(execution_id, "publish", by="ann") == "approved"
    record = await engine.wait(execution_id)
    assert record.status == "succeeded"
    assert gate.runs["publish"] == 1 and gate.runs["draft"] == 1


async def test_engine_rejected_step_is_not_run_and_dependents_see_nothing(engine, gate):
    execution_id = await engine.start(parse_workflow(APPROVAL))
    await engine.wait(execution_id)
    assert await engine.approve(execution_id, "publish", approved=False, by="ann") == "rejected"
    record = await engine.wait(execution_id)
    assert record.status == "succeeded"
    assert "publish" not in gate.runs
    assert record.output.endswith("after []")


async def test_engine_failed_step_fails_the_execution_with_its_error_and_a_dead_letter(engine):
    spec = parse_workflow("""
name: fails
steps:
  - {key: bad, agent: flaky, prompt: x, retry: {attempts: 2, backoff_s: 0.01}}
  - {key: never, agent: gate, prompt: y, depends_on: [bad]}
""")
    engine.registry.agent("flaky").failures = 99
    record = await engine.run(spec)
    assert record.status == "failed"
    assert "step 'bad' failed" in record.error and "flaky failure 2" in record.error
    dead = await engine.store.list_dead_letters()
    assert [(d.task_key, d.attempts) for d in dead] == [("bad", 2)]


async def test_engine_optional_step_failure_does_not_fail_the_execution(engine):
    spec = parse_workflow("""
name: optional
steps:
  - {key: maybe, agent: flaky, prompt: x, optional: true, retry: {attempts: 1}}
  - {key: then, agent: gate, prompt: "then [{{maybe}}]", depends_on: [maybe]}
""")
    engine.registry.agent("flaky").failures = 99
    record = await engine.run(spec)
    assert record.status == "succeeded" and record.output.endswith("then []")


async def test_engine_step_recorded_in_the_ledger_is_never_dispatched_again(engine, gate):
    spec = parse_workflow(CHAIN)
    execution_id = "ledger-test-0001"
    # a result recorded while the orchestrator was down (e.g. by a worker before a crash)
    await engine.store.create_execution(execution_id, await engine.store.save_workflow("chain", "1", spec.model_dump(mode="json")), {})
    await engine.store.record(steps=[StepRecord(execution_id=execution_id, task_key="a", step_key="a", attempt=1,
                                                status="succeeded", result="from the ledger")])
    await engine.store.set_control(execution_id, None)
    await engine._launch(execution_id, spec, {"inputs": {}, "results": {}, "statuses": {}})
    record = await engine.wait(execution_id)
    assert record.status == "succeeded"
    assert "a" not in gate.runs
    assert "from the ledger" in record.output


async def test_engine_refuses_missing_and_unknown_inputs_before_creating_anything(engine):
    spec = parse_workflow(Path("workflows/code-review.yaml").read_text())
    with pytest.raises(InputError, match="missing required input 'git_diff'"):
        await engine.start(spec, {})
    with pytest.raises(InputError, match="did you mean 'git_diff'"):
        await engine.start(spec, {"git_dif": "x"})
    assert await engine.store.list_executions() == []


async def test_engine_unknown_agent_fails_the_step_with_a_clear_error(engine):
    spec = parse_workflow("""
name: unknown
steps:
  - {key: s, agent: nobody, prompt: x}
""")
    record = await engine.run(spec)
    assert record.status == "failed" and "nobody" in record.error


class LossyBus:
    """Wraps LocalBus: the first send of every task is lost (as if Redis dropped it)."""

    def __init__(self, inner):
        self.inner = inner
        self.sent = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    async def send(self, message):
        self.sent.append(message)
        if len(self.sent) > 1:
            await self.inner.send(message)


async def test_engine_resends_a_lost_task_after_its_lease_with_new_attempts_one_lane_up(tmp_path, gate):
    from chief.core.bus import LocalBus

    bus = LossyBus(LocalBus())
    with register_temporary(TestPlugin(agents=[gate])) as registry:
        engine = await Engine.open(Settings(home=tmp_path, lease_s=0.2), registry=registry, bus=bus)
        try:
            spec = parse_workflow("name: one\nsteps:\n  - {key: only, agent: gate, prompt: p, retry: {attempts: 2}}\n")
            record = await engine.run(spec)
        finally:
            await engine.close()
    assert record.status == "succeeded"
    first, second = bus.sent
    assert (first.attempt, second.attempt) == (1, 3)  # attempts 1-2 belonged to the lost delivery
    assert second.priority == first.priority + 1
    assert gate.runs == {"only": 1}
