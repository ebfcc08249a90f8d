"""The worker: takes step tasks off the bus and runs agents, with timeout, retries and dead letters.

One delivery, end to end: look in the ledger (a duplicate delivery of a finished task is answered from
it, never run again) -> record "running" -> run the agent under the step's timeout -> on a retryable
error, record "retrying" and back off (tenacity: exponential with jitter) -> record the result (or the
failure and its dead letter) with its event in one transaction -> reply -> ack.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
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
from .bus import Bus, Delivery
from .errors import ChiefError, ProviderError, StepTimeout, UnknownAgent, UnknownProvider
from .events import EventSink
from .messages import AgentMessage, Event, EventType, StepResult, StepTask
from .store import StepRecord, Store

log = logging.getLogger(__name__)

NOT_RETRYABLE = (UnknownAgent, UnknownProvider)


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
        self._slots = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.processed = 0

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

    async def run(self) -> None:
        """Take tasks until cancelled."""
        while True:
            await self._slots.acquire()
            try:
                delivery = await self.bus.receive(self.agents, timeout=1.0)
            except BaseException:
                self._slots.release()
                raise
            if delivery is None:
                self._slots.release()
                continue
            task = asyncio.create_task(self._handle_in_slot(delivery))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def _handle_in_slot(self, delivery: Delivery) -> None:
        try:
            await self.handle(delivery)
        except Exception:  # a bug here must not kill the worker; the lease will re-send the task
            log.exception("worker %s failed to handle %s", self.name, delivery.message.correlation_id)
        finally:
            self._slots.release()

    # -- one task -----------------------------------------------------------------------------------
    async def handle(self, delivery: Delivery) -> None:
        """Run one delivered task to its recorded result, reply, and ack."""
        message = delivery.message
        try:
            task = StepTask.model_validate(message.payload)
        except Exception as exc:
            await self.sink.emit(dead_letter={
                "execution_id": message.payload.get("execution_id"), "task_key": message.payload.get("task_key"),
                "recipient": message.recipient, "message": message.model_dump(mode="json"),
                "reason": f"malformed task: {describe_error(exc)}", "attempts": 0,
            })
            await self.bus.ack(delivery)
            return

        recorded = await self.store.final_step(task.execution_id, task.task_key)
        if recorded is not None:  # a duplicate delivery: answer from the ledger, run nothing
            await self._reply(message, _result_from_record(recorded))
            await self.bus.ack(delivery)
            return

        result = await self._run_with_retries(task, message)
        await self._reply(message, result)
        await self.bus.ack(delivery)
        self.processed += 1

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
            async for attempt in retrying:
                with attempt:
                    attempt_no = first_attempt + attempt.retry_state.attempt_number - 1
                    ctx = await self._start_attempt(task, attempt_no)
                    output = await self._call_agent(task, ctx)
        except Exception as exc:
            return await self._fail(task, message, attempt_no, exc, started, ctx)
        return await self._succeed(task, message, attempt_no, output, started, ctx)

    async def _start_attempt(self, task: StepTask, attempt_no: int) -> AgentContext:
        await self.sink.emit(
            [Event(execution_id=task.execution_id, type=EventType.STEP_STARTED, step_key=task.step_key,
                   task_key=task.task_key, data={"agent": task.agent, "attempt": attempt_no, "worker": self.name})],
            steps=[StepRecord(execution_id=task.execution_id, task_key=task.task_key, step_key=task.step_key,
                              attempt=attempt_no, status="running", agent=task.agent, started_at=_now())],
        )
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

    def _completer(self, task: StepTask, ctx: AgentContext) -> Callable[..., Awaitable[Completion]]:
        """Route a completion: step's provider, else the agent's, else the worker's, else the global default."""

        async def complete(messages: Any, **options: Any) -> Completion:
            agent = self.registry.agent(task.agent)
            name = task.provider or getattr(agent, "provider", None) or self.default_provider or self.registry.default_provider_name
            provider = self.registry.provider(name)
            model = task.model or getattr(agent, "model", None) or self.default_model or provider.default_model
            ctx.provider_name = name
            return await provider.complete(messages, model=model, **options)

        return complete

    async def _on_retry(self, task: StepTask, first_attempt: int, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        attempt_no = first_attempt + state.attempt_number - 1
        delay = state.next_action.sleep if state.next_action else 0.0
        error = describe_error(exc) if exc else "unknown error"
        await self.sink.emit(
            [Event(execution_id=task.execution_id, type=EventType.STEP_RETRYING, step_key=task.step_key,
                   task_key=task.task_key,
                   data={"attempt": attempt_no, "error": error, "delay_s": round(delay, 3),
                         "next_attempt": attempt_no + 1, "attempts": task.attempts})],
            steps=[StepRecord(execution_id=task.execution_id, task_key=task.task_key, step_key=task.step_key,
                              attempt=attempt_no, status="retrying", agent=task.agent, error=error,
                              finished_at=_now())],
        )

    async def _succeed(self, task: StepTask, message: AgentMessage, attempt_no: int, output: Any,
                       started: float, ctx: AgentContext | None) -> StepResult:
        usage = _usage(ctx)
        result = StepResult(status="succeeded", output=output, attempts=attempt_no, agent=task.agent,
                            duration_ms=(time.perf_counter() - started) * 1000, **usage)
        await self._record_final(task, message, attempt_no, result, EventType.STEP_SUCCEEDED)
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
        return result

    async def _record_final(self, task: StepTask, message: AgentMessage, attempt_no: int, result: StepResult,
                            event_type: EventType, dead_letter: dict[str, Any] | None = None) -> None:
        data: dict[str, Any] = {"agent": task.agent, "attempt": attempt_no, "provider": result.provider,
                                "model": result.model, "duration_ms": round(result.duration_ms or 0, 3),
                                "tokens_in": result.tokens_in, "tokens_out": result.tokens_out}
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
        await self.sink.emit(
            events,
            steps=[StepRecord(execution_id=task.execution_id, task_key=task.task_key, step_key=task.step_key,
                              attempt=attempt_no, status=result.status, agent=task.agent,
                              provider=result.provider, model=result.model, result=result.output,
                              error=result.error, tokens_in=result.tokens_in, tokens_out=result.tokens_out,
                              tokens_estimated=result.tokens_estimated, finished_at=_now(),
                              duration_ms=result.duration_ms)],
            messages=[reply],
            dead_letter=dead_letter,
        )

    async def _reply(self, message: AgentMessage, result: StepResult) -> None:
        await self.bus.reply(AgentMessage(sender=message.recipient, recipient=message.sender, type="result",
                                          payload=result.model_dump(mode="json"),
                                          correlation_id=message.correlation_id, priority=message.priority,
                                          attempt=result.attempts))


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
