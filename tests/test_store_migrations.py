"""Alembic migrations on SQLite and PostgreSQL, and how `Store.open` treats an old schema."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from chief.core.errors import SchemaBehind, StoreError
from chief.core.store import Store, migrate
from chief.core.store.models import VERSION_TABLE, Base
from chief.core.store.urls import checkpointer_conn_string, sqlite_path, sync_url

CHIEF_TABLES = {
    "workflows", "executions", "step_executions", "events", "agent_messages", "dead_letters",  # 0001
    "users", "threads", "chat_steps", "chat_elements", "chat_feedback", "files",  # 0002: the chat
    "canaries", "canary_runs",  # 0004: canary routes
}
LANGGRAPH_TABLES = {"checkpoints", "writes", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations"}


def tables(url: str) -> set[str]:
    engine = create_engine(sync_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_store_migrations_head_and_history():
    revisions = [rev for rev, _ in migrate.history()]
    assert revisions[:2] == ["0001", "0002"]
    assert [rev for rev, _ in migrate.history()][-1] == migrate.head()


def test_store_migrations_upgrade_from_empty_creates_every_table(db_url):
    assert migrate.current(db_url) is None
    assert migrate.is_behind(db_url)
    migrate.upgrade(db_url)
    assert migrate.current(db_url) == migrate.head()
    assert not migrate.is_behind(db_url)
    assert tables(db_url) == CHIEF_TABLES | {VERSION_TABLE}
    migrate.upgrade(db_url)  # again: nothing to do
    assert migrate.current(db_url) == migrate.head()


def test_store_migrations_match_the_models(db_url):
    migrate.upgrade(db_url)
    engine = create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_store_migrations_downgrade_to_base_and_up_again(db_url):
    migrate.upgrade(db_url)
    migrate.downgrade(db_url, "base")
    assert migrate.current(db_url) is None
    assert tables(db_url) <= {VERSION_TABLE}
    migrate.upgrade(db_url)
    assert tables(db_url) >= CHIEF_TABLES


async def test_store_migrations_async_variants(db_url):
    assert await migrate.acurrent(db_url) is None
    assert await migrate.ais_behind(db_url)
    await migrate.aupgrade(db_url)
    assert await migrate.acurrent(db_url) == migrate.head()
    assert not await migrate.ais_behind(db_url)
    await migrate.adowngrade(db_url, "base")
    assert await migrate.acurrent(db_url) is None


def test_store_migrations_current_of_a_missing_sqlite_file_creates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'nothing' / 'here.db'}"
    assert migrate.current(url) is None
    assert not (tmp_path / "nothing").exists()


async def test_store_open_refuses_an_empty_postgres_database(pg_url):
    assert migrate.is_behind(pg_url)
    with pytest.raises(SchemaBehind) as caught:
        await Store.open(pg_url)
    message = str(caught.value)
    assert "chief db upgrade" in message and "none (empty)" in message and migrate.head() in message
    assert tables(pg_url) == set()  # nothing was created behind the operator's back


async def test_store_open_after_upgrade_works_on_postgres(pg_url):
    migrate.upgrade(pg_url)
    store = await Store.open(pg_url)
    try:
        assert await store.list_executions() == []
    finally:
        await store.close()


async def test_store_open_with_migrate_upgrades_postgres(pg_url):
    store = await Store.open(pg_url, migrate=True)
    await store.close()
    assert migrate.current(pg_url) == migrate.head()


async def test_store_open_upgrades_sqlite_by_itself_and_creates_its_folder(tmp_path):
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'chief.db'}"
    store = await Store.open(url)
    try:
        assert store.url.startswith("sqlite+aiosqlite:///")
        assert migrate.current(url) == migrate.head()
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "deep" / "er" / "chief.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_store_open_with_migrate_false_refuses_an_empty_sqlite_file(sqlite_url):
    with pytest.raises(SchemaBehind, match="chief db upgrade"):
        await Store.open(sqlite_url, migrate=False)


async def test_store_open_refuses_a_schema_from_a_newer_chief(db_url):
    migrate.upgrade(db_url)
    engine = create_engine(sync_url(db_url))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = '9999'")
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match="revision 9999, which this Chief does not know"):
        await Store.open(db_url)
    assert not migrate.is_behind(db_url)


async def test_store_sqlite_pragmas_are_set_on_every_connection(sqlite_url):
    store = await Store.open(sqlite_url)
    try:
        def pragmas(conn):
            return {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                    for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")}

        got = await store._call("pragmas", pragmas, write=False)
    finally:
        await store.close()
    assert got == {"journal_mode": "wal", "busy_timeout": 10000, "foreign_keys": 1, "synchronous": 1}


async def test_store_tables_live_beside_langgraph_checkpointers(db_url):
    """LangGraph's savers create their tables in the same database; the names must not clash."""
    store = await Store.open(db_url, migrate=True)
    await store.close()
    conn_string = checkpointer_conn_string(db_url)
    if sqlite_path(db_url) is not None:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(conn_string) as saver:
            await saver.setup()
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

        assert conn_string.startswith("postgresql://")
        async with AsyncPostgresSaver.from_conn_string(conn_string) as saver:
            await saver.setup()
    found = tables(db_url)
    assert found >= CHIEF_TABLES and found & LANGGRAPH_TABLES
    assert not CHIEF_TABLES & LANGGRAPH_TABLES
    store = await Store.open(db_url)  # and the store still opens (schema current, nothing foreign in the way)
    await store.close()


def test_store_pg_fixture_gives_a_fresh_empty_database(pg_url, pg_database):
    name, libpq_url = pg_database
    assert pg_url.startswith("postgresql+psycopg://") and name in pg_url
    with psycopg.connect(libpq_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == name
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()[0] == 0
