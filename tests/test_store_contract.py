"""The store's contract, run against SQLite and PostgreSQL (`store` is parametrised over both)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from chief.core.errors import StoreError
from chief.core.messages import AgentMessage, Event, EventType
from chief.core.store import FINAL_STEP_STATUSES, StepRecord, Store, WorkflowRecord

DEFINITION = {"name": "code-review", "steps": [{"key": "a", "agent": "backend", "prompt": "p"}]}


async def make_execution(store: Store, execution_id: str = "exec000001", **kwargs) -> WorkflowRecord:
    workflow = await store.save_workflow("code-review", "1", DEFINITION, source="workflows/code-review.yaml")
    await store.create_execution(execution_id, workflow, {"git_diff": "x"}, **kwargs)
    return workflow


def step(task_key: str = "a", status: str = "queued", attempt: int = 1, execution_id: str = "exec000001", **kw):
    return StepRecord(execution_id=execution_id, task_key=task_key, step_key=task_key.split("[")[0],
                      attempt=attempt, status=status, **kw)


def event(etype: EventType = EventType.STEP_QUEUED, execution_id: str = "exec000001", **kw) -> Event:
    return Event(execution_id=execution_id, type=etype, **kw)


def assert_aware_utc(*values: datetime | None) -> None:
    for value in values:
        if value is not None:
            assert value.tzinfo is not None and value.utcoffset() == timedelta(0), value


# -- workflows -------------------------------------------------------------------------------------


async def test_store_save_workflow_is_idempotent_by_content_hash(store):
    first = await store.save_workflow("code-review", "1", DEFINITION, source="a.yaml")
    again = await store.save_workflow("code-review", "1", {**DEFINITION}, source="b.yaml")
    assert again == first and again.source == "a.yaml"
    changed = await store.save_workflow("code-review", "2", DEFINITION)
    assert changed.id != first.id and changed.content_hash != first.content_hash
    assert await store.get_workflow(first.id) == first
    assert await store.get_workflow("nope") is None
    assert first.definition == DEFINITION and first.version == "1"
    assert_aware_utc(first.created_at)


async def test_store_save_workflow_concurrently_keeps_one_row(store):
    saved = await asyncio.gather(*(store.save_workflow("w", "1", {"n": 1}) for _ in range(8)))
    assert len({w.id for w in saved}) == 1


# -- executions ------------------------------------------------------------------------------------


async def test_store_create_and_get_execution_with_its_events(store):
    workflow = await store.save_workflow("code-review", "1", DEFINITION)
    created = await store.create_execution(
        "exec000001", workflow, {"git_diff": "x"}, conversation_id="conv-1",
        events=[event(EventType.EXECUTION_CREATED, data={"workflow": "code-review"})],
    )
    got = await store.get_execution("exec000001")
    assert got == created
    assert (got.status, got.workflow_id, got.workflow_name, got.workflow_version) == ("pending", workflow.id, "code-review", "1")
    assert got.inputs == {"git_diff": "x"} and got.conversation_id == "conv-1" and got.output is None
    assert_aware_utc(got.created_at)
    [ev] = await store.list_events("exec000001")
    assert ev.type == "execution.created" and ev.data == {"workflow": "code-review"}


async def test_store_create_execution_twice_is_a_store_error(store):
    await make_execution(store)
    workflow = await store.save_workflow("code-review", "1", DEFINITION)
    with pytest.raises(StoreError, match="creating execution 'exec000001' failed"):
        await store.create_execution("exec000001", workflow, {})


async def test_store_get_execution_by_unique_prefix(store):
    workflow = await make_execution(store, "abcdef111111")
    await store.create_execution("abcdef222222", workflow, {})
    await store.create_execution("a_cdef333333", workflow, {})
    assert (await store.get_execution("abcdef1")).id == "abcdef111111"
    assert await store.get_execution("abcde") is None  # shorter than 6: exact ids only
    assert await store.get_execution("zzzzzzz") is None
    assert await store.get_execution("a_cdef") is not None  # "_" is not a wildcard
    assert await store.get_execution("a%cdef") is None
    with pytest.raises(StoreError, match="ambiguous"):
        await store.get_execution("abcdef")


async def test_store_list_executions_filters_newest_first(store):
    workflow = await make_execution(store, "exec000001", conversation_id="c1")
    other = await store.save_workflow("research-report", "1", {"steps": []})
    await store.create_execution("exec000002", other, {}, conversation_id="c2")
    await store.create_execution("exec000003", workflow, {}, conversation_id="c1")
    await store.record(execution={"id": "exec000003", "status": "succeeded"})

    assert [e.id for e in await store.list_executions()] == ["exec000003", "exec000002", "exec000001"]
    assert [e.id for e in await store.list_executions(limit=1)] == ["exec000003"]
    assert [e.id for e in await store.list_executions(status="succeeded")] == ["exec000003"]
    assert [e.id for e in await store.list_executions(status=["pending", "running"])] == ["exec000002", "exec000001"]
    assert [e.id for e in await store.list_executions(workflow="code-review")] == ["exec000003", "exec000001"]
    assert [e.id for e in await store.list_executions(workflow=other.id)] == ["exec000002"]
    assert [e.id for e in await store.list_executions(conversation_id="c2")] == ["exec000002"]
    assert await store.list_executions(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert len(await store.list_executions(since=datetime.now(UTC) - timedelta(minutes=1))) == 3
    naive_past = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)  # naive is taken as UTC
    assert len(await store.list_executions(since=naive_past)) == 3


async def test_store_controls(store):
    await make_execution(store, "exec000001")
    await make_execution(store, "exec000002")
    assert await store.get_controls(["exec000001", "exec000002"]) == {}
    await store.set_control("exec000001", "pause")
    assert await store.get_controls(["exec000001", "exec000002", "unknown"]) == {"exec000001": "pause"}
    assert (await store.get_execution("exec000001")).control == "pause"
    await store.set_control("exec000001", None)
    assert await store.get_controls(["exec000001"]) == {}
    assert await store.get_controls([]) == {}
    with pytest.raises(StoreError, match="no execution"):
        await store.set_control("missing0001", "cancel")
    with pytest.raises(StoreError, match="unknown control"):
        await store.set_control("exec000001", "explode")


async def test_store_lease_acquire_renew_refuse_and_steal_after_expiry(store):
    await make_execution(store)
    assert await store.acquire_lease("exec000001", "proc-a", 30)
    first = (await store.get_execution("exec000001")).lease_until
    assert_aware_utc(first)
    assert await store.acquire_lease("exec000001", "proc-a", 60)  # renew
    assert (await store.get_execution("exec000001")).lease_until > first
    assert not await store.acquire_lease("exec000001", "proc-b", 30)  # held by a live owner
    assert (await store.get_execution("exec000001")).owner == "proc-a"

    assert await store.acquire_lease("exec000001", "proc-a", -1)  # let it expire
    assert await store.acquire_lease("exec000001", "proc-b", 30)  # steal
    assert (await store.get_execution("exec000001")).owner == "proc-b"

    await store.release_lease("exec000001", "proc-a")  # not the owner: no effect
    assert (await store.get_execution("exec000001")).owner == "proc-b"
    await store.release_lease("exec000001", "proc-b")
    released = await store.get_execution("exec000001")
    assert (released.owner, released.lease_until) == (None, None)
    with pytest.raises(StoreError, match="no execution"):
        await store.acquire_lease("missing0001", "proc-a", 30)


async def test_store_lease_is_taken_by_exactly_one_of_many_contenders(store):
    await make_execution(store)
    won = await asyncio.gather(*(store.acquire_lease("exec000001", f"proc-{i}", 30) for i in range(10)))
    assert sum(won) == 1


# -- record(): one transaction ---------------------------------------------------------------------


async def test_store_record_writes_everything_and_returns_event_ids_in_order(store):
    await make_execution(store)
    started = datetime.now(UTC)
    message = AgentMessage(sender="engine", recipient="backend", type="task", payload={"prompt": "p"},
                           correlation_id="exec000001:a:1")
    ids = await store.record(
        steps=[step("a", "running", agent="backend", queued_at=started)],
        events=[event(EventType.STEP_QUEUED, task_key="a"), event(EventType.STEP_STARTED, task_key="a"),
                event(EventType.EXECUTION_STARTED)],
        messages=[message],
        execution={"id": "exec000001", "status": "running", "started_at": started},
    )
    assert len(ids) == 3 and ids == sorted(ids)
    listed = await store.list_events("exec000001")
    assert [e.id for e in listed] == ids
    assert [e.type for e in listed] == ["step.queued", "step.started", "execution.started"]
    execution = await store.get_execution("exec000001")
    assert execution.status == "running" and execution.started_at == started
    [row] = await store.list_steps("exec000001")
    assert (row.status, row.agent, row.queued_at) == ("running", "backend", started)
    assert await store.record() == []
    assert await store.record(messages=[message]) == []  # a redelivered message is recorded once


async def test_store_record_is_all_or_nothing_when_a_write_fails_midway(store):
    await make_execution(store)
    # The execution update comes last in the transaction: everything before it must be rolled back.
    with pytest.raises(StoreError, match="no execution 'missing0001'"):
        await store.record(
            steps=[step("a", "succeeded", result="r")],
            events=[event(task_key="a")],
            messages=[AgentMessage(sender="e", recipient="w", type="task", correlation_id="exec000001:a:1")],
            dead_letter={"execution_id": "exec000001", "task_key": "a", "recipient": "w",
                         "message": {"x": 1}, "reason": "r", "attempts": 3},
            execution={"id": "missing0001", "status": "failed"},
        )
    # A value that cannot be stored fails after the steps were written.
    with pytest.raises(StoreError, match="not JSON serializable"):
        await store.record(steps=[step("a", "succeeded", result="r")],
                           events=[event(task_key="a", data={"bad": object()})])
    assert await store.list_steps("exec000001") == []
    assert await store.list_events("exec000001") == []
    assert await store.list_dead_letters() == []
    assert (await store.get_execution("exec000001")).status == "pending"
    assert await store.final_step("exec000001", "a") is None


async def test_store_record_checks_what_it_is_given(store):
    await make_execution(store)
    with pytest.raises(StoreError, match="unknown keys"):
        await store.record(execution={"id": "exec000001", "statsu": "running"})
    with pytest.raises(StoreError, match="unknown execution status"):
        await store.record(execution={"id": "exec000001", "status": "done"})
    with pytest.raises(StoreError, match="unknown step status"):
        await store.record(steps=[step("a", "finished")])
    with pytest.raises(StoreError, match="missing"):
        await store.record(dead_letter={"recipient": "w"})


async def test_store_record_updates_execution_fields(store):
    await make_execution(store)
    finished = datetime.now(UTC)
    await store.record(execution={"id": "exec000001", "status": "failed", "error": "boom",
                                  "output": {"partial": [1, 2]}, "finished_at": finished.timestamp(),
                                  "control": "cancel"})
    got = await store.get_execution("exec000001")
    assert (got.status, got.error, got.output, got.control) == ("failed", "boom", {"partial": [1, 2]}, "cancel")
    assert abs((got.finished_at - finished).total_seconds()) < 0.001
    assert_aware_utc(got.finished_at)


# -- the ledger ------------------------------------------------------------------------------------


async def test_store_step_final_is_never_overwritten(store):
    await make_execution(store)
    await store.record(steps=[step("a", "running", agent="backend")])
    await store.record(steps=[step("a", "succeeded", result={"text": "first"}, tokens_in=3, tokens_out=5,
                                   cached=True)])
    await store.record(steps=[step("a", "running")])  # late, non-final: ignored
    await store.record(steps=[step("a", "failed", error="dup", result={"text": "second"})])  # second final: ignored
    [row] = await store.list_steps("exec000001")
    assert (row.status, row.result, row.error, row.agent) == ("succeeded", {"text": "first"}, None, "backend")
    assert (row.tokens_in, row.tokens_out, row.cached, row.tokens_estimated) == (3, 5, True, False)


async def test_store_step_later_writes_keep_earlier_values(store):
    await make_execution(store)
    queued = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    started = queued + timedelta(seconds=1)
    await store.record(steps=[step("a", "queued", agent="backend", priority=3, queued_at=queued)])
    await store.record(steps=[step("a", "running", provider="offline", queued_at=started, started_at=started)])
    await store.record(steps=[step("a", "running", started_at=started + timedelta(seconds=5))])
    [row] = await store.list_steps("exec000001")
    assert (row.status, row.agent, row.provider, row.priority) == ("running", "backend", "offline", 3)
    assert (row.queued_at, row.started_at) == (queued, started)  # the first time recorded is kept
    await store.record(steps=[step("a", "succeeded", model="m1", result=None, duration_ms=12.5,
                                   finished_at=started + timedelta(seconds=2))])
    [row] = await store.list_steps("exec000001")
    assert (row.status, row.agent, row.provider, row.model, row.duration_ms) == ("succeeded", "backend", "offline", "m1", 12.5)
    assert row.result is None
    assert_aware_utc(row.queued_at, row.started_at, row.finished_at)


async def test_store_step_a_late_queued_write_keeps_the_later_status(store):
    """The orchestrator records "queued" while the task travels; the worker's write may land first."""
    await make_execution(store)
    queued = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    await store.record(steps=[step("a", "running", started_at=queued + timedelta(seconds=1))])
    await store.record(steps=[step("a", "queued", agent="backend", priority=2, queued_at=queued)])
    await store.record(steps=[step("b", "succeeded", result="done")])
    await store.record(steps=[step("b", "queued", agent="echo", queued_at=queued)])
    rows = {r.task_key: r for r in await store.list_steps("exec000001")}
    assert (rows["a"].status, rows["a"].agent, rows["a"].priority, rows["a"].queued_at) == ("running", "backend", 2, queued)
    assert (rows["b"].status, rows["b"].result) == ("succeeded", "done")


