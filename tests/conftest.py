"""Shared fixtures: a fresh database per test on the real PostgreSQL, a SQLite file, an opened `Store`.

PostgreSQL is required: when it cannot be reached the fixtures FAIL (never skip). Set
`CHIEF_TEST_POSTGRES` to a libpq URL of a role that may create databases to use another server;
by default the local server is tried over TCP (user `postgres`) and over the socket.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from chief.core.store import Store
from chief.core.store.urls import mask_url

PG_CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/postgres",
    "postgresql:///postgres?host=/var/run/postgresql",
    "postgresql://postgres@/postgres?host=/var/run/postgresql",
)
PG_START_HINT = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """A libpq URL of the test PostgreSQL server with the right to create databases (fails if unreachable)."""
    configured = os.environ.get("CHIEF_TEST_POSTGRES")
    candidates = (configured,) if configured else PG_CANDIDATES
    problems = []
    for candidate in candidates:
        try:
            with psycopg.connect(candidate, connect_timeout=5, autocommit=True) as conn:
                conn.execute("SELECT 1")
            return candidate
        except psycopg.Error as exc:
            problems.append(f"  {mask_url(candidate)}: {' '.join(str(exc).split())}")
    pytest.fail(
        "PostgreSQL is required for these tests and could not be reached:\n"
        + "\n".join(problems)
        + f"\nStart it (`{PG_START_HINT}`) or set CHIEF_TEST_POSTGRES to a libpq URL.",
        pytrace=False,
    )


def _drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, connect_timeout=5, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def pg_database(pg_admin_url: str) -> Iterator[tuple[str, str]]:
    """(name, libpq URL) of a fresh, empty PostgreSQL database for this test; dropped afterwards."""
    name = f"chief_test_{secrets.token_hex(6)}"
    try:
        with psycopg.connect(pg_admin_url, connect_timeout=5, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        pytest.fail(f"cannot create test database {name} on {mask_url(pg_admin_url)}: {exc}", pytrace=False)
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield name, url
    finally:
        _drop_database(pg_admin_url, name)


@pytest.fixture
def pg_url(pg_database: tuple[str, str]) -> str:
    """`postgresql+psycopg://...` URL of a fresh, empty PostgreSQL database (no schema yet)."""
    return make_url(pg_database[1]).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """`sqlite+aiosqlite:///...` URL of a database file under the test's tmp_path (not created yet)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'chief.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL, once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """An opened `Store` on `db_url`, schema upgraded; closed afterwards."""
    opened = await Store.open(db_url, migrate=True)
    try:
        yield opened
    finally:
        await opened.close()
