"""Settings from the environment, with embedded defaults that need no service."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


@dataclass
class Settings:
    """Where Chief keeps its data and which services it uses.

    - `CHIEF_HOME` (default `./.chief`): the embedded SQLite file and the file store.
    - `CHIEF_DATABASE_URL`: e.g. `postgresql+psycopg://127.0.0.1/chief`; default SQLite under home.
    - `CHIEF_REDIS_URL`: the Redis bus; unset means the in-process bus.
    - `CHIEF_PROVIDER` / `CHIEF_MODEL`: the global default provider (default `offline`) and model.
    - `CHIEF_LEASE_S`: how long a dispatched step may go without its result before it is sent again.
    - `CHIEF_REDIS_PREFIX` (default `chief`): every Redis key is under it. `CHIEF_CLAIM_S` (30): a task
      left pending this long by a worker that stopped is reclaimed by another. `CHIEF_EMBEDDED_WORKERS`
      (1): workers an orchestrator (`chief run`, chat) runs itself when Redis is set; 0 leaves the work to
      `chief worker` processes. `CHIEF_BREAKER_WINDOW_S` / `_THRESHOLD` / `_MIN_CALLS` / `_OPEN_S`: the
      circuit breaker per provider. `CHIEF_CACHE_TTL_S`: the result cache's TTL (default 3600 with Redis,
      off without; 0 turns it off).
    """

    home: Path = field(default_factory=lambda: Path(os.environ.get("CHIEF_HOME") or ".chief"))
    database_url: str | None = field(default_factory=lambda: os.environ.get("CHIEF_DATABASE_URL") or None)
    redis_url: str | None = field(default_factory=lambda: os.environ.get("CHIEF_REDIS_URL") or None)
    provider: str = field(default_factory=lambda: os.environ.get("CHIEF_PROVIDER") or "offline")
    model: str | None = field(default_factory=lambda: os.environ.get("CHIEF_MODEL") or None)
    lease_s: float = field(default_factory=lambda: _env_float("CHIEF_LEASE_S", 300.0))
    # Redis bus and distributed workers (docs: README, "Distributed: Redis and workers").
    redis_prefix: str = field(default_factory=lambda: os.environ.get("CHIEF_REDIS_PREFIX") or "chief")
    claim_s: float = field(default_factory=lambda: _env_float("CHIEF_CLAIM_S", 30.0))
    embedded_workers: int = field(default_factory=lambda: int(_env_float("CHIEF_EMBEDDED_WORKERS", 1)))
    breaker_window_s: float = field(default_factory=lambda: _env_float("CHIEF_BREAKER_WINDOW_S", 30.0))
    breaker_threshold: float = field(default_factory=lambda: _env_float("CHIEF_BREAKER_THRESHOLD", 0.5))
    breaker_min_calls: int = field(default_factory=lambda: int(_env_float("CHIEF_BREAKER_MIN_CALLS", 4)))
    breaker_open_s: float = field(default_factory=lambda: _env_float("CHIEF_BREAKER_OPEN_S", 10.0))
    cache_ttl_s: float | None = field(default_factory=lambda: _env_float("CHIEF_CACHE_TTL_S", -1.0)
                                      if os.environ.get("CHIEF_CACHE_TTL_S") else None)

    def resolved_database_url(self) -> str:
        """The database URL in use: the configured one, or the embedded SQLite file under home."""
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(self.home / 'chief.db').resolve()}"
