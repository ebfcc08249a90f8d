"""Canary routes: a new workflow version or a new model takes a growing share of runs, and is promoted stage
by stage while its error rate and latency hold against the stable arm, or rolled back when they do not.

This module holds the rules, as pure functions (no database): which arm an execution takes
(`arm_of`, a deterministic hash of the execution id against the stage's share), the statistics of an arm
(`arm_stats`) and the decision (`decide`). `chief.core.store.canary` keeps canaries and their runs;
`CanaryRoutes` (below) is the engine's side: it picks the arm at `Engine.start` and evaluates a canary
when one of its runs finishes.

The decision, for the canary's current stage:
- rollback at once when the candidate's failures already exceed what `min_runs` runs may hold
  (`failed > (stable error rate + max_error_increase) * max(min_runs, runs)`);
- wait until the candidate has `min_runs` finished runs in the stage;
- rollback when its error rate exceeds the stable arm's by more than `max_error_increase`, or its p50
  duration exceeds `max_latency_ratio` times the stable arm's (and by more than `latency_slack_ms`);
- else promote: to the next stage's share, or, from the last stage, to `promoted` (every run takes the
  candidate from then on).
The stable arm's numbers are those of the same stage, or of the whole canary when the stage holds fewer
than `min_runs` stable runs (the 100% stage has none).
"""

from __future__ import annotations

import hashlib
import logging
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from .errors import ChiefError

log = logging.getLogger(__name__)

DEFAULT_STAGES: tuple[int, ...] = (10, 25, 50, 100)
KINDS = ("workflow", "model")
ACTIVE_STATUSES = ("running", "promoted")  # statuses whose canary still routes runs

Kind = Literal["workflow", "model"]
Arm = Literal["stable", "candidate"]


class CanaryError(ChiefError):
    """A canary cannot be started or changed as asked (the message says why)."""


