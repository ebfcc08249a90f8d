"""Database URLs: normalise to the async drivers, derive the sync and checkpointer forms, mask passwords."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import StoreError

SQLITE_ASYNC = "sqlite+aiosqlite"
POSTGRES_ASYNC = "postgresql+psycopg"

_SQLITE_SCHEMES = {"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"}
_POSTGRES_SCHEMES = {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg_async"}
# Whatever follows "user:" up to the "@" of the host part (for strings SQLAlchemy cannot parse).
_PASSWORD_RE = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")


def mask_password(text: str) -> str:
    """`text` with the password of any URL in it replaced by `***`."""
    return _PASSWORD_RE.sub(r"\1***\3", text)


def _parse(url: str | URL) -> URL:
    if isinstance(url, URL):
        return url
    raw = url.strip()
    if raw.startswith("postgres://"):  # Heroku-style scheme SQLAlchemy does not know
        raw = "postgresql://" + raw[len("postgres://") :]
    try:
        return make_url(raw)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {mask_password(raw)!r}") from exc


def normalize_url(url: str | URL) -> str:
    """The async SQLAlchemy URL for `url`: `sqlite+aiosqlite://...` or `postgresql+psycopg://...`.

    Accepts `sqlite:///path`, `sqlite+aiosqlite:///path`, `postgresql://...`, `postgresql+psycopg://...`
    and `postgres://...`. Raises StoreError for any other database.
    """
    parsed = _parse(url)
    if parsed.drivername in _SQLITE_SCHEMES:
        parsed = parsed.set(drivername=SQLITE_ASYNC)
    elif parsed.drivername in _POSTGRES_SCHEMES:
        parsed = parsed.set(drivername=POSTGRES_ASYNC)
    else:
        raise StoreError(
            f"unsupported database {parsed.drivername!r} in {mask_url(parsed)}: "
            "use sqlite:///path or postgresql+psycopg://user@host/db"
        )
    return parsed.render_as_string(hide_password=False)


def sync_url(url: str | URL) -> str:
    """The synchronous SQLAlchemy URL for `url` (`sqlite:///...`; psycopg 3 serves both modes)."""
    parsed = _parse(normalize_url(url))
    if parsed.drivername == SQLITE_ASYNC:
        parsed = parsed.set(drivername="sqlite")
    return parsed.render_as_string(hide_password=False)


def mask_url(url: str | URL) -> str:
    """`url` with its password replaced by `***`, safe to print."""
    try:
        parsed = url if isinstance(url, URL) else make_url(str(url).strip())
        return parsed.render_as_string(hide_password=True)
    except Exception:  # never fail while building an error message
        return mask_password(str(url))


def dialect_name(url: str | URL) -> str:
    """`"sqlite"` or `"postgresql"`."""
    return _parse(normalize_url(url)).get_backend_name()


def is_sqlite(url: str | URL) -> bool:
    """Whether `url` names a SQLite database."""
    return dialect_name(url) == "sqlite"


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL; None for other databases and for in-memory SQLite."""
    parsed = _parse(normalize_url(url))
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database)


def checkpointer_conn_string(url: str | URL) -> str:
    """What LangGraph's savers take: the file path for SQLite, a libpq `postgresql://...` URL otherwise."""
    parsed = _parse(normalize_url(url))
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        return str(path) if path is not None else ":memory:"
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)
