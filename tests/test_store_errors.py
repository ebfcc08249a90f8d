"""Failures surface as StoreError with a message that says what failed, where, and never the password."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from chief.core.errors import StoreError
from chief.core.store import Store, migrate

SECRET = "s3cr3t-pw"


async def test_store_open_on_a_closed_port_is_a_store_error_without_the_password():
    url = f"postgresql+psycopg://chief:{SECRET}@127.0.0.1:1/chief?connect_timeout=2"
    with pytest.raises(StoreError) as caught:
        await Store.open(url)
    message = str(caught.value)
    assert "reading the schema revision failed" in message and "127.0.0.1:1" in message
    assert SECRET not in message and "***" in message
    assert not isinstance(caught.value.__cause__, StoreError)  # the driver's error is kept as the cause


def test_store_migrate_on_a_closed_port_is_a_store_error_without_the_password():
    url = f"postgresql://chief:{SECRET}@127.0.0.1:1/chief?connect_timeout=2"
    for call in (lambda: migrate.upgrade(url), lambda: migrate.current(url), lambda: migrate.is_behind(url)):
        with pytest.raises(StoreError) as caught:
            call()
        assert SECRET not in str(caught.value) and "127.0.0.1:1" in str(caught.value)


async def test_store_calls_fail_with_store_error_when_the_database_is_dropped(pg_admin_url, pg_database):
    name, libpq_url = pg_database
    store = await Store.open(libpq_url, migrate=True)
    try:
        assert await store.list_executions() == []
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        with pytest.raises(StoreError, match="listing executions failed on postgresql"):
            await store.list_executions()
        with pytest.raises(StoreError, match="recording failed"):
            await store.record(execution={"id": "x", "status": "running"})
        with pytest.raises(StoreError, match="reading the ledger"):
            await store.final_step("x", "a")
    finally:
        await store.close()


async def test_store_recovers_after_its_connections_are_killed(pg_admin_url, pg_database):
    name, libpq_url = pg_database
    store = await Store.open(libpq_url, migrate=True)
    try:
        assert await store.list_executions() == []
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        for _ in range(3):  # at most the calls on a dead connection fail, and only with StoreError
            try:
                await store.list_executions()
            except StoreError:
                continue
        assert await store.list_executions() == []
    finally:
        await store.close()


async def test_store_sqlite_file_that_cannot_be_created_is_a_store_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="a-file"):
        await Store.open(f"sqlite:///{blocker / 'chief.db'}")


async def test_store_sqlite_file_that_is_not_a_database_is_a_store_error(tmp_path):
    bad = tmp_path / "chief.db"
    bad.write_bytes(b"this is not a sqlite database, not at all" * 100)
    with pytest.raises(StoreError, match="file is not a database"):
        await Store.open(f"sqlite:///{bad}")


async def test_store_closed_store_says_so(sqlite_url):
    store = await Store.open(sqlite_url)
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.list_executions()
    await store.close()  # twice is fine


def test_store_unsupported_database_is_a_store_error():
    with pytest.raises(StoreError, match="unsupported database 'mysql'"):
        Store(f"mysql://root:{SECRET}@localhost/chief")
    try:
        Store(f"mysql://root:{SECRET}@localhost/chief")
    except StoreError as exc:
        assert SECRET not in str(exc)