async def test_store_steps_of_one_call_apply_in_order(store):
    await make_execution(store)
    await store.record(steps=[step("a", "running", agent="x"), step("a", "succeeded", result=1),
                              step("a", "failed", result=2), step("b", "queued")])
    rows = {r.task_key: r for r in await store.list_steps("exec000001")}
    assert (rows["a"].status, rows["a"].result, rows["a"].agent) == ("succeeded", 1, "x")
    assert rows["b"].status == "queued"


async def test_store_final_step_picks_the_latest_final_attempt(store):
    await make_execution(store)
    assert await store.final_step("exec000001", "a") is None
    await store.record(steps=[step("a", "failed", attempt=1, error="e1"), step("a", "retrying", attempt=2)])
    assert (await store.final_step("exec000001", "a")).attempt == 1
    await store.record(steps=[step("a", "failed", attempt=2, error="e2"), step("a", "running", attempt=3)])
    found = await store.final_step("exec000001", "a")
    assert (found.attempt, found.status, found.error) == (2, "failed", "e2")
    await store.record(steps=[step("a", "succeeded", attempt=3, result="ok")])
    found = await store.final_step("exec000001", "a")
    assert (found.attempt, found.status, found.result) == (3, "succeeded", "ok")
    assert found.id is not None and found.execution_id == "exec000001"
    assert await store.final_step("exec000001", "b") is None
    assert await store.final_step("other", "a") is None
    for status in FINAL_STEP_STATUSES:
        await store.record(steps=[step(f"t-{status}", status)])
        assert (await store.final_step("exec000001", f"t-{status}")).status == status
    await store.record(steps=[step("w", "waiting")])
    assert await store.final_step("exec000001", "w") is None


