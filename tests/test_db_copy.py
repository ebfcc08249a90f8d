"""`chief db copy`: SQLite -> PostgreSQL -> SQLite with identical data, refusals, resuming, restore after."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.errors import CopyError
from chief.core.plugins import register_temporary
from chief.core.store import copy as copy_module
from chief.core.store.copy import _engine, _saver, _table_sum, _threads, _tuples, copy_database
from chief.core.store.models import Base
from chief.core.workflows import parse_workflow
from tests.fakes import FlakyAgent, TestPlugin

ROOT = Path(__file__).resolve().parents[1]

WORKFLOW = """
name: copied
steps:
  - {key: a, agent: echo, prompt: "first ünïcode ✓"}
  - {key: b, agent: flaky, prompt: "second after {{a}}", depends_on: [a]}
  - {key: c, agent: echo, prompt: "each {{item}}", for_each: "{{inputs.items}}", depends_on: [a]}
  - {key: d, agent: echo, prompt: "last {{b}} {{c}}", depends_on: [b, c]}
inputs:
  items: {default: "x\\ny\\nz"}
"""


async def fill(url: str, tmp_path: Path) -> list[str]:
    """Run a few executions on `url` (retries, fan-out, a restore) so every table has rows."""
    with register_temporary(TestPlugin(agents=[FlakyAgent(failures=1)])) as registry:
        engine = await Engine.open(Settings(home=tmp_path / "fill", database_url=url), registry=registry)
        try:
            spec = parse_workflow(WORKFLOW)
            ids = [(await engine.run(spec, {})).id for _ in range(2)]
            checkpoints = await engine.checkpoints(ids[0])
            forked = await engine.restore(ids[0], checkpoints[2].id)
            ids.append((await engine.wait(forked)).id)
            return ids
        finally:
            await engine.close()


def sums(url: str) -> dict[str, tuple[int, str]]:
    engine = _engine(url)
    try:
        out = {t.name: (lambda s: (s.count, s.hex))(_table_sum(engine, t)) for t in Base.metadata.sorted_tables}
    finally:
        engine.dispose()
    return out


def checkpoint_rows(url: str) -> dict[str, list]:
    dialect = "sqlite" if url.startswith("sqlite") else "postgresql"
    with _saver(url) as saver:
        return {thread: [(t.config["configurable"]["checkpoint_id"], t.checkpoint["channel_values"], t.metadata)
                         for t in _tuples(saver, thread)] for thread in _threads(saver, dialect)}


async def test_db_copy_round_trip_sqlite_postgres_sqlite_is_identical(tmp_path, pg_url):
    first = f"sqlite:///{tmp_path / 'first.db'}"
    back = f"sqlite:///{tmp_path / 'back.db'}"
    ids = await fill(first, tmp_path)
    report = copy_database(first, pg_url)
    assert report.ok and {t.name for t in report.tables} >= {"executions", "step_executions", "events",
                                                              "checkpoints"}
    assert dict((t.name, t.source_rows) for t in report.tables)["executions"] == 3
    assert copy_database(pg_url, back).ok
    assert sums(first) == sums(pg_url) == sums(back)
    assert checkpoint_rows(first) == checkpoint_rows(pg_url) == checkpoint_rows(back)
    src, dst = _engine(first), _engine(back)
    try:
        for table in Base.metadata.sorted_tables:
            order = list(table.primary_key.columns)
            with src.connect() as a, dst.connect() as b:
                assert a.execute(select(table).order_by(*order)).all() == b.execute(select(table).order_by(*order)).all()
    finally:
        src.dispose()
        dst.dispose()

    # The copy is a working database: restore from a copied checkpoint, and new rows get fresh ids.
    with register_temporary(TestPlugin(agents=[FlakyAgent(failures=0)])) as registry:
        engine = await Engine.open(Settings(home=tmp_path / "pg", database_url=pg_url), registry=registry)
        try:
            checkpoints = await engine.checkpoints(ids[1])
            forked = await engine.restore(ids[1], checkpoints[1].id)
            assert (await engine.wait(forked)).status == "succeeded"
            assert (await engine.run(parse_workflow(WORKFLOW), {})).status == "succeeded"
        finally:
            await engine.close()


async def test_db_copy_refuses_a_non_empty_target_without_force(tmp_path, pg_url):
    source = f"sqlite:///{tmp_path / 'source.db'}"
    await fill(source, tmp_path)
    copy_database(source, pg_url)
    with pytest.raises(CopyError, match="already has data .*--force"):
        copy_database(source, pg_url)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    await fill(other, tmp_path / "o")
    report = copy_database(other, pg_url, force=True)
    assert report.ok and sums(pg_url) == sums(other)
    with pytest.raises(CopyError, match="same database"):
        copy_database(other, other)


async def test_db_copy_resumes_after_an_interruption(tmp_path, pg_url, monkeypatch):
    source = f"sqlite:///{tmp_path / 'source.db'}"
    await fill(source, tmp_path)
    real = copy_module._copy_table
    monkeypatch.setattr(copy_module, "BATCH_ROWS", 3)

    def interrupted(src, dst, table, dialect):
        if table.name == "events":
            raise KeyboardInterrupt("interrupted mid-copy")
        return real(src, dst, table, dialect)

    monkeypatch.setattr(copy_module, "_copy_table", interrupted)
    with pytest.raises(KeyboardInterrupt):
        copy_database(source, pg_url)
    monkeypatch.setattr(copy_module, "_copy_table", real)
    with pytest.raises(CopyError, match="--resume"):
        copy_database(source, pg_url)
    report = copy_database(source, pg_url, resume=True)
    assert report.ok
    written = {t.name: t.copied for t in report.tables}
    assert written["agent_messages"] == 0 and written["events"] > 0  # what was complete was not copied again
    assert sums(source) == sums(pg_url)


def test_db_copy_cli_copies_and_refuses(tmp_path, pg_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIEF_")}
    env["CHIEF_HOME"] = str(tmp_path / "home")
    run = [sys.executable, "-m", "chief.cli"]
    done = subprocess.run([*run, "run", "answer", "-i", "request=hi", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    copied = subprocess.run([*run, "db", "copy", "--to", pg_url], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert copied.returncode == 0, copied.stderr
    assert "checksums match" in copied.stdout
    again = subprocess.run([*run, "db", "copy", "--to", pg_url], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 1 and "--force" in again.stderr and "Traceback" not in again.stderr
