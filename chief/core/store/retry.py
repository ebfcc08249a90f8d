"""Riding out a database that drops its connections or restarts: retries of transient errors, bounded.

Used by the store (every call) and by the PostgreSQL checkpointer, so the engine and the worker do not
each grow their own retry loop. Past the bound the call raises `StoreUnavailable`: the execution pauses
with that message and nothing recorded is lost (see `Engine._drive`, `chief recover`).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from ..errors import StoreUnavailable

T = TypeVar("T")

DEFAULT_RETRY_S = 30.0  # how long a call keeps trying while the database is unreachable

# Connection failures that waiting does not cure: a wrong name or password, a dropped database.
PERMANENT = ("does not exist", "password authentication failed", "no pg_hba.conf entry",
             "authentication failed", "invalid dsn", "invalid connection option")


def retry_bound_s() -> float:
    """`CHIEF_DB_RETRY_S`: seconds a database call keeps retrying transient errors (0 = never retry)."""
    raw = os.environ.get("CHIEF_DB_RETRY_S")
    return float(raw) if raw not in (None, "") else DEFAULT_RETRY_S


def is_transient(exc: BaseException) -> bool:
    """A lost or refused connection (server restarted, backend terminated, pool timeout): worth retrying.

    Constraint violations, syntax errors and the like are not: retrying them changes nothing.
    """
    text = str(getattr(exc, "orig", None) or exc).lower()  # the driver's message, not the statement's data
    if any(marker in text for marker in PERMANENT):
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if getattr(current, "connection_invalidated", False):  # SQLAlchemy saw the connection die
            return True
        module = type(current).__module__
        name = type(current).__name__
        if module.startswith(("psycopg", "psycopg_pool")):
            try:
                import psycopg

                if isinstance(current, psycopg.OperationalError | psycopg.InterfaceError):
                    return True
            except ImportError:  # pragma: no cover - psycopg is installed wherever PostgreSQL is used
                pass
        if name in ("PoolTimeout", "TooManyConnections", "ConnectionTimeout"):
            return True
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


async def with_retries(what: str, call: Callable[[], Awaitable[T]], *, bound_s: float | None = None,
                       describe: Callable[[BaseException], str] | None = None) -> T:
    """Await `call()`; on a transient error try again (exponential backoff with jitter) for `bound_s`.

    Raises `StoreUnavailable` (naming `what`) once the bound is spent; other errors pass through at once.
    """
    bound = retry_bound_s() if bound_s is None else bound_s
    if bound <= 0:
        return await call()
    try:  # the usual case costs one call and no retry machinery
        return await call()
    except Exception as exc:
        if not is_transient(exc):
            raise
    retrying = AsyncRetrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_delay(bound),
        wait=wait_exponential_jitter(initial=0.05, max=2.0, jitter=0.1),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await call()
    except Exception as exc:
        if not is_transient(exc):
            raise
        detail = describe(exc) if describe is not None else " ".join(str(exc).split())[:300]
        raise StoreUnavailable(
            f"{what}: the database was unreachable for {bound:g}s ({detail}); nothing recorded was lost — "
            "once it is back, `chief recover` continues unfinished executions"
        ) from exc
    raise AssertionError("unreachable")  # pragma: no cover
