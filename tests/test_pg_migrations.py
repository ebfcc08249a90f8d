"""Migrations on PostgreSQL (and SQLite): up from every earlier revision, with data kept; a schema behind."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, inspect, text

from chief.core.errors import SchemaBehind
from chief.core.store import Store, migrate
from chief.core.store.urls import sync_url

REVISIONS = [rev for rev, _ in migrate.history()]


def columns(url: str) -> dict[str, set[str]]:
    engine = create_engine(sync_url(url))
    try:
        found = inspect(engine)
        return {t: {c["name"] for c in found.get_columns(t)} for t in found.get_table_names()}
    finally:
        engine.dispose()


@pytest.mark.parametrize("start", ["base", *REVISIONS])
def test_pg_migrations_upgrade_to_head_from_every_revision(pg_url, sqlite_url, start):
    for url in (pg_url, sqlite_url):
        if start != "base":
            migrate.upgrade(url, start)
            assert migrate.current(url) == start
        migrate.upgrade(url)
        assert migrate.current(url) == migrate.head()
        assert not migrate.is_behind(url)
    assert columns(pg_url) == columns(sqlite_url)


def test_pg_migrations_keep_the_data_of_the_first_revision(pg_url):
    migrate.upgrade(pg_url, REVISIONS[0])
    engine = create_engine(sync_url(pg_url))
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO workflows (id, name, version, content_hash, definition, created_at) "
                              "VALUES ('w1', 'wf', '1', 'h1', '{}', now())"))
            conn.execute(text("INSERT INTO executions (id, workflow_id, workflow_name, status, inputs, created_at) "
                              "VALUES ('e1', 'w1', 'wf', 'running', '{}', now())"))
        migrate.upgrade(pg_url)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT status FROM executions WHERE id = 'e1'")).scalar_one() == "running"
    finally:
        engine.dispose()


async def test_pg_store_refuses_a_schema_behind_with_the_command_to_run(pg_url):
    migrate.upgrade(pg_url, REVISIONS[0])
    with pytest.raises(SchemaBehind, match="chief db upgrade"):
        await Store.open(pg_url)
    migrate.upgrade(pg_url)
    store = await Store.open(pg_url)
    await store.close()


def test_pg_migrations_down_one_revision_and_up_again(pg_url):
    migrate.upgrade(pg_url)
    assert len(REVISIONS) >= 2
    migrate.downgrade(pg_url, REVISIONS[-2])
    assert migrate.current(pg_url) == REVISIONS[-2]
    migrate.upgrade(pg_url)
    assert migrate.current(pg_url) == migrate.head()
