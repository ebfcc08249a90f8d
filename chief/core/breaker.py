"""Circuit breaker per provider: opens at a share of errors over a sliding window, fails fast while open,
lets one probe through when the open period is over (half-open), closes on the probe's success.

With Redis the state lives in Redis (Lua scripts, atomic), so every worker sees the same circuit; without
it, in this process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .bus.keys import Keys
from .errors import CircuitOpen


@dataclass(frozen=True)
class BreakerPolicy:
    """When a circuit opens (`threshold` share of errors among at least `min_calls` calls in `window_s`)
    and how long it stays open (`open_s`) before a probe is let through."""

    window_s: float = 30.0
    threshold: float = 0.5
    min_calls: int = 4
    open_s: float = 10.0


# KEYS: state hash. ARGV: probe lease ms. -> {decision, until_ms}; decision: closed | probe | open | half_open
_ALLOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then return {'closed', 0} end
if state == 'open' then
  local until_ms = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
  if now < until_ms then return {'open', until_ms} end
  redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', now + tonumber(ARGV[1]))
  return {'probe', 0}
end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0')
if now >= probe_until then
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[1]))
  return {'probe', 0}
end
return {'half_open', probe_until}
"""

# KEYS: state hash, window zset. ARGV: ok (1|0), window ms, threshold, min calls, open ms, unique member.
_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ok = ARGV[1] == '1'
local open_ms = tonumber(ARGV[5])
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'half_open' then
  if ok then
    redis.call('DEL', KEYS[1], KEYS[2])
    return 'closed'
  end
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + open_ms)
  return 'open'
end
if state == 'open' then return 'open' end
local window = tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[6] .. (ok and ':ok' or ':err'))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('PEXPIRE', KEYS[2], window)
if ok then return 'closed' end
local all = redis.call('ZRANGE', KEYS[2], 0, -1)
local errors = 0
for _, m in ipairs(all) do
  if string.sub(m, -4) == ':err' then errors = errors + 1 end
end
if #all >= tonumber(ARGV[4]) and errors / #all >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + open_ms, 'errors', errors, 'calls', #all)
  redis.call('DEL', KEYS[2])
  return 'open'
end
return 'closed'
"""


class CircuitBreaker:
    """Per-provider circuits; `before_call` raises `CircuitOpen` while open, `record` feeds the window."""

    def __init__(self, policy: BreakerPolicy | None = None, *, redis: Any = None, keys: Keys | None = None):
        self.policy = policy or BreakerPolicy()
        self.redis = redis
        self.keys = keys or Keys()
        self._seq = 0
        self._local: dict[str, dict[str, Any]] = {}
        if redis is not None:
            self._allow = redis.register_script(_ALLOW)
            self._record = redis.register_script(_RECORD)

    def _probe_ms(self) -> int:
        # A probe that never reports (its worker died) frees the half-open slot after this long.
        return int(max(self.policy.open_s, 1.0) * 1000)

    async def before_call(self, provider: str) -> None:
        """Raise `CircuitOpen` if `provider`'s circuit is open (or half-open with a probe under way)."""
        if self.redis is not None:
            decision, until_ms = await self._allow(keys=[self.keys.breaker(provider)], args=[self._probe_ms()])
            decision = decision.decode() if isinstance(decision, bytes) else decision
            until = int(until_ms) / 1000
        else:
            decision, until = self._local_allow(provider)
        if decision in ("open", "half_open"):
            wait = max(until - time.time(), 0.0)
            raise CircuitOpen(
                f"provider '{provider}' is failing: its circuit breaker is open "
                f"({self.policy.threshold:.0%}+ errors in {self.policy.window_s:g} s); calls fail fast for "
                f"{wait:.0f} s more, then one probe is let through", retryable=True)

    async def record(self, provider: str, ok: bool) -> str:
        """Count one call's outcome; returns the circuit's state after it (closed | open)."""
        self._seq += 1
        if self.redis is not None:
            p = self.policy
            state = await self._record(
                keys=[self.keys.breaker(provider), self.keys.breaker_window(provider)],
                args=[1 if ok else 0, int(p.window_s * 1000), p.threshold, p.min_calls, int(p.open_s * 1000),
                      f"{id(self)}:{time.time_ns()}:{self._seq}"])
            return state.decode() if isinstance(state, bytes) else state
        return self._local_record(provider, ok)

    async def state(self, provider: str) -> str:
        """closed | open | half_open."""
        if self.redis is not None:
            raw = await self.redis.hget(self.keys.breaker(provider), "state")
            return raw.decode() if raw else "closed"
        return self._local.get(provider, {}).get("state", "closed")

    # -- in-process circuits (no Redis): the same rules as the scripts above ------------------------
    def _local_allow(self, provider: str) -> tuple[str, float]:
        c = self._local.get(provider)
        now = time.time()
        if c is None or c["state"] == "closed":
            return "closed", 0.0
        if c["state"] == "open":
            if now < c["until"]:
                return "open", c["until"]
            c.update(state="half_open", probe_until=now + self._probe_ms() / 1000)
            return "probe", 0.0
        if now >= c["probe_until"]:
            c["probe_until"] = now + self._probe_ms() / 1000
            return "probe", 0.0
        return "half_open", c["probe_until"]

    def _local_record(self, provider: str, ok: bool) -> str:
        p = self.policy
        now = time.time()
        c = self._local.setdefault(provider, {"state": "closed", "window": []})
        if c["state"] == "half_open":
            if ok:
                self._local[provider] = {"state": "closed", "window": []}
                return "closed"
            c.update(state="open", until=now + p.open_s)
            return "open"
        if c["state"] == "open":
            return "open"
        window = [(t, good) for t, good in c["window"] if t > now - p.window_s] + [(now, ok)]
        c["window"] = window
        errors = sum(1 for _, good in window if not good)
        if not ok and len(window) >= p.min_calls and errors / len(window) >= p.threshold:
            c.update(state="open", until=now + p.open_s, window=[])
            return "open"
        return "closed"
