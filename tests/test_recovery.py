"""Durable executions: kill -9 of the orchestrator mid-run, recovery from the last checkpoint, leases.

The kill tests run the orchestrator as a real subprocess (`python -m chief.cli run ...`) on a fresh
PostgreSQL database, with the offline provider slowed down so that the kill lands mid-step.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.engine.recovery import owner_is_gone
from chief.core.messages import EventType
from chief.core.plugins import register_temporary
from chief.core.store import Store
from chief.core.workflows import parse_workflow
from tests.fakes import GateAgent, TestPlugin

ROOT = Path(__file__).resolve().parents[1]

CHAIN = """
name: durable-chain
steps:
  - {key: a, agent: backend, prompt: "first"}
  - {key: b, agent: backend, prompt: "second after {{a}}", depends_on: [a]}
  - {key: c1, agent: backend, prompt: "third after {{b}}", depends_on: [b]}
  - {key: c2, agent: backend, prompt: "third too after {{b}}", depends_on: [b]}
  - {key: d, agent: backend, prompt: "last after {{c1}} {{c2}}", depends_on: [c1, c2]}
"""
KEYS = {"a", "b", "c1", "c2", "d"}


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def env_for(url: str, tmp_path: Path, latency_ms: int = 600) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIEF_")}
    env.update(CHIEF_HOME=str(tmp_path / "home"), CHIEF_DATABASE_URL=url, CHIEF_OFFLINE_LATENCY_MS=str(latency_ms),
               COLUMNS="200")
    return env


def chief(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chief.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def wait_for_row(url: str, sql: str, params: tuple = (), timeout: float = 60) -> tuple:
    """Poll the database until `sql` returns a row (a condition with a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                row = conn.execute(sql, params).fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
            if row is not None:
                return row
            time.sleep(0.05)
    raise AssertionError(f"no row for {sql!r} within {timeout}s")


def rows(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def start_and_kill(url: str, tmp_path: Path, *, after: str = "b") -> tuple[str, set[str]]:
    """Run the chain in a subprocess, kill -9 it once step `after` succeeded; (execution id, steps done)."""
    workflow = tmp_path / "durable-chain.yaml"
    workflow.write_text(CHAIN)
    env = env_for(url, tmp_path)
    assert chief(env, "db", "upgrade").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "chief.cli", "run", str(workflow), "--json"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        (execution_id,) = wait_for_row(url, "SELECT execution_id FROM events WHERE type = %s AND task_key = %s",
                                       (EventType.STEP_SUCCEEDED.value, after))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)  # reaped: its pid is gone, so recovery may take its lease at once
    assert proc.returncode == -signal.SIGKILL
    done = {r[0] for r in rows(url, "SELECT task_key FROM step_executions WHERE execution_id = %s AND status = "
                                     "'succeeded'", (execution_id,))}
    (status,) = rows(url, "SELECT status FROM executions WHERE id = %s", (execution_id,))[0]
    assert status == "running" and after in done and done != KEYS
    return execution_id, done


def assert_each_step_once(url: str, execution_id: str, done_before: set[str]) -> None:
    succeeded = Counter(r[0] for r in rows(url, "SELECT task_key FROM step_executions WHERE execution_id = %s AND "
                                                "status = 'succeeded'", (execution_id,)))
    assert succeeded == Counter(dict.fromkeys(KEYS, 1))
    events = Counter((r[0], r[1]) for r in rows(url, "SELECT type, task_key FROM events WHERE execution_id = %s",
                                                 (execution_id,)))
    for key in KEYS:
        assert events[(EventType.STEP_SUCCEEDED.value, key)] == 1, key
    for key in done_before:  # finished before the kill: never dispatched again
        assert events[(EventType.STEP_QUEUED.value, key)] == 1, key
        sent = rows(url, "SELECT count(*) FROM agent_messages WHERE correlation_id LIKE %s AND type = 'task'",
                    (f"{execution_id}:{key}:%",))[0][0]
        assert sent == 1, key


def test_recovery_after_kill9_completes_the_run_with_each_finished_step_run_once(pg_url, tmp_path):
    execution_id, done = start_and_kill(pg_url, tmp_path)
    env = env_for(pg_url, tmp_path, latency_ms=50)
    recovered = chief(env, "recover", "--json")
    assert recovered.returncode == 0, recovered.stderr
    [report] = json.loads(recovered.stdout)
    assert report["execution_id"] == execution_id and report["outcome"] == "resumed"
    assert report["status"] == "succeeded"
    assert_each_step_once(pg_url, execution_id, done)
    status = chief(env, "workflow", "status", execution_id)
    assert status.returncode == 0 and "succeeded" in status.stdout


def test_recovery_run_resume_continues_a_killed_execution(pg_url, tmp_path):
    execution_id, done = start_and_kill(pg_url, tmp_path, after="a")
    env = env_for(pg_url, tmp_path, latency_ms=50)
    resumed = chief(env, "run", "--resume", execution_id[:10], "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "succeeded"
    assert_each_step_once(pg_url, execution_id, done)
    again = chief(env, "run", "--resume", execution_id)
    assert again.returncode == 0 and "already succeeded" in again.stdout


def test_recovery_two_orchestrators_on_one_execution_only_one_drives_it(pg_url, tmp_path):
    execution_id, done = start_and_kill(pg_url, tmp_path)
    env = env_for(pg_url, tmp_path, latency_ms=300)
    procs = [subprocess.Popen([sys.executable, "-m", "chief.cli", "recover", "--json"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        outcomes.extend(r["outcome"] for r in json.loads(out) if r["execution_id"] == execution_id)
    assert outcomes.count("resumed") == 1, outcomes
    assert_each_step_once(pg_url, execution_id, done)
    (status,) = rows(pg_url, "SELECT status FROM executions WHERE id = %s", (execution_id,))[0]
    assert status == "succeeded"


# -- in process ---------------------------------------------------------------------------------------

GATED = """
name: gated
steps:
  - {key: a, agent: gate, prompt: "first"}
  - {key: b, agent: gate, prompt: "second after {{a}}", depends_on: [a]}
"""


@pytest.fixture
def gate():
    return GateAgent()


async def open_engine(url: str, tmp_path: Path, registry) -> Engine:
    return await Engine.open(Settings(home=tmp_path / "home", database_url=url), registry=registry)


async def test_recovery_leaves_an_execution_a_live_process_drives(pg_url, tmp_path, gate):
    await (await Store.open(pg_url, migrate=True)).close()
    gate.held.add("a")
    with register_temporary(TestPlugin(agents=[gate])) as registry:
        first = await open_engine(pg_url, tmp_path, registry)
        second = await open_engine(pg_url, tmp_path, registry)
        try:
            execution_id = await first.start(parse_workflow(GATED), {})
            await asyncio.wait_for(gate.started_event("a").wait(), 30)
            [report] = await second.recover()
            assert report.execution_id == execution_id and report.outcome == "skipped"
            assert "driven by" in report.detail
            gate.gate("a").set()
            record = await first.wait(execution_id)
            assert record.status == "succeeded"
            assert gate.runs == Counter({"a": 1, "b": 1})
            assert await second.recover() == []
        finally:
            await second.close()
            await first.close()


async def test_recovery_starts_an_execution_that_died_before_its_first_checkpoint(db_url, tmp_path, gate):
    await (await Store.open(db_url, migrate=True)).close()
    with register_temporary(TestPlugin(agents=[gate])) as registry:
        engine = await open_engine(db_url, tmp_path, registry)
        try:
            spec = parse_workflow(GATED)
            workflow = await engine.store.save_workflow(spec.name, str(spec.version), spec.model_dump(mode="json"))
            await engine.store.create_execution("orphan0001", workflow, {})
            [report] = await engine.recover()
            assert (report.execution_id, report.outcome) == ("orphan0001", "started")
            record = await engine.wait("orphan0001")
            assert record.status == "succeeded"
            assert gate.runs == Counter({"a": 1, "b": 1})
        finally:
            await engine.close()


def test_recovery_knows_a_local_process_that_is_gone():
    import socket

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    host = socket.gethostname()
    assert owner_is_gone(f"engine-{host}-{proc.pid}-abc123")
    assert not owner_is_gone(f"engine-{host}-{os.getppid()}-abc123")  # alive
    assert not owner_is_gone(f"engine-{host}-{os.getpid()}-abc123")  # this process
    assert not owner_is_gone(f"engine-otherhost-{proc.pid}-abc123")  # not ours to judge: wait for the lease
    assert not owner_is_gone(None) and not owner_is_gone("worker-1")
