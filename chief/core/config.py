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
    """

    home: Path = field(default_factory=lambda: Path(os.environ.get("CHIEF_HOME") or ".chief"))
    database_url: str | None = field(default_factory=lambda: os.environ.get("CHIEF_DATABASE_URL") or None)
    redis_url: str | None = field(default_factory=lambda: os.environ.get("CHIEF_REDIS_URL") or None)
    provider: str = field(default_factory=lambda: os.environ.get("CHIEF_PROVIDER") or "offline")
    model: str | None = field(default_factory=lambda: os.environ.get("CHIEF_MODEL") or None)
    lease_s: float = field(default_factory=lambda: _env_float("CHIEF_LEASE_S", 300.0))

    def resolved_database_url(self) -> str:
        """The database URL in use: the configured one, or the embedded SQLite file under home."""
        if self.database_url:
            return self.database_url
        self.home.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{(self.home / 'chief.db').resolve()}"
