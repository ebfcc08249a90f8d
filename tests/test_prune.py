"""Checkpoint retention: `prune_checkpoints` keeps the newest N of finished executions, restorable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import text

from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.errors import StoreError
from chief.core.plugins import register_temporary
from chief.core.store.prune import prune_checkpoints
from chief.core.workflows import parse_workflow
from tests.fakes import GateAgent, TestPlugin

ROOT = Path(__file__).resolve().parents[1]

CHAIN = """
name: chain
steps:
  - {key: a, agent: gate, prompt: "first"}
  - {key: b, agent: gate, prompt: "second after {{a}}", depends_on: [a]}
  - {key: c, agent: gate, prompt: "third after {{b}}", depends_on: [b]}
  - {key: d, agent: gate, prompt: "fourth after {{c}}", depends_on: [c]}
"""


@pytest.fixture
async def engine(db_url, tmp_path):
    gate = GateAgent()
    with register_temporary(TestPlugin(agents=[gate])) as registry:
        from chief.core.store import Store

        await (await Store.open(db_url, migrate=True)).close()
        opened = await Engine.open(Settings(home=tmp_path / "home", database_url=db_url), registry=registry)
        opened.gate = gate
        try:
            yield opened
        finally:
            for key in list(gate.held):  # a held step would keep the worker (and close) waiting
                gate.gate(key).set()
            await opened.close()


async def checkpoint_rows(engine) -> int:
    def count(conn):
        return conn.execute(text("SELECT COUNT(*) FROM checkpoints")).scalar_one()

    return await engine.store._call("counting", count, write=False)


async def test_prune_keeps_the_newest_checkpoints_and_restore_works_from_each(engine):
    spec = parse_workflow(CHAIN)
    finished = await engine.run(spec, {})
    assert finished.status == "succeeded"
    before = await engine.checkpoints(finished.id)
    assert len(before) >= 5
    engine.gate.held.add("b")  # an unfinished execution: never pruned
    engine.gate.started_event("b").clear()
    unfinished = await engine.start(spec, {})
    await asyncio.wait_for(engine.gate.started_event("b").wait(), 30)
    unfinished_before = len(await engine.checkpoints(unfinished))

    dry = await prune_checkpoints(engine.store, keep=2, dry_run=True)
    assert dry.checkpoints == len(before) - 2 and len(await engine.checkpoints(finished.id)) == len(before)
    report = await prune_checkpoints(engine.store, keep=2)
    assert report.executions == 1 and report.checkpoints == len(before) - 2
    kept = await engine.checkpoints(finished.id)
    assert [c.id for c in kept] == [c.id for c in before[:2]]
    assert len(await engine.checkpoints(unfinished)) == unfinished_before
    assert await prune_checkpoints(engine.store, keep=2) == type(report)()  # nothing left to do

    runs_before = Counter(engine.gate.runs)
    for checkpoint in kept:
        forked = await engine.restore(finished.id, checkpoint.id)
        record = await engine.wait(forked)
        assert record.status == "succeeded" and record.output == finished.output
    # the kept checkpoints were taken after c finished: restoring them re-ran at most d
    assert set(engine.gate.runs - runs_before) <= {"d"}
    engine.gate.gate("b").set()
    assert (await engine.wait(unfinished)).status == "succeeded"


async def test_prune_respects_older_than_and_refuses_keep_zero(engine):
    from datetime import UTC, datetime, timedelta

    record = await engine.run(parse_workflow(CHAIN), {})
    count = await checkpoint_rows(engine)
    report = await prune_checkpoints(engine.store, keep=1, older_than=datetime.now(UTC) - timedelta(hours=1))
    assert report.checkpoints == 0 and await checkpoint_rows(engine) == count
    with pytest.raises(StoreError, match="at least 1"):
        await prune_checkpoints(engine.store, keep=0)
    await prune_checkpoints(engine.store, keep=1, execution_ids=[record.id])
    assert len(await engine.checkpoints(record.id)) == 1


def test_prune_cli(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIEF_")}
    env["CHIEF_HOME"] = str(tmp_path / "home")
    run = [sys.executable, "-m", "chief.cli"]
    done = subprocess.run([*run, "run", "answer", "-i", "request=hi", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pruned = subprocess.run([*run, "db", "prune", "--keep", "1"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert pruned.returncode == 0, pruned.stderr
    assert "of 1 finished executions" in pruned.stdout