@dataclass(frozen=True)
class Thresholds:
    """When a candidate holds against the stable arm (see the module docstring)."""

    max_error_increase: float = 0.05
    max_latency_ratio: float = 1.5
    min_runs: int = 20
    latency_slack_ms: float = 100.0

    def __post_init__(self) -> None:
        if not 0 <= self.max_error_increase <= 1:
            raise CanaryError(f"max error-rate increase must be between 0 and 1, not {self.max_error_increase}")
        if self.max_latency_ratio < 1:
            raise CanaryError(f"max latency ratio must be at least 1, not {self.max_latency_ratio}")
        if self.min_runs < 1:
            raise CanaryError(f"min runs per stage must be at least 1, not {self.min_runs}")

    @classmethod
    def of(cls, data: dict[str, Any] | None) -> Thresholds:
        return cls(**{k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Canary:
    """One canary: `stable` and `candidate` are workflow ids (kind workflow) or `provider:model` (kind model)."""

    id: str
    kind: Kind
    subject: str  # the workflow's name; for a model canary an agent name or "*" (every run)
    stable: str
    candidate: str
    stages: list[int]
    stage_index: int
    status: str  # running | promoted | rolled_back
    thresholds: Thresholds = field(default_factory=Thresholds)
    reason: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def share(self) -> int:
        """The percentage of new runs the candidate takes now."""
        if self.status == "promoted":
            return 100
        if self.status != "running":
            return 0
        return self.stages[self.stage_index]

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


def parse_stages(text: str | Iterable[int]) -> list[int]:
    """`"10,25,50,100"` (or a list): strictly increasing percentages in 1..100, ending at 100."""
    try:
        stages = [int(s) for s in (text.replace(" ", "").split(",") if isinstance(text, str) else text)]
    except ValueError as exc:
        raise CanaryError(f"stages {text!r}: give percentages separated by commas, e.g. 10,25,50,100") from exc
    if not stages or any(not 0 < s <= 100 for s in stages):
        raise CanaryError(f"stages {text!r}: each stage is a percentage between 1 and 100")
    if any(b <= a for a, b in zip(stages, stages[1:], strict=False)):
        raise CanaryError(f"stages {text!r}: each stage must be larger than the one before")
    if stages[-1] != 100:
        raise CanaryError(f"stages {text!r}: the last stage must be 100 (the candidate takes every run)")
    return stages


def parse_model(ref: str) -> tuple[str, str | None]:
    """`provider:model` (or just `provider`) -> (provider, model). The first colon separates them."""
    provider, _, model = ref.strip().partition(":")
    if not provider:
        raise CanaryError(f"model {ref!r}: write it as provider:model, e.g. openai:gpt-4o-mini")
    return provider, model or None


def bucket(canary_id: str, execution_id: str) -> float:
    """Where an execution falls in 0..100 for a canary: uniform, and the same every time it is asked."""
    digest = hashlib.sha256(f"{canary_id}:{execution_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def arm_of(canary_id: str, execution_id: str, share: float) -> Arm:
    """The arm an execution takes at `share` percent: the candidate when its bucket is below the share.

    As the share grows an execution never moves back from the candidate to the stable arm.
    """
    return "candidate" if bucket(canary_id, execution_id) < share else "stable"


@dataclass(frozen=True)
class ArmStats:
    """Finished runs of one arm: how many, how many failed, the median duration of the successful ones."""

    runs: int = 0
    failed: int = 0
    p50_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.failed / self.runs if self.runs else 0.0

    def describe(self) -> str:
        p50 = f"{self.p50_ms:.0f} ms" if self.p50_ms is not None else "-"
        return f"{self.runs} runs, {self.error_rate:.0%} failed, p50 {p50}"


def arm_stats(outcomes: Iterable[tuple[bool, float | None]]) -> ArmStats:
    """Stats of `(ok, duration_ms)` outcomes of finished runs."""
    runs = failed = 0
    durations = []
    for ok, duration in outcomes:
        runs += 1
        if not ok:
            failed += 1
        elif duration is not None:
            durations.append(duration)
    return ArmStats(runs, failed, statistics.median(durations) if durations else None)


@dataclass(frozen=True)
class Decision:
    """What to do with a running canary: hold (wait for runs), promote (to `stage_index`, or finish), rollback."""

    action: Literal["hold", "promote", "rollback"]
    reason: str
    stage_index: int | None = None  # promote: the next stage (None: promoted for good)


def decide(canary: Canary, stable: ArmStats, candidate: ArmStats) -> Decision:
    """The decision for a running canary given its arms' stats over the current stage (see module doc)."""
    t = canary.thresholds
    share = canary.stages[canary.stage_index]
    allowed_rate = min(stable.error_rate + t.max_error_increase, 1.0)
    if candidate.failed > allowed_rate * max(t.min_runs, candidate.runs):
        return Decision("rollback", f"candidate failed {candidate.failed} of {candidate.runs} runs at {share}% "
                                    f"(stable: {stable.describe()}; allowed error rate {allowed_rate:.0%})")
    if candidate.runs < t.min_runs:
        return Decision("hold", f"waiting for runs at {share}%: candidate has {candidate.runs} of {t.min_runs}")
    if candidate.error_rate > allowed_rate:
        return Decision("rollback", f"candidate error rate {candidate.error_rate:.0%} at {share}% is above "
                                    f"stable {stable.error_rate:.0%} + {t.max_error_increase:.0%}")
    if candidate.p50_ms is not None and stable.p50_ms is not None:
        limit = stable.p50_ms * t.max_latency_ratio
        if candidate.p50_ms > limit and candidate.p50_ms - stable.p50_ms > t.latency_slack_ms:
            return Decision("rollback", f"candidate p50 {candidate.p50_ms:.0f} ms at {share}% is above "
                                        f"{t.max_latency_ratio:g} x stable p50 {stable.p50_ms:.0f} ms")
    held = f"candidate held at {share}% ({candidate.describe()}; stable: {stable.describe()})"
    if canary.stage_index + 1 < len(canary.stages):
        return Decision("promote", held, canary.stage_index + 1)
    return Decision("promote", held, None)


def stage_stats(canary: Canary, runs: Iterable[tuple[int, str, bool, float | None]]) -> tuple[ArmStats, ArmStats]:
    """(stable, candidate) stats for the current stage from `(stage_index, arm, ok, duration_ms)` runs.

    The stable arm falls back to all its runs of the canary when the stage has fewer than `min_runs`.
    """
    runs = list(runs)
    here = canary.stage_index
    candidate = arm_stats((ok, d) for s, arm, ok, d in runs if s == here and arm == "candidate")
    stable = arm_stats((ok, d) for s, arm, ok, d in runs if s == here and arm == "stable")
    if stable.runs < canary.thresholds.min_runs:
        stable = arm_stats((ok, d) for _, arm, ok, d in runs if arm == "stable")
    return stable, candidate


# -- the engine's side -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """The arm an execution took in a canary (None stage: the canary was promoted, the run is not counted)."""

    canary_id: str
    arm: Arm
    stage_index: int | None


class CanaryRoutes:
    """The engine's canary routing: picks the arm at start, evaluates a canary when its runs finish.

    Active canaries are cached in memory and re-read at most every `refresh_s` seconds, so starting an
    execution costs no query while nothing changed (a canary started from another process takes effect
    within `refresh_s`).
    """

    REFRESH_S = 2.0

    def __init__(self, store: Any, *, refresh_s: float = REFRESH_S) -> None:
        from .store.canary import CanaryStore

        self.store = CanaryStore(store)
        self.refresh_s = refresh_s
        self._active: list[Canary] = []
        self._loaded_at = float("-inf")
        self._members: dict[str, str] = {}  # execution id -> canary id, runs counted by a running canary
        self._specs: dict[str, Any] = {}  # candidate workflow id -> WorkflowSpec

    def invalidate(self) -> None:
        """Re-read the active canaries at the next start (after this process changed one)."""
        self._loaded_at = float("-inf")

    async def active(self) -> list[Canary]:
        if time.monotonic() - self._loaded_at > self.refresh_s:
            self._active = await self.store.active()
            self._loaded_at = time.monotonic()
        return self._active

    def _applies(self, canary: Canary, spec: Any) -> bool:
        if canary.kind == "workflow":
            return canary.subject == spec.name
        if canary.subject == "*":
            return True
        return any(step.agent == canary.subject for step in spec.steps)

    async def choose(self, spec: Any, execution_id: str,
                     settings: dict[str, Any] | None) -> tuple[Any, dict[str, Any] | None, Assignment | None]:
        """The spec and settings this execution runs with, and its canary arm (None: no canary applies).

        A workflow canary's candidate arm runs the candidate definition; a model canary's arms put their
        model in `settings["canary"]`. Settings that already carry a canary (a restore) are left alone.
        """
        if settings and settings.get("canary"):
            return spec, settings, None
        canaries = await self.active()
        if not canaries:
            return spec, settings, None
        matching = [c for c in canaries if self._applies(c, spec)]
        if not matching:
            return spec, settings, None
        canary = next((c for c in matching if c.kind == "workflow"), matching[0])  # one canary per run
        arm = arm_of(canary.id, execution_id, canary.share)
        stage = canary.stage_index if canary.status == "running" else None
        if canary.kind == "workflow":
            if arm == "candidate":
                spec = await self._candidate_spec(canary)
        else:
            provider, model = parse_model(canary.candidate if arm == "candidate" else canary.stable)
            settings = {**(settings or {}), "canary": {
                "id": canary.id, "arm": arm, "provider": provider, "model": model,
                "agent": None if canary.subject == "*" else canary.subject}}
        return spec, settings, Assignment(canary.id, arm, stage)

    async def joined(self, execution_id: str, assignment: Assignment | None) -> None:
        """The execution exists: count it in its canary's stage (a promoted canary counts nothing)."""
        if assignment is None or assignment.stage_index is None:
            return
        await self.store.join(execution_id, assignment.canary_id, assignment.stage_index, assignment.arm)
        self._members[execution_id] = assignment.canary_id

    async def _candidate_spec(self, canary: Canary) -> Any:
        spec = self._specs.get(canary.candidate)
        if spec is None:
            from .workflows import WorkflowSpec

            record = await self.store.store.get_workflow(canary.candidate)
            if record is None:
                raise CanaryError(f"canary {canary.id}: its candidate workflow {canary.candidate} is missing")
            spec = WorkflowSpec.model_validate(record.definition)
            spec.source = record.source
            self._specs[canary.candidate] = spec
        return spec

    async def finished(self, execution_id: str) -> Decision | None:
        """An execution finished: if it was a canary run, evaluate its canary (and act on the decision)."""
        canary_id = self._members.pop(execution_id, None)
        if canary_id is None:
            return None
        canary = await self.store.get(canary_id)
        if canary is None or canary.status != "running":
            return None
        return await self.evaluate(canary)

    async def evaluate(self, canary: Canary) -> Decision:
        """Decide for a running canary and apply it (promote a stage, finish, or roll back)."""
        stable, candidate = stage_stats(canary, await self.store.runs(canary.id))
        decision = decide(canary, stable, candidate)
        await apply(self.store, canary, decision)
        if decision.action != "hold":
            self.invalidate()
        return decision


async def apply(store: Any, canary: Canary, decision: Decision) -> bool:
    """Record `decision` for `canary` (a `CanaryStore`); False when another process decided first."""
    if decision.action == "hold":
        return False
    if decision.action == "rollback":
        done = await store.finish(canary.id, "rolled_back", decision.reason)
        if done:
            log.warning("canary %s (%s %s) rolled back: %s", canary.id, canary.kind, canary.subject, decision.reason)
        return done
    if decision.stage_index is None:
        done = await store.finish(canary.id, "promoted", decision.reason)
        if done:
            log.warning("canary %s (%s %s) promoted: %s", canary.id, canary.kind, canary.subject, decision.reason)
        return done
    done = await store.advance(canary.id, canary.stage_index, decision.stage_index, decision.reason)
    if done:
        log.info("canary %s (%s %s) at %d%%: %s", canary.id, canary.kind, canary.subject,
                 canary.stages[decision.stage_index], decision.reason)
    return done
