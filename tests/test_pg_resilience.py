"""PostgreSQL dropping its connections mid-run (`pg_terminate_backend` on the test's own database only).

The shared cluster is never stopped; "down for a while" is `ALTER DATABASE ... ALLOW_CONNECTIONS false`
on the test's database plus terminating its backends, which is what a restart looks like to a client.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.errors import StoreUnavailable
from chief.core.messages import EventType
from chief.core.plugins import register_temporary
from chief.core.store import Store
from chief.core.workflows import parse_workflow
from tests.fakes import CHAIN, GateAgent, TestPlugin


def terminate(admin_url: str, database: str) -> int:
    """Drop every connection to `database` (and only to it); the number dropped."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                            "AND pid <> pg_backend_pid()", (database,)).fetchall()
    return len(rows)


@contextmanager
def database_down(admin_url: str, database: str):
    """`database` refuses new connections and loses its open ones, until the block ends."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(database)))
    try:
        terminate(admin_url, database)
        yield
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(database)))


async def test_pg_store_rides_out_terminated_connections(pg_url, pg_admin_url, pg_database):
    store = await Store.open(pg_url, migrate=True)
    try:
        assert await store.list_executions() == []
        assert terminate(pg_admin_url, pg_database[0]) >= 1
        assert await store.list_executions() == []  # a dead pooled connection is replaced, the call retried
        workflow = await store.save_workflow("w", "1", {"steps": []})
        terminate(pg_admin_url, pg_database[0])
        await store.create_execution("e00001", workflow, {})
        assert (await store.get_execution("e00001")).status == "pending"
    finally:
        await store.close()


async def test_pg_store_unavailable_past_the_bound_raises_one_clear_error(pg_url, pg_admin_url, pg_database):
    store = await Store.open(pg_url, migrate=True)
    store.retry_s = 0.5
    try:
        with database_down(pg_admin_url, pg_database[0]):
            with pytest.raises(StoreUnavailable, match=r"unreachable for 0.5s .*chief recover") as caught:
                await store.list_executions()
            assert "SELECT" not in str(caught.value)  # the driver's message, not the statement
        assert await store.list_executions() == []  # back: works again
    finally:
        await store.close()


@pytest.fixture
def gate():
    return GateAgent()


async def test_pg_run_survives_connections_dropped_mid_run(pg_url, pg_admin_url, pg_database, tmp_path, gate):
    await (await Store.open(pg_url, migrate=True)).close()
    gate.held.update({"a", "b"})
    with register_temporary(TestPlugin(agents=[gate])) as registry:
        engine = await Engine.open(Settings(home=tmp_path / "home", database_url=pg_url), registry=registry)
        try:
            execution_id = await engine.start(parse_workflow(CHAIN), {})
            for key in ("a", "b"):
                await asyncio.wait_for(gate.started_event(key).wait(), 30)
                assert terminate(pg_admin_url, pg_database[0]) >= 1  # store and checkpointer pools both
                gate.gate(key).set()
            record = await asyncio.wait_for(engine.wait(execution_id), 60)
            assert record.status == "succeeded", record.error
            assert gate.runs == Counter({"a": 1, "b": 1, "c": 1})
            events = Counter((e.type, e.task_key) for e in await engine.store.list_events(execution_id))
            for key in "abc":
                assert events[(EventType.STEP_SUCCEEDED.value, key)] == 1
            assert events[(EventType.EXECUTION_SUCCEEDED.value, None)] == 1
        finally:
            await engine.close()


async def test_pg_run_stops_while_the_database_is_down_and_recovers_after(pg_url, pg_admin_url, pg_database,
                                                                           tmp_path, gate, monkeypatch):
    monkeypatch.setenv("CHIEF_DB_RETRY_S", "1")
    await (await Store.open(pg_url, migrate=True)).close()
    gate.held.add("b")
    with register_temporary(TestPlugin(agents=[gate])) as registry:
        settings = Settings(home=tmp_path / "home", database_url=pg_url, lease_s=0.5)
        engine = await Engine.open(settings, registry=registry)
        try:
            spec = parse_workflow(CHAIN.replace('depends_on: [a]}', 'depends_on: [a], timeout_s: 1, retry: {attempts: 1}}'))
            execution_id = await engine.start(spec, {})
            run = engine._runs[execution_id]
            await asyncio.wait_for(gate.started_event("b").wait(), 30)
            with database_down(pg_admin_url, pg_database[0]):
                gate.gate("b").set()  # b's result cannot be recorded; the step's lease (3 s) runs out
                await asyncio.wait_for(run.stopped.wait(), 30)
                assert execution_id not in engine._runs  # it let go: nothing is driving it now
            [report] = await engine.recover([execution_id])
            assert report.outcome == "resumed", report
            record = await asyncio.wait_for(engine.wait(execution_id), 60)
            assert record.status == "succeeded", record.error
            steps = Counter(s.task_key for s in await engine.store.list_steps(execution_id)
                            if s.status == "succeeded")
            assert steps == Counter({"a": 1, "b": 1, "c": 1})
            assert gate.runs["a"] == 1  # recorded before the outage: not run again
        finally:
            await engine.close()


def test_pg_transient_errors_are_told_from_permanent_ones():
    from sqlalchemy.exc import IntegrityError, OperationalError

    from chief.core.store.retry import is_transient

    lost = psycopg.OperationalError("terminating connection due to administrator command")
    assert is_transient(lost)
    assert is_transient(OperationalError("SELECT 1", {}, lost))
    assert not is_transient(psycopg.OperationalError('connection failed: FATAL: database "x" does not exist'))
    assert not is_transient(psycopg.OperationalError("FATAL: password authentication failed for user"))
    assert not is_transient(IntegrityError("INSERT", {}, psycopg.errors.UniqueViolation("duplicate key")))
    assert not is_transient(ValueError("nope"))
