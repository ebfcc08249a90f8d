"""Programmatic Alembic: the schema is created and upgraded by these (`chief db upgrade`, `Store.open`).

The migration scripts live in the package (`chief/core/store/migrations`); no `alembic.ini` is needed.
The plain functions are synchronous (they open a short-lived sync engine); the `a*` ones do the same
through an async engine and `run_sync`, for callers inside an event loop. The `*_on` ones work on a
sync connection the caller already has (inside `AsyncConnection.run_sync`).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from ..errors import StoreError
from .models import VERSION_TABLE
from .urls import mask_password, mask_url, normalize_url, sqlite_path, sync_url

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Serialises concurrent upgrades of one PostgreSQL database (any constant of our own).
_PG_UPGRADE_LOCK = 0x43686965  # "Chie"

SchemaState = Literal["current", "behind", "unknown"]


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic `Config` for Chief's migrations, bound to `connection` (preferred) or `url`."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if url is not None:
        # ConfigParser interpolation treats "%" specially (URL-escaped passwords contain it).
        cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The revision this version of Chief needs."""
    rev = _script().get_current_head()
    if rev is None:  # pragma: no cover - the package always ships migrations
        raise StoreError(f"no migrations found in {MIGRATIONS_DIR}")
    return rev


def history() -> list[tuple[str, str]]:
    """Every revision as (revision, message), oldest first."""
    revs = list(_script().walk_revisions())
    revs.reverse()
    return [(r.revision, (r.doc or "").strip()) for r in revs]


def schema_state(revision: str | None) -> SchemaState:
    """Whether a database at `revision` is current, behind (upgrade it) or unknown (a newer Chief's)."""
    if revision == head():
        return "current"
    if revision is None:
        return "behind"
    known = {r for r, _ in history()}
    return "behind" if revision in known else "unknown"


# -- on a connection the caller holds --------------------------------------------------------------


def current_on(connection: Connection) -> str | None:
    """The revision of the database behind `connection` (None: never migrated)."""
    ctx = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return ctx.get_current_revision()


def upgrade_on(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database behind `connection` (in its transaction) to `revision`."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK})
    command.upgrade(alembic_config(connection), revision)


def downgrade_on(connection: Connection, revision: str) -> None:
    """Downgrade the database behind `connection` to `revision` ("base" removes every table)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_UPGRADE_LOCK})
    command.downgrade(alembic_config(connection), revision)


def _failure(what: str, url: str, exc: BaseException) -> StoreError:
    detail = getattr(exc, "orig", None) or exc
    message = " ".join(str(detail).split())[:500]
    return StoreError(mask_password(f"{what} of the database at {mask_url(url)} failed: {message}"))


# -- synchronous ---------------------------------------------------------------------------------


def _sync_engine(url: str):
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    return create_engine(sync_url(url), poolclass=pool.NullPool)


def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision` (default: the newest)."""
    try:
        engine = _sync_engine(url)
        try:
            with engine.begin() as conn:
                upgrade_on(conn, revision)
        finally:
            engine.dispose()
    except StoreError:
        raise
    except Exception as exc:
        raise _failure("upgrade", url, exc) from exc


def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at `url` to `revision`."""
    try:
        engine = _sync_engine(url)
        try:
            with engine.begin() as conn:
                downgrade_on(conn, revision)
        finally:
            engine.dispose()
    except StoreError:
        raise
    except Exception as exc:
        raise _failure("downgrade", url, exc) from exc


def current(url: str) -> str | None:
    """The revision of the database at `url`; None if it was never migrated (or the file does not exist)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None
    try:
        engine = _sync_engine(url)
        try:
            with engine.connect() as conn:
                return current_on(conn)
        finally:
            engine.dispose()
    except Exception as exc:
        raise _failure("reading the schema revision", url, exc) from exc


def is_behind(url: str) -> bool:
    """Whether the database at `url` needs `chief db upgrade` (True also for an empty database)."""
    return schema_state(current(url)) == "behind"


# -- asynchronous --------------------------------------------------------------------------------


async def _arun(url: str, what: str, fn, *, begin: bool):  # type: ignore[no-untyped-def]
    path = sqlite_path(url)
    try:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(normalize_url(url), poolclass=pool.NullPool)
        try:
            if begin:
                async with engine.begin() as conn:
                    return await conn.run_sync(fn)
            async with engine.connect() as conn:
                return await conn.run_sync(fn)
        finally:
            await engine.dispose()
    except StoreError:
        raise
    except Exception as exc:
        raise _failure(what, url, exc) from exc


async def aupgrade(url: str, revision: str = "head") -> None:
    """`upgrade()` for async callers."""
    await _arun(url, "upgrade", lambda conn: upgrade_on(conn, revision), begin=True)


async def adowngrade(url: str, revision: str) -> None:
    """`downgrade()` for async callers."""
    await _arun(url, "downgrade", lambda conn: downgrade_on(conn, revision), begin=True)


async def acurrent(url: str) -> str | None:
    """`current()` for async callers."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None
    return await _arun(url, "reading the schema revision", current_on, begin=False)


async def ais_behind(url: str) -> bool:
    """`is_behind()` for async callers."""
    return schema_state(await acurrent(url)) == "behind"


__all__ = [
    "MIGRATIONS_DIR",
    "acurrent",
    "adowngrade",
    "ais_behind",
    "alembic_config",
    "aupgrade",
    "current",
    "current_on",
    "downgrade",
    "downgrade_on",
    "head",
    "history",
    "is_behind",
    "schema_state",
    "upgrade",
    "upgrade_on",
]
