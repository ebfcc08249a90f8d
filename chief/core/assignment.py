"""Smart assignment: which agent runs a step that names a `capability` (not an `agent`).

One `Assigner` per orchestrator process (the `Engine` owns it). It keeps cheap in-memory metrics per
agent, fed by every step result the orchestrator receives (`StepRunner.dispatch`) and seeded at
`Engine.open` from the ledger (one query for all the agents that share a capability):

- a window of the last `window` outcomes (ok / failed) and durations;
- the steps in flight (dispatched, no result yet): the load this process puts on the agent;
- the circuit breaker of the provider the agent would call: read in memory for the embedded breaker;
  with Redis (shared breaker) from a snapshot refreshed in the background at most every
  `BREAKER_REFRESH_S`, so no dispatch waits on Redis.

Scoring rule (lower is better), among the agents that declare the capability:

1. An agent whose provider's circuit is open (or half-open with a probe under way) is left out, unless
   every candidate's is: then all are candidates again (the step fails fast or probes, as it would).
2. `score = ERROR_WEIGHT * errors / (outcomes + 1)`  (smoothed error rate: one failure out of one is 0.5)
   `      + LATENCY_WEIGHT * min(1, p50 / best_p50 - 1)`  (0 within `LATENCY_FLOOR_MS` of the fastest
   agent's p50, 1 at twice as slow or worse; 0 with no duration known)
   `      + LOAD_WEIGHT * in_flight / (in_flight_of_all_candidates + 1)`.
   Errors weigh most: a failing agent loses to a slow or busy one.
3. Candidates within `TIE` of the best score are equals: they take turns (round robin per capability,
   starting with the first registered), so equal agents share the work.

An explicit `agent:` is never overridden. None of this touches the database or Redis per dispatch.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

WINDOW = 50  # outcomes and durations kept per agent
ERROR_WEIGHT = 2.0
LATENCY_WEIGHT = 1.0
LOAD_WEIGHT = 1.0
LATENCY_FLOOR_MS = 5.0  # p50 differences below this are noise, not a slower agent
TIE = 0.05  # scores this close to the best are equals (round robin among them)
BREAKER_REFRESH_S = 1.0  # how stale the Redis breaker snapshot may get


@dataclass
class AgentMetrics:
    """What the assigner knows about one agent."""

    outcomes: deque[bool]
    durations: deque[float]
    in_flight: int = 0

    @classmethod
    def empty(cls, window: int = WINDOW) -> AgentMetrics:
        return cls(deque(maxlen=window), deque(maxlen=window))

    @property
    def errors(self) -> int:
        return sum(1 for ok in self.outcomes if not ok)

    @property
    def error_rate(self) -> float:
        """Failed share of the recent outcomes (0 with none)."""
        return self.errors / len(self.outcomes) if self.outcomes else 0.0

    @property
    def p50_ms(self) -> float | None:
        """Median duration of the recent successful steps (None with none)."""
        return statistics.median(self.durations) if self.durations else None


@dataclass(frozen=True)
class Candidate:
    """One agent's standing for a capability: its score and why (for `explain` and tests)."""

    name: str
    score: float
    error_rate: float
    p50_ms: float | None
    in_flight: int
    breaker_open: bool


