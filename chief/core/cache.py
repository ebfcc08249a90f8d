"""Result cache: a step's output keyed by (agent, provider, model, rendered prompt), kept for a TTL.

In Redis when Redis is configured (shared by every worker), else in this process. A step opts out with
`cache: false`; a hit is recorded on the step (`cached`) and in its `step.succeeded` event.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from .bus.keys import Keys


def cache_key(agent: str, provider: str | None, model: str | None, prompt: str) -> str:
    """The digest a result is cached under."""
    raw = orjson.dumps([agent, provider or "", model or "", prompt])
    return hashlib.sha256(raw).hexdigest()


class ResultCache:
    """get/set of JSON-able step results by digest, with a TTL (seconds)."""

    def __init__(self, ttl_s: float = 3600.0, *, redis: Any = None, keys: Keys | None = None):
        self.ttl_s = ttl_s
        self.redis = redis
        self.keys = keys or Keys()
        self._local: dict[str, tuple[float, bytes]] = {}

    async def get(self, digest: str) -> dict[str, Any] | None:
        """The cached result, or None."""
        if self.redis is not None:
            raw = await self.redis.get(self.keys.cache(digest))
        else:
            expires, raw = self._local.get(digest, (0.0, None))
            if raw is not None and expires < time.monotonic():
                self._local.pop(digest, None)
                raw = None
        return orjson.loads(raw) if raw else None

    async def set(self, digest: str, value: dict[str, Any]) -> bool:
        """Keep `value` for the TTL; False when it is not JSON-able (then it is simply not cached)."""
        try:
            raw = orjson.dumps(value)
        except TypeError:
            return False
        if self.redis is not None:
            await self.redis.set(self.keys.cache(digest), raw, px=max(int(self.ttl_s * 1000), 1))
        else:
            self._local[digest] = (time.monotonic() + self.ttl_s, raw)
        return True
