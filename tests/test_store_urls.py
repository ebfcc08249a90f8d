"""Database URLs: the accepted forms, the async driver URLs, what LangGraph's savers need, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from chief.core.errors import StoreError
from chief.core.store.urls import (
    checkpointer_conn_string,
    dialect_name,
    mask_password,
    mask_url,
    normalize_url,
    sqlite_path,
    sync_url,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///tmp/x/chief.db", "sqlite+aiosqlite:///tmp/x/chief.db"),
        ("sqlite:////abs/chief.db", "sqlite+aiosqlite:////abs/chief.db"),
        ("sqlite+aiosqlite:///rel.db", "sqlite+aiosqlite:///rel.db"),
        ("postgresql://u:p@h:5433/db", "postgresql+psycopg://u:p@h:5433/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql:///db?host=/var/run/postgresql", "postgresql+psycopg:///db?host=%2Fvar%2Frun%2Fpostgresql"),
    ],
)
def test_store_urls_normalise_to_async_drivers(given, expected):
    assert normalize_url(given) == expected
    assert normalize_url(normalize_url(given)) == expected


def test_store_urls_reject_other_databases():
    with pytest.raises(StoreError, match="unsupported database"):
        normalize_url("mysql://u@h/db")
    with pytest.raises(StoreError, match="not a database URL"):
        normalize_url("just words")


def test_store_urls_sync_forms():
    assert sync_url("sqlite+aiosqlite:////a/b.db") == "sqlite:////a/b.db"
    assert sync_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert dialect_name("postgres://u@h/db") == "postgresql"
    assert dialect_name("sqlite:///x.db") == "sqlite"


def test_store_urls_sqlite_path():
    assert sqlite_path("sqlite+aiosqlite:////a/b/chief.db") == Path("/a/b/chief.db")
    assert sqlite_path("sqlite:///rel/chief.db") == Path("rel/chief.db")
    assert sqlite_path("sqlite://") is None
    assert sqlite_path("sqlite:///:memory:") is None
    assert sqlite_path("postgresql://u@h/db") is None


def test_store_urls_checkpointer_conn_string():
    assert checkpointer_conn_string("sqlite+aiosqlite:////a/chief.db") == "/a/chief.db"
    assert checkpointer_conn_string("sqlite://") == ":memory:"
    assert checkpointer_conn_string("postgresql+psycopg://u:p%40ss@h:5432/db") == "postgresql://u:p%40ss@h:5432/db"
    assert checkpointer_conn_string("postgres://u@h/db") == "postgresql://u@h/db"


def test_store_urls_mask_passwords():
    assert mask_url("postgresql+psycopg://u:secret@h/db") == "postgresql+psycopg://u:***@h/db"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert mask_url("postgresql://u:secret@h:notaport/db") == "postgresql://u:***@h:notaport/db"
    assert mask_url("not a url://u:secret@h/db") == "not a url://u:***@h/db"
    text = "connection to postgresql://chief:hunter2@db:5432/x failed"
    assert mask_password(text) == "connection to postgresql://chief:***@db:5432/x failed"