@dataclass
class Assigner:
    """Chooses the agent of a capability step (see the module docstring); one per orchestrator process."""

    registry: Any
    breaker: Any = None  # the workers' `CircuitBreaker` (local or Redis-backed), or None
    default_provider: str | None = None  # the provider an agent with none of its own calls
    window: int = WINDOW
    metrics: dict[str, AgentMetrics] = field(default_factory=dict)
    _turns: dict[str, int] = field(default_factory=dict)
    _remote_open: dict[str, float] = field(default_factory=dict)  # provider -> open until (epoch s), Redis
    _remote_checked: float = 0.0
    _wanted: set[str] = field(default_factory=set)  # providers asked about: the next refresh reads them
    _refresh: asyncio.Task[None] | None = None

    # -- metrics --------------------------------------------------------------------------------------
    def _of(self, agent: str) -> AgentMetrics:
        found = self.metrics.get(agent)
        if found is None:
            found = self.metrics[agent] = AgentMetrics.empty(self.window)
        return found

    def begin(self, agent: str) -> None:
        """A step was dispatched to `agent` (its result is not back yet)."""
        self._of(agent).in_flight += 1

    def end(self, agent: str, result: Any = None) -> None:
        """The step dispatched to `agent` is over; `result` (a `StepResult` / `StepRecord`) is its outcome."""
        metrics = self._of(agent)
        metrics.in_flight = max(metrics.in_flight - 1, 0)
        if result is not None and getattr(result, "status", None) in ("succeeded", "failed"):
            self.record(agent, result.status == "succeeded",
                        None if getattr(result, "cached", False) else getattr(result, "duration_ms", None))

    def record(self, agent: str, ok: bool, duration_ms: float | None = None) -> None:
        """Count one outcome of `agent` (the duration only of a success: a failure's says little)."""
        metrics = self._of(agent)
        metrics.outcomes.append(ok)
        if ok and duration_ms is not None:
            metrics.durations.append(float(duration_ms))

    def seed(self, rows: Iterable[tuple[str, bool, float | None]]) -> None:
        """Recorded outcomes `(agent, ok, duration_ms)`, oldest first (what `load` reads from the ledger)."""
        for agent, ok, duration in rows:
            self.record(agent, ok, duration)

    def shared_agents(self) -> list[str]:
        """Agents that share a capability with another agent: the only ones a choice is ever made between."""
        names: set[str] = set()
        for capability in self.registry.capabilities():
            found = self.registry.agents_with_capability(capability)
            if len(found) > 1:
                names.update(a.name for a in found)
        return sorted(names)

    async def load(self, store: Any) -> None:
        """Seed the windows from the ledger: one query for every agent that shares a capability."""
        from .store.metrics import recent_outcomes

        agents = self.shared_agents()
        if agents:
            self.seed(await recent_outcomes(store, agents, self.window))

    # -- choosing -------------------------------------------------------------------------------------
    async def choose(self, name: str | None, capability: str | None, *, provider: str | None = None) -> Any:
        """The agent a step runs on: `name` if given (never overridden), else the best of `capability`.

        `provider` is the step's own provider, if it names one (its breaker is then the one that counts).
        Raises `UnknownAgent` as `Registry.resolve_agent` does.
        """
        if name or not capability:
            return self.registry.resolve_agent(name, capability)
        found = self.registry.agents_with_capability(capability)
        if len(found) <= 1:
            return self.registry.resolve_agent(None, capability)
        ranked = await self.rank(capability, found, provider=provider)
        best = ranked[0].score
        equals = [c.name for c in ranked if c.score <= best + TIE]
        if len(equals) == 1:
            return self.registry.agent(equals[0])
        order = [a.name for a in found if a.name in equals]  # registration order: turns are stable
        turn = self._turns.get(capability, 0)
        self._turns[capability] = turn + 1
        return self.registry.agent(order[turn % len(order)])

    async def rank(self, capability: str, agents: list[Any] | None = None, *,
                   provider: str | None = None) -> list[Candidate]:
        """The candidates for `capability`, best first (agents with an open breaker last, or dropped)."""
        agents = agents if agents is not None else self.registry.agents_with_capability(capability)
        opened = {a.name: await self._breaker_open(provider or getattr(a, "provider", None)
                                                   or self.default_provider) for a in agents}
        usable = [a for a in agents if not opened[a.name]] or list(agents)
        stats = {a.name: self._of(a.name) for a in usable}
        p50s = [m.p50_ms for m in stats.values() if m.p50_ms is not None]
        best_p50 = max(min(p50s), 1.0) if p50s else None
        total_in_flight = sum(m.in_flight for m in stats.values())
        out = []
        for agent in usable:
            m = stats[agent.name]
            score = ERROR_WEIGHT * m.errors / (len(m.outcomes) + 1)
            p50 = m.p50_ms
            if p50 is not None and best_p50 is not None and p50 - best_p50 > LATENCY_FLOOR_MS:
                score += LATENCY_WEIGHT * min(1.0, p50 / best_p50 - 1.0)
            score += LOAD_WEIGHT * m.in_flight / (total_in_flight + 1)
            out.append(Candidate(agent.name, round(score, 6), m.error_rate, p50, m.in_flight, opened[agent.name]))
        out.sort(key=lambda c: c.score)  # stable: equal scores keep registration order
        return out

    # -- circuit breaker ------------------------------------------------------------------------------
    async def _breaker_open(self, provider: str | None) -> bool:
        """Whether calls to `provider` fail fast now (open, or half-open with its probe under way)."""
        breaker = self.breaker
        if breaker is None or not provider:
            return False
        now = time.time()
        if getattr(breaker, "redis", None) is None:
            # The embedded breaker's circuits are a dict in this process: reading it costs nothing.
            circuit = getattr(breaker, "_local", {}).get(provider)
            if not circuit:
                return False
            if circuit.get("state") == "open":
                return now < circuit.get("until", 0.0)
            if circuit.get("state") == "half_open":
                return now < circuit.get("probe_until", 0.0)
            return False
        self._wanted.add(provider)
        if now - self._remote_checked > BREAKER_REFRESH_S and (self._refresh is None or self._refresh.done()):
            self._remote_checked = now
            self._refresh = asyncio.create_task(self._refresh_remote(), name="assigner-breakers")
        return now < self._remote_open.get(provider, 0.0)

    async def _refresh_remote(self) -> None:
        """Read every known provider's shared circuit from Redis in one pipeline (in the background)."""
        providers = sorted(self._wanted)
        try:
            pipe = self.breaker.redis.pipeline(transaction=False)
            for name in providers:
                pipe.hmget(self.breaker.keys.breaker(name), "state", "until", "probe_until")
            rows = await pipe.execute()
        except Exception:  # noqa: BLE001 - a missed refresh only leaves the snapshot older
            log.debug("assigner: reading the shared breakers failed", exc_info=True)
            return
        snapshot = {}
        for name, (state, until, probe_until) in zip(providers, rows, strict=True):
            state = state.decode() if isinstance(state, bytes) else state
            if state == "open" and until:
                snapshot[name] = int(until) / 1000
            elif state == "half_open" and probe_until:
                snapshot[name] = int(probe_until) / 1000
        self._remote_open = snapshot

    async def close(self) -> None:
        """Stop a background breaker refresh, if one runs."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            try:
                await self._refresh
            except asyncio.CancelledError:
                pass
