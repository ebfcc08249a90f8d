"""What a step node does, per execution: the `StepHooks` the compiled graph calls.

Every node looks in the ledger first: a step whose result is recorded (because it finished before a
crash, a pause or a re-run of the node) returns that result and is never dispatched again.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from langgraph.types import interrupt

from ..errors import ChiefError, TemplateError
from ..messages import AgentMessage, Event, EventType, Lane, StepResult, StepTask
from ..store import StepRecord
from ..workflows import NO_ITEM, StepSpec, WorkflowSpec, evaluate_condition, render, resolve
from ..workflows.compiler import RunState

if TYPE_CHECKING:
    from .engine import Engine


class StepFailed(ChiefError):
    """A step failed after its attempts; the execution fails with this message."""

    def __init__(self, key: str, error: str):
        self.key = key
        self.error = error
        super().__init__(f"step '{key}' failed: {error}")


def _now() -> datetime:
    return datetime.now(UTC)


def _update(key: str, status: str, output: Any = None) -> dict[str, Any]:
    return {"results": {key: output}, "statuses": {key: status}}


@dataclass
class StepRunner:
    """Implements `StepHooks` for one execution (and, with a `prefix`, for a sub-workflow inside it)."""

    engine: Engine
    execution_id: str
    spec: WorkflowSpec
    priorities: dict[str, tuple[Lane, int]]
    prefix: str = ""
    inputs_cache: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)  # the execution's routing settings (Engine.start)
    # A run started from its inputs in this process: no step of it can be in the ledger yet, so the
    # ledger lookups at node entry (there for re-runs after a pause, crash or approval) are skipped.
    fresh: bool = False

    # -- helpers ------------------------------------------------------------------------------------
    def _event(self, type_: EventType, key: str, task_key: str | None = None, **data: Any) -> Event:
        return Event(execution_id=self.execution_id, type=type_, step_key=self.prefix + key,
                     task_key=task_key or self.prefix + key, data=data)

    def _row(self, key: str, task_key: str, status: str, **fields: Any) -> StepRecord:
        return StepRecord(execution_id=self.execution_id, task_key=task_key, step_key=self.prefix + key,
                          attempt=fields.pop("attempt", 1), status=status, **fields)

    async def _finish(self, key: str, task_key: str, status: str, event: EventType, *,
                      output: Any = None, error: str | None = None, **data: Any) -> None:
        await self.engine.sink.emit(
            [self._event(event, key, task_key, **({"error": error} if error else {}), **data)],
            steps=[self._row(key, task_key, status, result=output, error=error, finished_at=_now())],
        )

    def _render_args(self, state: RunState, item: Any = NO_ITEM, index: int | None = None) -> dict[str, Any]:
        return {"inputs": state.get("inputs") or {}, "results": state.get("results") or {},
                "statuses": state.get("statuses") or {}, "item": item, "index": index}

    async def _recorded(self, task_key: str) -> StepRecord | None:
        """The ledger's final row of `task_key`, read when a node is entered (none in a fresh run)."""
        if self.fresh:
            return None
        return await self.engine.store.final_step(self.execution_id, task_key)

    async def _when(self, step: StepSpec, state: RunState, task_key: str) -> bool:
        if not step.when:
            return True
        try:
            ok = evaluate_condition(step.when, **self._render_args(state))
        except TemplateError as exc:
            await self._fail(step, task_key, f"when: {exc}")
        if not ok:
            await self._finish(step.key, task_key, "skipped", EventType.STEP_SKIPPED,
                               reason=f"condition is false: {step.when}")
        return ok

    async def _fail(self, step: StepSpec, task_key: str, error: str) -> None:
        await self._finish(step.key, task_key, "failed", EventType.STEP_FAILED, error=error)
        raise StepFailed(self.prefix + step.key, error)

    def _outcome(self, step: StepSpec, result: StepResult | StepRecord) -> dict[str, Any]:
        status = result.status
        if status == "failed" and not step.optional:
            raise StepFailed(self.prefix + step.key, result.error or "failed")
        output = result.result if isinstance(result, StepRecord) else result.output
        return _update(step.key, status, output)

    async def _approval(self, step: StepSpec, task_key: str, prompt: str) -> bool:
        """Wait for a person (LangGraph `interrupt`); the engine records the decision when it resumes us."""
        decision = interrupt({"type": "approval", "execution_id": self.execution_id, "step": self.prefix + step.key,
                              "task_key": task_key, "agent": step.agent or step.capability, "prompt": prompt})
        approved = bool(decision.get("approved")) if isinstance(decision, dict) else bool(decision)
        if not approved:
            by = decision.get("by") if isinstance(decision, dict) else None
            await self._finish(step.key, task_key, "rejected", EventType.STEP_REJECTED, by=by)
        return approved

    # -- StepHooks ----------------------------------------------------------------------------------
    async def run_step(self, key: str, state: RunState, config: Any) -> dict[str, Any]:
        step = self.spec.step(key)
        task_key = self.prefix + key
        recorded = await self._recorded(task_key)
        if recorded is not None:
            return self._outcome(step, recorded)
        if not await self._when(step, state, task_key):
            return _update(key, "skipped")
        if step.workflow:
            return await self._run_subworkflow(step, state, config, task_key)
        try:
            prompt = render(step.prompt, **self._render_args(state))
        except TemplateError as exc:
            await self._fail(step, task_key, f"prompt: {exc}")
        if step.approval and not await self._approval(step, task_key, prompt):
            return _update(key, "rejected")
        result = await self.dispatch(step, task_key, prompt, state)
        return self._outcome(step, result)

    async def prepare_each(self, key: str, state: RunState) -> dict[str, Any]:
        step = self.spec.step(key)
        recorded = await self._recorded(self.prefix + key)
        if recorded is not None:  # already gathered (or skipped) before a re-run
            return {**self._outcome(step, recorded), "fanout": {key: []}}
        if not await self._when(step, state, self.prefix + key):
            return {**_update(key, "skipped"), "fanout": {key: []}}
        try:
            items = _as_list(resolve(step.for_each or "", **self._render_args(state)))
        except TemplateError as exc:
            await self._fail(step, self.prefix + key, f"for_each: {exc}")
        if step.approval:
            summary = f"{len(items)} item(s): " + render(step.prompt, **self._render_args(state, items[0] if items else None, 0)) if items else "no items"
            if not await self._approval(step, self.prefix + key, summary):
                return {**_update(key, "rejected"), "fanout": {key: []}}
        return {"fanout": {key: items}, "statuses": {key: "running"}}

    async def run_item(self, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        step = self.spec.step(key)
        index = payload["index"]
        task_key = f"{self.prefix}{key}[{index}]"
        recorded = await self._recorded(task_key)
        if recorded is None:
            try:
                prompt = render(step.prompt, **self._render_args(payload, payload.get("item"), index))
            except TemplateError as exc:
                await self._fail(step, task_key, f"prompt (item {index}): {exc}")
            recorded = await self.dispatch(step, task_key, prompt, payload, item_index=index)
        if recorded.status == "failed" and not step.optional:
            raise StepFailed(f"{self.prefix}{key}[{index}]", recorded.error or "failed")
        output = recorded.result if isinstance(recorded, StepRecord) else recorded.output
        return {"items": {key: {str(index): output if recorded.status != "failed" else None}}}

    async def gather_each(self, key: str, state: RunState) -> dict[str, Any]:
        step = self.spec.step(key)
        status = (state.get("statuses") or {}).get(key)
        if status in ("skipped", "rejected", "succeeded", "failed"):
            return {}
        items = (state.get("fanout") or {}).get(key) or []
        got = (state.get("items") or {}).get(key) or {}
        outputs = [got.get(str(i)) for i in range(len(items))]
        await self._finish(key, self.prefix + key, "succeeded", EventType.STEP_SUCCEEDED, output=outputs,
                           items=len(items))
        return _update(step.key, "succeeded", outputs)

    # -- dispatch -----------------------------------------------------------------------------------
    async def dispatch(self, step: StepSpec, task_key: str, prompt: str, state: RunState | dict[str, Any],
                       item_index: int | None = None) -> StepResult | StepRecord:
        """Send the step to its agent over the bus and wait for the result; re-send if the lease runs out."""
        engine = self.engine
        try:
            # capability steps: the healthiest, fastest, least busy agent (chief/core/assignment.py)
            agent = await engine.assigner.choose(step.agent, step.capability,
                                                 provider=step.provider or self.spec.config.provider)
        except ChiefError as exc:
            await self._fail(step, task_key, str(exc))
        lane, rank = self.priorities.get(step.key, (Lane.NORMAL, 1))
        retry = self.spec.effective_retry(step)
        timeout_s = self.spec.effective_timeout(step)
        task = StepTask(
            execution_id=self.execution_id, task_key=task_key, step_key=self.prefix + step.key, agent=agent.name,
            prompt=prompt, provider=step.provider or self.spec.config.provider,
            model=step.model or self.spec.config.model, timeout_s=timeout_s, attempts=retry.attempts,
            backoff_s=retry.backoff_s, backoff_multiplier=retry.multiplier, max_backoff_s=retry.max_backoff_s,
            cache=step.cache, inputs=state.get("inputs") or {}, fresh=self.fresh,
            conversation=self.settings.get("conversation"), canary=_canary_of(self.settings, agent.name),
            stream=bool(self.settings.get("stream")),
        )
        engine.assigner.begin(agent.name)
        try:
            result = await self._send(step, task_key, task, agent.name, lane, rank, retry.attempts, item_index)
        except BaseException:
            engine.assigner.end(agent.name)
            raise
        engine.assigner.end(agent.name, result)  # the assigner's metrics: outcome and duration
        return result

    async def _send(self, step: StepSpec, task_key: str, task: StepTask, agent: str, lane: Lane, rank: int,
                    attempts: int, item_index: int | None) -> StepResult | StepRecord:
        """Send the task to `agent` and wait for its result; re-send it when the lease runs out."""
        engine = self.engine
        lease = engine.lease_for(task)
        attempt = 1
        while True:
            correlation_id = f"{self.execution_id}:{task_key}:{attempt}"
            message = AgentMessage(sender=engine.owner, recipient=agent, type="task",
                                   payload=task.model_dump(mode="json"), correlation_id=correlation_id,
                                   priority=int(lane), rank=rank, attempt=attempt)
            reply = engine.bus.expect_reply(correlation_id)
            # "queued" is recorded while the task travels (not before it leaves): the store keeps a
            # later status when this write lands after the worker's, and views never step back to queued.
            written = asyncio.create_task(engine.sink.emit(
                [self._event(EventType.STEP_QUEUED, step.key, task_key, agent=agent, lane=lane.name.lower(),
                             rank=rank, attempt=attempt, item=item_index)],
                steps=[self._row(step.key, task_key, "queued", attempt=attempt, agent=agent,
                                 priority=int(lane), item_index=item_index, queued_at=_now())],
                messages=[message],
            ))
            written.add_done_callback(_consume_error)
            try:
                await engine.bus.send(message)
                await asyncio.wait([written, reply], return_when=asyncio.FIRST_COMPLETED)
                if written.done() and written.exception() is not None:
                    raise written.exception()  # the store is down: stop here (the engine pauses the run)
                answer = await self._await_reply(reply, correlation_id, lease)
                await written
                return StepResult.model_validate(answer.payload)
            except TimeoutError:
                engine.bus.forget_reply(correlation_id)
                recorded = await engine.store.final_step(self.execution_id, task_key)
                if recorded is not None:
                    return recorded
                # The result did not come back within the lease (a worker died, the bus lost the
                # message): send the task again, with attempt numbers after the ones already used, one
                # lane up: a fix outranks new work.
                attempt += attempts
                lane = Lane(min(int(lane) + 1, int(Lane.CRITICAL)))
            except BaseException:
                engine.bus.forget_reply(correlation_id)
                raise

    async def _await_reply(self, reply: asyncio.Future[AgentMessage], correlation_id: str, lease: float) -> AgentMessage:
        """The result; past the lease, keep waiting while the bus still holds the task (queued, or run by a
        live worker: a long step is not sent twice). TimeoutError when the bus lost it."""
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(reply), lease)
            except TimeoutError:
                if not await self.engine.bus.holds(correlation_id):
                    raise

    # -- sub-workflows ------------------------------------------------------------------------------
    async def _run_subworkflow(self, step: StepSpec, state: RunState, config: Any, task_key: str) -> dict[str, Any]:
        engine = self.engine
        try:
            child = engine.find_workflow(step.workflow or "", relative_to=self.spec.source)
            inputs = {name: resolve(value, **self._render_args(state)) if isinstance(value, str) else value
                      for name, value in step.inputs.items()}
        except ChiefError as exc:
            await self._fail(step, task_key, str(exc))
        await engine.sink.emit([self._event(EventType.STEP_STARTED, step.key, task_key, workflow=child.name)],
                               steps=[self._row(step.key, task_key, "running", started_at=_now())])
        runner = replace(self, spec=child, priorities=engine.priorities_of(child), prefix=task_key + "/")
        graph = engine.graph_of(child, checkpointer=None)
        final = await graph.ainvoke({"inputs": inputs, "results": {}, "statuses": {}}, config, context=runner)
        output = engine.output_of(child, final)
        await self._finish(step.key, task_key, "succeeded", EventType.STEP_SUCCEEDED, output=output,
                           workflow=child.name)
        return _update(step.key, "succeeded", output)


def _consume_error(task: asyncio.Task[Any]) -> None:
    """Mark a background write's failure as seen (the dispatch that started it reports it, if still there)."""
    if not task.cancelled():
        task.exception()


def _canary_of(settings: dict[str, Any], agent: str) -> dict[str, Any] | None:
    """The execution's model-canary arm for a step of `agent` (a canary on one agent leaves the others alone)."""
    canary = settings.get("canary")
    if canary and canary.get("agent") not in (None, agent):
        return None
    return canary


def _as_list(value: Any) -> list[Any]:
    """The items of a for_each: a list as is; a JSON list in a string; else the string's non-empty lines."""
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return parsed
        return [line for line in text.splitlines() if line.strip()]
    if isinstance(value, dict):
        return [{"key": k, "value": v} for k, v in value.items()]
    raise TemplateError(f"for_each needs a list, got {type(value).__name__}")
