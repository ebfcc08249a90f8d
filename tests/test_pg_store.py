"""PostgreSQL specifics: the queries users ask for and the step's hot path use indexes; workflow versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, bindparam, select, text

from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.plugins import register_temporary
from chief.core.store import Store
from chief.core.store.models import events, executions, step_executions
from chief.core.workflows import load_workflow
from tests.fakes import TestPlugin


@pytest.fixture
async def pg_store(pg_url):
    store = await Store.open(pg_url, migrate=True)
    try:
        yield store
    finally:
        await store.close()


def plans(conn: Connection, statements) -> list[str]:
    """EXPLAIN of each statement with sequential scans priced out: a plan that still scans has no index."""
    conn.execute(text("SET enable_seqscan = off"))
    out = []
    for stmt, params in statements:
        compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
        rows = conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.construct_params(params)).all()
        out.append("\n".join(r[0] for r in rows))
    return out


async def test_pg_hot_path_and_user_queries_use_indexes(pg_store):
    s = step_executions
    since = datetime.now(UTC) - timedelta(hours=1)
    statements = [
        (pg_store._sql.final_step, {"execution_id": "e1", "task_key": "a"}),  # every step, before dispatch
        (pg_store._sql.get_execution, {"id": "e1"}),
        (select(executions.c.id, executions.c.control).where(executions.c.id.in_(["e1", "e2"])), {}),  # watcher
        (select(events).where(events.c.execution_id == bindparam("e"), events.c.id > 0).order_by(events.c.id), {"e": "e1"}),
        (select(s).where(s.c.execution_id == bindparam("e")), {"e": "e1"}),  # workflow status
        (select(executions).where(executions.c.status == "running").order_by(executions.c.created_at.desc()), {}),
        (select(executions).where(executions.c.workflow_name == "code-review"), {}),
        (select(executions).where(executions.c.created_at >= bindparam("t")), {"t": since}),
    ]

    def run(conn: Connection) -> list[str]:
        return plans(conn, statements)

    for plan in await pg_store._call("explaining", run, write=False):
        assert "Seq Scan" not in plan, plan


async def test_pg_editing_a_workflow_makes_a_new_version_and_each_execution_keeps_its_own(pg_url, tmp_path):
    await (await Store.open(pg_url, migrate=True)).close()
    path = tmp_path / "flow.yaml"
    path.write_text("name: flow\nsteps:\n  - {key: a, agent: echo, prompt: one}\n")
    with register_temporary(TestPlugin()) as registry:
        engine = await Engine.open(Settings(home=tmp_path / "home", database_url=pg_url), registry=registry)
        try:
            first = await engine.run(load_workflow(path), {})
            again = await engine.run(load_workflow(path), {})
            path.write_text("name: flow\nsteps:\n  - {key: a, agent: echo, prompt: two}\n")
            edited = await engine.run(load_workflow(path), {})
            assert first.workflow_id == again.workflow_id != edited.workflow_id
            old = await engine.store.get_workflow(first.workflow_id)
            new = await engine.store.get_workflow(edited.workflow_id)
            assert old.definition["steps"][0]["prompt"] == "one" and new.definition["steps"][0]["prompt"] == "two"
            assert old.source == new.source == str(Path(path))
            assert [s.result for s in await engine.store.list_steps(edited.id)][-1] == "two"
        finally:
            await engine.close()