async def test_store_list_steps_orders_by_first_queue_time_then_attempt(store):
    await make_execution(store)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    await store.record(steps=[
        step("c", "queued", queued_at=t0 + timedelta(seconds=3)),
        step("a", "failed", attempt=1, queued_at=t0),
        step("a", "succeeded", attempt=2, queued_at=t0 + timedelta(seconds=5)),
        step("b[1]", "queued", item_index=1, queued_at=t0 + timedelta(seconds=1)),
        step("b[0]", "queued", item_index=0, queued_at=t0 + timedelta(seconds=1)),
        step("z", "skipped"),  # never queued: last
    ])
    rows = await store.list_steps("exec000001")
    assert [(r.task_key, r.attempt) for r in rows] == [
        ("a", 1), ("b[1]", 1), ("b[0]", 1), ("c", 1), ("a", 2), ("z", 1)]
    assert await store.list_steps("other") == []


async def test_store_ledger_rows_need_no_execution_row(store):
    # A worker records what it ran even when the execution row lives elsewhere (or not yet).
    await store.record(steps=[step("s", "succeeded", execution_id="e1", result="r")],
                       events=[event(EventType.STEP_SUCCEEDED, execution_id="e1")])
    assert (await store.final_step("e1", "s")).result == "r"


# -- events ----------------------------------------------------------------------------------------


