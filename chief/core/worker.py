"""The worker: takes step tasks off the bus and runs agents, with timeout, retries and dead letters.

One delivery, end to end: look in the ledger (a duplicate delivery of a finished task is answered from
it, never run again) -> record "running" -> run the agent under the step's timeout -> on a retryable
error, record "retrying" and back off (tenacity: exponential with jitter) -> record the result (or the
failure and its dead letter) with its event in one transaction -> reply -> ack.

Around the agent: the result cache (a hit skips the agent; visible as `cached` on the step and its event)
and the circuit breaker of each provider the agent calls (`CircuitOpen` fails the call fast).
Concurrency is a limit that `scaling.Autoscaler` may move between a minimum and a maximum.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import weakref
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import Any

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .agents import AgentContext, Completion
from .breaker import BreakerPolicy, CircuitBreaker
from .bus import Bus, Delivery
from .cache import ResultCache, cache_key
from .config import Settings
from .deferred import RUNNING_WRITE_DELAY_S, DeferredStart
from .errors import ChiefError, ProviderError, StepTimeout, UnknownAgent, UnknownProvider
from .events import EventSink, TokenStream
from .messages import AgentMessage, Event, EventType, StepResult, StepTask
from .routing import ModelChoice, Route, blame, choose_route
from .store import StepRecord, Store

log = logging.getLogger(__name__)

NOT_RETRYABLE = (UnknownAgent, UnknownProvider)
MAX_DELIVERIES = 5  # a task taken over this many times (its workers kept dying on it) is dead-lettered


def is_retryable(exc: BaseException) -> bool:
    """Provider errors say themselves; unknown agents/providers never heal; anything else may be transient."""
    if isinstance(exc, ProviderError):
        return exc.retryable
    if isinstance(exc, NOT_RETRYABLE):
        return False
    return isinstance(exc, Exception)


def describe_error(exc: BaseException) -> str:
    """One line for the step's error: the exception's message, with its type when that helps."""
    if isinstance(exc, ChiefError):
        return str(exc)
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _now() -> datetime:
    return datetime.now(UTC)


def resilience_for(settings: Settings, bus: Bus) -> tuple[CircuitBreaker, ResultCache | None]:
    """The breaker and result cache a worker on `bus` uses: in Redis (shared) with RedisBus, else local.

    The cache is on by default only with Redis (TTL `CHIEF_CACHE_TTL_S`, default 3600 s); embedded, it is
    on only when `CHIEF_CACHE_TTL_S` is set, so that running a workflow twice on one machine calls the
    model twice unless asked otherwise.
    """
    redis = getattr(bus, "redis", None)
    keys = getattr(bus, "keys", None)
    policy = BreakerPolicy(window_s=settings.breaker_window_s, threshold=settings.breaker_threshold,
                           min_calls=settings.breaker_min_calls, open_s=settings.breaker_open_s)
    breaker = CircuitBreaker(policy, redis=redis, keys=keys)
    ttl = settings.cache_ttl_s if settings.cache_ttl_s is not None else (3600.0 if redis is not None else 0.0)
    cache = ResultCache(ttl, redis=redis, keys=keys) if ttl > 0 else None
    return breaker, cache


class Worker:
    """Runs the agents it serves (all by default) for tasks taken off the bus, `concurrency` at a time."""

    def __init__(
        self,
        bus: Bus,
        store: Store,
        registry: Any,
        *,
        agents: Collection[str] | None = None,
        concurrency: int = 8,
        name: str | None = None,
        default_provider: str | None = None,
        default_model: str | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        breaker: CircuitBreaker | None = None,
        cache: ResultCache | None = None,
    ):
        self.bus = bus
        self.store = store
        self.registry = registry
        self.agents = set(agents) if agents else None
        self.concurrency = concurrency
        self.name = name or f"worker-{socket.gethostname()}-{os.getpid()}"
        self.default_provider = default_provider
        self.default_model = default_model
        self.sink = EventSink(store, bus, getattr(registry, "notify_event", None))
        self._sleep = sleep
        self.breaker = breaker or CircuitBreaker()
        self.cache = cache
        self.limit = concurrency  # tasks at once; `set_limit` moves it (auto-scaling)
        self.active = 0
        self._room = asyncio.Condition()
        self._inflight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.processed = 0
        self._starts: dict[int, DeferredStart] = {}  # each running attempt's deferred "running" write
        # The context of each task's current attempt, so that `_on_retry` records a failed attempt's tokens.
        self._attempt_contexts: weakref.WeakValueDictionary[tuple[str, str], AgentContext] = (
            weakref.WeakValueDictionary())
        self.running_delay_s = RUNNING_WRITE_DELAY_S

    # -- life cycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start taking tasks in the background."""
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        """Stop taking tasks; wait for the ones in flight to finish."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
            self._loop_task = None
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    async def set_limit(self, limit: int) -> None:
        """Run up to `limit` tasks at once from now on (tasks already running finish)."""
        async with self._room:
            self.limit = max(int(limit), 1)
            self._room.notify_all()

    async def _release(self) -> None:
        async with self._room:
            self.active -= 1
            self._room.notify_all()

    async def run(self) -> None:
        """Take tasks until cancelled."""
        failures = 0
        recipients = self.agents
        if recipients is None and self.bus.name == "redis" and self.registry is not None:
            # On a shared bus, "all agents" means the ones installed here: another machine may have more.
            recipients = set(self.registry.agents)
        while True:
            async with self._room:
                await self._room.wait_for(lambda: self.active < self.limit)
                self.active += 1
            try:
                delivery = await self.bus.receive(recipients, timeout=1.0)
                failures = 0
            except asyncio.CancelledError:
                await self._release()
                raise
            except Exception as exc:  # the bus is down (Redis restarting): keep trying, never die
                await self._release()
                failures += 1
                log.warning("worker %s cannot take tasks: %s", self.name, describe_error(exc))
                await asyncio.sleep(min(0.2 * failures, 2.0))
                continue
            if delivery is None:
                await self._release()
                continue
            task = asyncio.create_task(self._handle_in_slot(delivery))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _handle_in_slot(self, delivery: Delivery) -> None:
        try:
            await self.handle(delivery)
        except Exception:  # a bug here must not kill the worker; the task is delivered again later
            log.exception("worker %s failed to handle %s", self.name, delivery.message.correlation_id)
            try:
                await self.bus.abandon(delivery)
            except Exception:  # noqa: BLE001 - the engine's lease re-sends it anyway
                log.exception("worker %s: cannot give back %s", self.name, delivery.message.correlation_id)
        finally:
            await self._release()

    # -- one task -----------------------------------------------------------------------------------
    async def handle(self, delivery: Delivery) -> None:
        """Run one delivered task to its recorded result, reply, and ack."""
        message = delivery.message
        try:
            if delivery.error:
                raise ValueError(delivery.error)
            task = StepTask.model_validate(message.payload)
        except Exception as exc:
            dead_letter = {
                "execution_id": message.payload.get("execution_id"), "task_key": message.payload.get("task_key"),
                "recipient": message.recipient, "message": message.model_dump(mode="json"),
                "reason": delivery.error or f"malformed task: {describe_error(exc)}", "attempts": 0,
            }
            await self.sink.emit(dead_letter=dead_letter)
            await self.bus.dead_letter(dead_letter)
            await self.bus.ack(delivery)
            return

        # A duplicate delivery is answered from the ledger and runs nothing. The first delivery of the
        # first attempt of a fresh execution's step cannot be a duplicate: it skips the lookup. (Re-sends
        # go out with attempt > 1, redeliveries count > 1, and a recovering orchestrator is not fresh;
        # it re-sends in the same lane behind the old copy, which therefore runs first.)
        first = task.fresh and message.attempt == 1 and delivery.deliveries <= 1
        recorded = None if first else await self.store.final_step(task.execution_id, task.task_key)
        if recorded is not None:
            await self._reply(message, _result_from_record(recorded), delivery)
            return

        if delivery.deliveries > MAX_DELIVERIES:  # a poison task: do not let it kill one more worker
            error = ChiefError(f"delivered {delivery.deliveries} times without a result: the workers that took "
                               "it stopped while running it (crashed?)")
            result = await self._fail(task, message, message.attempt, error, time.perf_counter(), None)
            await self._reply(message, result, delivery)
            return
        result = await self._from_cache(task, message)
        if result is None:
            result = await self._run_with_retries(task, message)
        await self._reply(message, result, delivery)
        self.processed += 1

    def _route_of(self, task: StepTask) -> Route:
        """Where a step's completions go: step > agent > conversation > global default (or the execution's
        canary arm) > provider default (`choose_route`)."""
        default = (ModelChoice.of(task.canary) if task.canary
                   else ModelChoice(self.default_provider, self.default_model))
        return choose_route(self.registry, task, self.registry.agent(task.agent),
                            conversation=task.conversation, default=default)

    def _route(self, task: StepTask) -> tuple[str, str | None]:
        """The provider name and model a step's completions go to (the cache key uses them)."""
        route = self._route_of(task)
        return route.provider_name, route.model

    def _cache_digest(self, task: StepTask) -> str | None:
        if self.cache is None or not task.cache:
            return None
        try:
            provider, model = self._route(task)
        except ChiefError:
            return None  # the run itself reports the unknown agent / provider
        return cache_key(task.agent, provider, model, task.prompt)

    async def _from_cache(self, task: StepTask, message: AgentMessage) -> StepResult | None:
        """A cached result recorded as this step's (no agent call), or None on a miss."""
        digest = self._cache_digest(task)
        hit = await self.cache.get(digest) if digest and self.cache else None
        if hit is None:
            return None
        result = StepResult(status="succeeded", output=hit.get("output"), attempts=message.attempt,
                            agent=task.agent, provider=hit.get("provider"), model=hit.get("model"),
                            tokens_in=hit.get("tokens_in"), tokens_out=hit.get("tokens_out"), cached=True,
                            duration_ms=0.0)
        await self._record_final(task, message, message.attempt, result, EventType.STEP_SUCCEEDED)
        return result

    async def _run_with_retries(self, task: StepTask, message: AgentMessage) -> StepResult:
        first_attempt = message.attempt
        attempt_no = first_attempt
        started = time.perf_counter()

        async def before_sleep(state: RetryCallState) -> None:
            await self._on_retry(task, first_attempt, state)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(max(task.attempts, 1)),
            wait=wait_exponential_jitter(
                initial=task.backoff_s, exp_base=task.backoff_multiplier, max=task.max_backoff_s, jitter=task.backoff_s
            ),
            retry=retry_if_exception(is_retryable),
            before_sleep=before_sleep,
            sleep=self._sleep,
            reraise=True,
        )
        ctx: AgentContext | None = None
        try:
            try:
                async for attempt in retrying:
                    with attempt:
                        attempt_no = first_attempt + attempt.retry_state.attempt_number - 1
                        ctx = await self._start_attempt(task, attempt_no)
                        output = await self._call_agent(task, ctx)
            except Exception as exc:
                return await self._fail(task, message, attempt_no, exc, started, ctx)
            return await self._succeed(task, message, attempt_no, output, started, ctx)
        finally:
            leftover = self._starts.pop(id(task), None)  # cancelled, or a write failed: no late "running"
            if leftover is not None:
                leftover.cancel()

    async def _start_attempt(self, task: StepTask, attempt_no: int) -> AgentContext:
        """Record "running" (deferred: a fast attempt's start goes into its result's transaction)."""
        started = [Event(execution_id=task.execution_id, type=EventType.STEP_STARTED, step_key=task.step_key,
                         task_key=task.task_key, data={"agent": task.agent, "attempt": attempt_no, "worker": self.name})]

        async def write(events: list[Event], started_at: datetime) -> None:
            await self.sink.emit(events, steps=[
                StepRecord(execution_id=task.execution_id, task_key=task.task_key, step_key=task.step_key,
                           attempt=attempt_no, status="running", agent=task.agent, started_at=started_at)])

        previous = self._starts.pop(id(task), None)
        if previous is not None:
            previous.cancel()
        self._starts[id(task)] = DeferredStart(started, _now(), write, delay_s=self.running_delay_s)
        ctx = AgentContext(task, self._unbound, attempt=attempt_no)
        ctx._complete = self._completer(task, ctx)
        return ctx

    @staticmethod
    async def _unbound(*_: Any, **__: Any) -> Completion:
        raise RuntimeError("context not bound to a provider")

    async def _call_agent(self, task: StepTask, ctx: AgentContext) -> Any:
        agent = self.registry.agent(task.agent)
        try:
            async with asyncio.timeout(task.timeout_s):
                return await agent.run(task, ctx)
        except TimeoutError as exc:
            raise StepTimeout(f"step '{task.step_key}' timed out after {task.timeout_s:g} s") from exc
        except Exception as exc:  # a plugin's bug fails its step with the plugin's name, never the app
            raise blame(self.registry, "agent", task.agent, exc)  # noqa: B904 - blame sets the cause

    def _completer(self, task: StepTask, ctx: AgentContext) -> Callable[..., Awaitable[Completion]]:
        """Route each completion (`_route_of`), behind the provider's circuit breaker.

        Also gives `ctx` its `route()` (agents size prompts to the routed model's context window), keeps
        the attempt's context where `_on_retry` finds it (a failed attempt's tokens are counted too), and
        when the task asks for streaming (`task.stream`), publishes the answer live as `step.token` events.
        """
        ctx.route = lambda: self._route_of(task)
        self._attempt_contexts[(task.execution_id, task.task_key)] = ctx

        async def complete(messages: Any, **options: Any) -> Completion:
            route = self._route_of(task)
            name = route.provider_name
            ctx.provider_name = name
            stream = None
            if task.stream and options.get("on_token") is None:
                stream = TokenStream(self.sink, execution_id=task.execution_id, step_key=task.step_key,
                                     task_key=task.task_key, attempt=ctx.attempt)
                options["on_token"] = stream.on_token
            await self.breaker.before_call(name)
            try:
                completion = await route.provider.complete(messages, model=route.model, **options)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self.breaker.record(name, False)
                raise blame(self.registry, "provider", name, exc)  # noqa: B904 - blame sets the cause
            finally:
                if stream is not None:
                    await stream.close()
            await self.breaker.record(name, True)
            return completion

        return complete

    async def _emit_after_start(self, task: StepTask, events: list[Event], step: StepRecord, **more: Any) -> None:
        """Write an attempt's next state change, with its still-deferred "running" write in front of it."""
        deferred = self._starts.pop(id(task), None)
        if deferred is not None:
            started, started_at = await deferred.take()
            events = [*started, *events]
            step.started_at = step.started_at or started_at
        await self.sink.emit(events, steps=[step], **more)

    async def _on_retry(self, task: StepTask, first_attempt: int, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        attempt_no = first_attempt + state.attempt_number - 1
        delay = state.next_action.sleep if state.next_action else 0.0
        error = describe_error(exc) if exc else "unknown error"
        # The failed attempt's completions were paid for: its row keeps their tokens (accounting sums rows).
        ctx = self._attempt_contexts.get((task.execution_id, task.task_key))
        usage = _usage(ctx) if ctx is not None and ctx.attempt == attempt_no else {}
        await self._emit_after_start(
            task,
            [Event(execution_id=task.execution_id, type=EventType.STEP_RETRYING, step_key=task.step_key,
                   task_key=task.task_key,
                   data={"attempt": attempt_no, "error": error, "delay_s": round(delay, 3),
                         "next_attempt": attempt_no + 1, "attempts": task.attempts,
                         "tokens_in": usage.get("tokens_in"), "tokens_out": usage.get("tokens_out")})],
            StepRecord(execution_id=task.execution_id, task_key=task.task_key, step_key=task.step_key,
                       attempt=attempt_no, status="retrying", agent=task.agent, error=error,
                       finished_at=_now(), **usage),
        )

    async def _succeed(self, task: StepTask, message: AgentMessage, attempt_no: int, output: Any,
                       started: float, ctx: AgentContext | None) -> StepResult:
        usage = _usage(ctx)
        result = StepResult(status="succeeded", output=output, attempts=attempt_no, agent=task.agent,
                            duration_ms=(time.perf_counter() - started) * 1000, **usage)
        await self._record_final(task, message, attempt_no, result, EventType.STEP_SUCCEEDED)
        digest = self._cache_digest(task)
        if digest and self.cache is not None:
            await self.cache.set(digest, {"output": output, "provider": result.provider, "model": result.model,
                                          "tokens_in": result.tokens_in, "tokens_out": result.tokens_out})
        return result

    async def _fail(self, task: StepTask, message: AgentMessage, attempt_no: int, exc: BaseException,
                    started: float, ctx: AgentContext | None) -> StepResult:
        error = describe_error(exc)
        result = StepResult(status="failed", error=error, attempts=attempt_no, agent=task.agent,
                            duration_ms=(time.perf_counter() - started) * 1000, **_usage(ctx))
        dead_letter = {
            "execution_id": task.execution_id, "task_key": task.task_key, "recipient": message.recipient,
            "message": message.model_dump(mode="json"), "reason": error, "attempts": attempt_no,
        }
        await self._record_final(task, message, attempt_no, result, EventType.STEP_FAILED, dead_letter=dead_letter)
        await self.bus.dead_letter(dead_letter)
        return result

    async def _record_final(self, task: StepTask, message: AgentMessage, attempt_no: int, result: StepResult,
                            event_type: EventType, dead_letter: dict[str, Any] | None = None) -> None:
        data: dict[str, Any] = {"agent": task.agent, "attempt": attempt_no, "provider": result.provider,
                                "model": result.model, "duration_ms": round(result.duration_ms or 0, 3),
                                "tokens_in": result.tokens_in, "tokens_out": result.tokens_out,
                                "worker": self.name}
        if result.tokens_estimated:
            data["tokens_estimated"] = True
        if result.cached:
            data["cached"] = True
        if result.status == "succeeded":
            data["output"] = result.output
        else:
            data["error"] = result.error
        events = [Event(execution_id=task.execution_id, type=event_type, step_key=task.step_key,
                        task_key=task.task_key, data=data)]
        if dead_letter is not None:
            events.append(Event(execution_id=task.execution_id, type=EventType.STEP_DEAD_LETTERED,
                                step_key=task.step_key, task_key=task.task_key,
                                data={"reason": result.error, "attempts": attempt_no}))
        reply = AgentMessage(sender=message.recipient, recipient=message.sender, type="result",
                             payload=result.model_dump(mode="json"), correlation_id=message.correlation_id,
                             priority=message.priority, attempt=attempt_no)
        await self._emit_after_start(
            task,
            events,
            StepRecord(execution_id=task.execution_id, task_key=task.task_key, step_key=task.step_key,
                       attempt=attempt_no, status=result.status, agent=task.agent,
                       provider=result.provider, model=result.model, result=result.output,
                       error=result.error, tokens_in=result.tokens_in, tokens_out=result.tokens_out,
                       tokens_estimated=result.tokens_estimated, finished_at=_now(),
                       duration_ms=result.duration_ms, cached=result.cached),
            messages=[reply],
            dead_letter=dead_letter,
        )

    async def _reply(self, message: AgentMessage, result: StepResult, delivery: Delivery) -> None:
        """Send the result to the orchestrator and ack the task (the result is recorded already)."""
        await self.bus.reply_and_ack(AgentMessage(sender=message.recipient, recipient=message.sender, type="result",
                                          payload=result.model_dump(mode="json"),
                                          correlation_id=message.correlation_id, priority=message.priority,
                                          attempt=result.attempts), delivery)


def _usage(ctx: AgentContext | None) -> dict[str, Any]:
    """Provider, model and token totals over the completions of the last attempt."""
    if ctx is None or not ctx.completions:
        return {}
    last = ctx.completions[-1]
    tin = [c.tokens_in for c in ctx.completions if c.tokens_in is not None]
    tout = [c.tokens_out for c in ctx.completions if c.tokens_out is not None]
    return {
        "model": last.model,
        "provider": getattr(ctx, "provider_name", None),
        "tokens_in": sum(tin) if tin else None,
        "tokens_out": sum(tout) if tout else None,
        "tokens_estimated": any(c.tokens_estimated for c in ctx.completions),
    }


def _result_from_record(record: StepRecord) -> StepResult:
    status = "succeeded" if record.status in ("succeeded", "skipped") else "failed"
    return StepResult(status=status, output=record.result, error=record.error, attempts=record.attempt,
                      agent=record.agent, provider=record.provider, model=record.model,
                      tokens_in=record.tokens_in, tokens_out=record.tokens_out, cached=record.cached,
                      duration_ms=record.duration_ms)