async def test_store_events_in_order_with_after_id_and_limit(store):
    await make_execution(store)
    await make_execution(store, "exec000002")
    ids = []
    for i in range(5):
        ids += await store.record(events=[event(task_key=f"t{i}", data={"i": i}, step_key=f"t{i}")])
        await store.record(events=[event(execution_id="exec000002")])
    listed = await store.list_events("exec000001")
    assert [e.id for e in listed] == ids and [e.data["i"] for e in listed] == [0, 1, 2, 3, 4]
    assert [e.task_key for e in await store.list_events("exec000001", after_id=ids[2])] == ["t3", "t4"]
    assert [e.task_key for e in await store.list_events("exec000001", after_id=ids[0], limit=2)] == ["t1", "t2"]
    assert await store.list_events("exec000001", after_id=ids[-1]) == []
    first = listed[0]
    assert (first.execution_id, first.type, first.step_key) == ("exec000001", "step.queued", "t0")
    assert_aware_utc(*(e.created_at for e in listed))


async def test_store_event_time_is_the_event_s_own(store):
    await make_execution(store)
    when = datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)
    await store.record(events=[event(created_at=when.timestamp())])
    [stored] = await store.list_events("exec000001")
    assert abs((stored.created_at - when).total_seconds()) < 1e-5


# -- dead letters ----------------------------------------------------------------------------------


async def test_store_dead_letters_add_list_get_delete(store):
    await make_execution(store)
    message = AgentMessage(sender="engine", recipient="security", type="task", payload={"p": 1},
                           correlation_id="exec000001:audit:1", attempt=3)
    await store.record(dead_letter={"execution_id": "exec000001", "task_key": "audit", "recipient": "security",
                                    "message": message, "reason": "timed out", "attempts": 3},
                       events=[event(EventType.STEP_DEAD_LETTERED, task_key="audit")])
    await store.record(dead_letter={"recipient": "w", "message": {"raw": "x"}, "reason": "malformed",
                                    "attempts": 1, "extra": {"error": "bad json"}})
    newest, oldest = await store.list_dead_letters()
    assert (newest.reason, newest.execution_id, newest.extra) == ("malformed", None, {"error": "bad json"})
    assert (oldest.task_key, oldest.recipient, oldest.attempts, oldest.extra) == ("audit", "security", 3, {})
    assert oldest.message["correlation_id"] == "exec000001:audit:1" and oldest.message["payload"] == {"p": 1}
    assert_aware_utc(oldest.created_at)
    assert [d.id for d in await store.list_dead_letters(limit=1)] == [newest.id]
    assert await store.get_dead_letter(oldest.id) == oldest
    assert await store.delete_dead_letter(oldest.id) is True
    assert await store.delete_dead_letter(oldest.id) is False
    assert await store.get_dead_letter(oldest.id) is None
    assert [d.id for d in await store.list_dead_letters()] == [newest.id]
    await store.delete_dead_letter(newest.id)
    await store.record(dead_letter={"recipient": "w", "message": {}, "reason": "r", "attempts": 1})
    [again] = await store.list_dead_letters()
    assert again.id > newest.id  # ids are never handed out twice


# -- values ----------------------------------------------------------------------------------------


async def test_store_json_values_round_trip(store):
    await make_execution(store)
    result = {"text": "ünïcødé ✓", "n": 1.5, "list": [1, None, True], "nested": {"k": ["v"]}}
    scalars = {"d": 42, "e": 2.5, "f": "17", "g": True, "h": False}
    await store.record(steps=[step("a", "succeeded", result=result), step("b", "succeeded", result="plain"),
                              step("c", "succeeded", result=[1, 2])])
    await store.record(steps=[step(key, "succeeded", result=value) for key, value in scalars.items()])
    rows = {r.task_key: r.result for r in await store.list_steps("exec000001")}
    assert rows == {"a": result, "b": "plain", "c": [1, 2], **scalars}
    assert type(rows["d"]) is int and type(rows["g"]) is bool


async def test_store_open_twice_on_the_same_database(store):
    await make_execution(store)
    second = await Store.open(store.url)
    try:
        assert (await second.get_execution("exec000001")).id == "exec000001"
    finally:
        await second.close()
