"""The engine: runs compiled workflows with a checkpointer; start, pause, resume, cancel, approve, restore.

Executions do not live in the caller: each runs in its own task, and any process can ask for a pause,
resume, cancel or approval through the store (`control`), which the process driving the execution (the
lease holder) picks up. Pause is LangGraph's cooperative drain: running steps finish, no new step starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langgraph.errors import GraphDrained
from langgraph.runtime import RunControl
from langgraph.types import Command

from ..assignment import Assigner
from ..bus import Bus, LocalBus
from ..canary import CanaryRoutes
from ..config import Settings
from ..errors import (
    ChiefError,
    ExecutionNotFound,
    InvalidTransition,
    StoreUnavailable,
    TemplateError,
    WorkflowNotFound,
)
from ..events import EventSink
from ..messages import Event, EventType, Lane, StepTask, new_id
from ..store import FINISHED_EXECUTION_STATUSES, ExecutionRecord, Store
from ..workflows import WorkflowSpec, load_workflow, priorities, render
from ..workflows.compiler import compile_workflow
from .checkpoints import CheckpointInfo, fork_checkpoint, open_checkpointer
from .steps import StepFailed, StepRunner

log = logging.getLogger(__name__)

LEASE_TTL_S = 15.0  # how long an orchestrator's claim on an execution lasts without renewal
WATCH_INTERVAL_S = 0.5  # how often controls from other processes are looked for


def _now() -> datetime:
    return datetime.now(UTC)


# "sync": each superstep's checkpoint is written before the next starts. "async" would overlap the write
# with the next step, but LangGraph 1.2 serialises a checkpoint's channel values when the write runs, so
# a join's barrier set mutated by the next superstep lands in the older checkpoint under the old version
# (found by `chief db copy`'s verification: the copy read back a different value). Not safe for restores.
CHECKPOINT_DURABILITY = "sync"


@dataclass
class _Run:
    """An execution driven by this process."""

    execution_id: str
    spec: WorkflowSpec
    task: asyncio.Task[None] | None = None
    control: RunControl | None = None
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    status: str = "pending"
    settings: dict[str, Any] = field(default_factory=dict)  # the execution's routing settings
    fresh: bool = False  # started from its inputs by this drive: nothing of it is in the ledger yet


class Engine:
    """Runs workflows; owns the store, the bus, the checkpointer and (embedded) the workers."""

    def __init__(self, store: Store, bus: Bus, registry: Any, checkpointer: Any, settings: Settings,
                 *, owner: str | None = None):
        self.store = store
        self.bus = bus
        self.registry = registry
        self.checkpointer = checkpointer
        self.settings = settings
        self.owner = owner or f"engine-{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"
        self.sink = EventSink(store, bus, getattr(registry, "notify_event", None))
        self.workers: list[Any] = []
        self._graphs: dict[tuple[str, bool], Any] = {}
        self._priorities: dict[str, dict[str, tuple[Lane, int]]] = {}
        self._runs: dict[str, _Run] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._stack: AsyncExitStack | None = None
        self.assigner = Assigner(registry, default_provider=settings.provider)  # capability steps' agents
        self.canaries = CanaryRoutes(store)  # canary arms at start, evaluation when a canary run finishes

    # -- life cycle ---------------------------------------------------------------------------------
    @classmethod
    async def open(cls, settings: Settings | None = None, *, registry: Any = None, workers: int | None = 1,
                   concurrency: int = 8, bus: Bus | None = None) -> Engine:
        """Open the store, bus and checkpointer of `settings`; start `workers` embedded workers."""
        from ..plugins import get_registry
        from ..worker import Worker, resilience_for

        settings = settings or Settings()
        stack = AsyncExitStack()
        try:
            url = settings.resolved_database_url()
            store = await Store.open(url)
            stack.push_async_callback(store.close)
            registry = registry if registry is not None else get_registry()
            if bus is None and settings.redis_url:
                # Redis: steps go to whichever workers are up. An embedded worker runs here too unless
                # CHIEF_EMBEDDED_WORKERS=0, so a newcomer who forgot `chief worker` is never left hanging.
                from ..bus.redis import RedisBus

                bus = RedisBus(settings.redis_url, prefix=settings.redis_prefix, claim_idle_s=settings.claim_s)
                if workers == 1:
                    workers = settings.embedded_workers
                bus.warn_unserved = not workers
            if bus is None:
                bus = LocalBus()
            await bus.start()
            stack.push_async_callback(bus.close)
            checkpointer = await open_checkpointer(store.url, stack)
            engine = cls(store, bus, registry, checkpointer, settings)
            engine._stack = stack
            breaker, cache = resilience_for(settings, bus)
            engine.assigner.breaker = breaker
            await engine.assigner.load(store)  # recent outcomes per agent, from the ledger (one query)
            for _ in range(workers or 0):
                worker = Worker(bus, store, registry, concurrency=concurrency,
                                default_provider=settings.provider, default_model=settings.model,
                                breaker=breaker, cache=cache)
                worker.start()
                engine.workers.append(worker)
            return engine
        except BaseException:
            await stack.aclose()
            raise

    async def close(self) -> None:
        """Stop driving executions (they stay resumable), stop workers, close connections."""
        for run in list(self._runs.values()):
            if run.task is not None and not run.task.done():
                run.task.cancel()
        for run in list(self._runs.values()):
            if run.task is not None:
                try:
                    await run.task
                except BaseException:  # noqa: BLE001 - closing: every run stops, whatever it raised
                    pass
        for run in list(self._runs.values()):
            await self.store.release_lease(run.execution_id, self.owner)
        self._runs.clear()
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
        for worker in self.workers:
            await worker.stop()
        await self.assigner.close()
        if self._stack is not None:
            await self._stack.aclose()

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- workflows ----------------------------------------------------------------------------------
    def graph_of(self, spec: WorkflowSpec, checkpointer: Any = True) -> Any:
        """The compiled graph of a workflow (cached by content); `checkpointer=None` for sub-graphs."""
        key = (spec.content_hash(), checkpointer is not None)
        graph = self._graphs.get(key)
        if graph is None:
            graph = compile_workflow(spec, self.checkpointer if checkpointer is not None else None)
            self._graphs[key] = graph
        return graph

    def priorities_of(self, spec: WorkflowSpec) -> dict[str, tuple[Lane, int]]:
        key = spec.content_hash()
        if key not in self._priorities:
            self._priorities[key] = priorities(spec)
        return self._priorities[key]

    def find_workflow(self, ref: str, *, relative_to: str | None = None) -> WorkflowSpec:
        """A workflow by path (relative to the referring file) or by name in the registered folders."""
        candidates = []
        if relative_to:
            candidates.append(Path(relative_to).parent / ref)
        candidates.append(Path(ref))
        for path in candidates:
            if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
                return load_workflow(path)
        for folder in getattr(self.registry, "workflow_dirs", []):
            for suffix in (".yaml", ".yml", ".json"):
                path = Path(folder) / f"{ref}{suffix}"
                if path.is_file():
                    return load_workflow(path)
        raise WorkflowNotFound(f"no workflow named '{ref}' (looked in {', '.join(map(str, self.workflow_dirs()))})")

    def workflow_dirs(self) -> list[Path]:
        return [Path(p) for p in getattr(self.registry, "workflow_dirs", [])]

    def output_of(self, spec: WorkflowSpec, state: dict[str, Any]) -> Any:
        """The workflow's output: its `output` template, else the result of its last step(s)."""
        results = state.get("results") or {}
        if spec.output:
            try:
                return render(spec.output, inputs=state.get("inputs") or {}, results=results,
                              statuses=state.get("statuses") or {})
            except TemplateError as exc:
                raise ChiefError(f"output: {exc}") from exc
        depended = {dep for step in spec.steps for dep in step.depends_on}
        sinks = [s.key for s in spec.steps if s.key not in depended]
        if len(sinks) == 1:
            return results.get(sinks[0])
        return {key: results.get(key) for key in sinks}

    def lease_for(self, task: StepTask) -> float:
        """How long to wait for a step's result before sending it again."""
        if task.timeout_s is None:
            return self.settings.lease_s
        worst = task.timeout_s * task.attempts + task.max_backoff_s * max(task.attempts - 1, 0)
        return max(self.settings.lease_s, worst + 5.0)

    # -- starting -----------------------------------------------------------------------------------
    async def start(self, spec: WorkflowSpec, inputs: dict[str, Any] | None = None, *,
                    conversation_id: str | None = None, execution_id: str | None = None,
                    settings: dict[str, Any] | None = None) -> str:
        """Create an execution of `spec` and start running it in the background; return its id.

        `settings` are the execution's routing settings, kept on its row (so a resumed or recovered
        run keeps them) and carried by every step's task: `{"conversation": {"provider", "model"}}`
        (the chat's model, routing level "conversation"), `{"canary": {"id", "provider", "model"}}`
        (a canary arm's model, in place of the global default).
        """
        execution_id = execution_id or new_id()
        spec, settings, canary = await self.canaries.choose(spec, execution_id, settings)  # a canary's arm
        values = spec.bind_inputs(inputs)
        workflow = await self.store.save_workflow(spec.name, str(spec.version), spec.model_dump(mode="json"),
                                                  source=spec.source)
        await self.store.create_execution(
            execution_id, workflow, values, conversation_id=conversation_id, settings=settings,
            events=[Event(execution_id=execution_id, type=EventType.EXECUTION_CREATED,
                          data={"workflow": spec.name, "version": str(spec.version), "steps": len(spec.steps)})],
        )
        await self.canaries.joined(execution_id, canary)
        await self._launch(execution_id, spec, {"inputs": values, "results": {}, "statuses": {}}, settings=settings,
                           fresh=True)
        return execution_id

    async def run(self, spec: WorkflowSpec, inputs: dict[str, Any] | None = None, **kwargs: Any) -> ExecutionRecord:
        """Start an execution and wait until it stops (finished, paused, or waiting for approval)."""
        execution_id = await self.start(spec, inputs, **kwargs)
        return await self.wait(execution_id)

    async def wait(self, execution_id: str, *, finished: bool = False) -> ExecutionRecord:
        """Wait until the execution stops here (or, with `finished`, until it is finished)."""
        while True:
            run = self._runs.get(execution_id)
            if run is not None and not run.stopped.is_set():
                await run.stopped.wait()
            record = await self.get(execution_id)
            if not finished or record.status in FINISHED_EXECUTION_STATUSES:
                return record
            run = self._runs.get(execution_id)
            if run is None:
                raise InvalidTransition(f"execution {execution_id} is {record.status} and not driven here")
            run.stopped.clear()

    async def get(self, execution_id: str) -> ExecutionRecord:
        record = await self.store.get_execution(execution_id)
        if record is None:
            raise ExecutionNotFound(f"no execution '{execution_id}'")
        return record

    async def _launch(self, execution_id: str, spec: WorkflowSpec, graph_input: Any, *, resumed: bool = False,
                      settings: dict[str, Any] | None = None, fresh: bool = False) -> None:
        """Drive the execution in the background (this process takes its lease). `fresh`: a new execution
        started from its inputs, so its nodes need not look in the ledger (see `StepRunner.fresh`)."""
        if not await self.store.acquire_lease(execution_id, self.owner, LEASE_TTL_S):
            raise InvalidTransition(f"execution {execution_id} is being driven by another process")
        run = self._runs.get(execution_id) or _Run(execution_id, spec)
        self._runs[execution_id] = run
        run.stopped.clear()
        run.control = RunControl()
        run.settings = settings or {}
        run.fresh = fresh
        run.status = "running"
        run.task = asyncio.create_task(self._drive(run, graph_input, resumed), name=f"execution-{execution_id}")
        self._ensure_watcher()

    async def _drive(self, run: _Run, graph_input: Any, resumed: bool) -> None:
        execution_id, spec = run.execution_id, run.spec
        runner = StepRunner(self, execution_id, spec, self.priorities_of(spec), settings=run.settings,
                            fresh=run.fresh)
        config = {"configurable": {"thread_id": execution_id}}
        graph = self.graph_of(spec)
        event = EventType.EXECUTION_RESUMED if resumed else EventType.EXECUTION_STARTED
        started = {"started_at": _now()} if not resumed else {}
        await self.sink.emit([Event(execution_id=execution_id, type=event, data={"owner": self.owner})],
                             execution={"id": execution_id, "status": "running", "control": None, **started})
        try:
            async for _ in graph.astream(graph_input, config, context=runner, control=run.control,
                                         stream_mode="updates", durability=CHECKPOINT_DURABILITY):
                pass
        except GraphDrained as drained:
            await self._settle(run, "paused", EventType.EXECUTION_PAUSED, {"reason": drained.reason})
            return
        except asyncio.CancelledError:
            if run.status == "cancelling":
                await self._settle(run, "cancelled", EventType.EXECUTION_CANCELLED, {}, finished=True)
            else:  # the engine is closing: leave the execution resumable
                await self._settle(run, "paused", EventType.EXECUTION_PAUSED, {"reason": "orchestrator stopped"})
            raise
        except StepFailed as exc:
            await self._settle(run, "failed", EventType.EXECUTION_FAILED, {"error": str(exc), "step": exc.key},
                               error=str(exc), finished=True)
            return
        except StoreUnavailable as exc:
            await self._stop_unreachable(run, exc)
            return
        except Exception as exc:  # noqa: BLE001 - any other failure fails the execution with its message
            log.exception("execution %s failed", execution_id)
            message = str(exc) if isinstance(exc, ChiefError) else f"{type(exc).__name__}: {exc}"
            await self._settle(run, "failed", EventType.EXECUTION_FAILED, {"error": message}, error=message,
                               finished=True)
            return
        state = await graph.aget_state(config, subgraphs=True)
        if state.interrupts:
            waiting = [i.value for i in state.interrupts if isinstance(i.value, dict)]
            events = [Event(execution_id=execution_id, type=EventType.STEP_WAITING_APPROVAL, step_key=w.get("step"),
                            task_key=w.get("task_key"), data={"prompt": w.get("prompt"), "agent": w.get("agent")})
                      for w in waiting]
            await self._settle(run, "waiting", EventType.EXECUTION_WAITING,
                               {"steps": [w.get("step") for w in waiting]}, extra_events=events)
            return
        try:
            output = self.output_of(spec, state.values)
        except ChiefError as exc:
            await self._settle(run, "failed", EventType.EXECUTION_FAILED, {"error": str(exc)}, error=str(exc),
                               finished=True)
            return
        await self._settle(run, "succeeded", EventType.EXECUTION_SUCCEEDED, {"output": output}, output=output,
                           finished=True)

    async def _stop_unreachable(self, run: _Run, exc: StoreUnavailable) -> None:
        """The database stayed down past the retry bound: pause with the error, or (if even that cannot be
        written) stop driving and let the lease lapse, so `chief recover` continues it later."""
        log.error("execution %s stopped: %s", run.execution_id, exc)
        try:
            await self._settle(run, "paused", EventType.EXECUTION_PAUSED, {"reason": str(exc)}, error=str(exc))
        except Exception:  # noqa: BLE001 - the database is still down; the lease lapses, recovery continues it
            self._runs.pop(run.execution_id, None)

    async def _settle(self, run: _Run, status: str, event: EventType, data: dict[str, Any], *,
                      error: str | None = None, output: Any = None, finished: bool = False,
                      extra_events: list[Event] | None = None) -> None:
        update: dict[str, Any] = {"id": run.execution_id, "status": status, "control": None}
        if error is not None:
            update["error"] = error
        if output is not None:
            update["output"] = output
        if finished:
            update["finished_at"] = _now()
        events = list(extra_events or []) + [Event(execution_id=run.execution_id, type=event, data=data)]
        try:
            await asyncio.shield(self.sink.emit(events, execution=update))
        finally:
            run.status = status
            if finished:
                await asyncio.shield(self.store.release_lease(run.execution_id, self.owner))
                self._runs.pop(run.execution_id, None)
                if status in ("succeeded", "failed"):
                    await self._canary_finished(run.execution_id)
            run.stopped.set()

    async def _canary_finished(self, execution_id: str) -> None:
        """A finished run may be a canary's: evaluate that canary (promote / roll back); never fails the run."""
        try:
            await asyncio.shield(self.canaries.finished(execution_id))
        except Exception:  # noqa: BLE001 - the canary is evaluated again at its next run or `chief canary status`
            log.exception("evaluating the canary of execution %s failed", execution_id)

    # -- control ------------------------------------------------------------------------------------
    async def pause(self, execution_id: str) -> str:
        """Ask the execution to pause: running steps finish, no new step starts. Returns what happened."""
        record = await self.get(execution_id)
        run = self._runs.get(record.id)
        if run is not None and run.status == "running" and run.control is not None:
            run.control.request_drain("pause")
            run.status = "pausing"
            await self.sink.emit([Event(execution_id=record.id, type=EventType.EXECUTION_PAUSING)],
                                 execution={"id": record.id, "status": "pausing"})
            return "pausing"
        if record.status in ("paused", "pausing"):
            return record.status
        if record.status not in ("running", "pending"):
            raise InvalidTransition(f"execution {record.id} is {record.status}; only a running execution can pause")
        return await self._ask_owner(record, "pause")

    async def resume(self, execution_id: str) -> str:
        """Continue a paused execution; finished steps are never re-run. Returns what happened."""
        record = await self.get(execution_id)
        if record.status not in ("paused", "pausing"):
            raise InvalidTransition(f"execution {record.id} is {record.status}; only a paused execution can resume")
        run = self._runs.get(record.id)
        if run is not None:
            if run.task is not None and not run.task.done():
                raise InvalidTransition(f"execution {record.id} is still pausing; resume when it has paused")
            await self._launch(record.id, run.spec, None, resumed=True, settings=record.settings)
            return "resumed"
        if self._owned_elsewhere(record):
            return await self._ask_owner(record, "resume")
        spec = await self._spec_of(record)
        await self._launch(record.id, spec, None, resumed=True, settings=record.settings)
        return "resumed"

    async def cancel(self, execution_id: str) -> str:
        """Stop the execution now; steps in flight are abandoned (their results are still recorded)."""
        record = await self.get(execution_id)
        if record.status in FINISHED_EXECUTION_STATUSES:
            raise InvalidTransition(f"execution {record.id} is already {record.status}")
        run = self._runs.get(record.id)
        if run is not None:
            if run.task is not None and not run.task.done():
                run.status = "cancelling"
                run.task.cancel()
                try:
                    await run.task
                except asyncio.CancelledError:
                    pass
            else:
                await self._settle(run, "cancelled", EventType.EXECUTION_CANCELLED, {}, finished=True)
            return "cancelled"
        if self._owned_elsewhere(record):
            return await self._ask_owner(record, "cancel")
        await self.sink.emit([Event(execution_id=record.id, type=EventType.EXECUTION_CANCELLED)],
                             execution={"id": record.id, "status": "cancelled", "finished_at": _now(), "control": None})
        return "cancelled"

    async def approve(self, execution_id: str, step_key: str, approved: bool = True, *, by: str | None = None,
                      comment: str | None = None) -> str:
        """Approve (or reject) a step that waits for approval, and continue the execution."""
        record = await self.get(execution_id)
        if record.status != "waiting":
            raise InvalidTransition(f"execution {record.id} is {record.status}; no step waits for approval")
        run = self._runs.get(record.id)
        if run is None and self._owned_elsewhere(record):
            return await self._ask_owner(record, f"{'approve' if approved else 'reject'}:{step_key}")
        spec = run.spec if run is not None else await self._spec_of(record)
        config = {"configurable": {"thread_id": record.id}}
        state = await self.graph_of(spec).aget_state(config, subgraphs=True)
        pending = {i.value.get("step"): i for i in state.interrupts if isinstance(i.value, dict)}
        if step_key not in pending:
            waiting = ", ".join(sorted(k for k in pending if k)) or "none"
            raise InvalidTransition(f"step '{step_key}' is not waiting for approval (waiting: {waiting})")
        decision = {"approved": approved, "by": by, "comment": comment}
        event = EventType.STEP_APPROVED if approved else EventType.STEP_REJECTED
        await self.sink.emit([Event(execution_id=record.id, type=event, step_key=step_key,
                                    task_key=pending[step_key].value.get("task_key"),
                                    data={"by": by, "comment": comment})])
        await self._launch(record.id, spec, Command(resume={pending[step_key].id: decision}), resumed=True,
                           settings=record.settings)
        return "approved" if approved else "rejected"

    def _owned_elsewhere(self, record: ExecutionRecord) -> bool:
        return bool(record.owner and record.owner != self.owner and record.lease_until and record.lease_until > _now())

    async def _ask_owner(self, record: ExecutionRecord, control: str) -> str:
        if not self._owned_elsewhere(record):
            raise InvalidTransition(f"execution {record.id} is {record.status} but no process is driving it; "
                                    f"resume it with `chief workflow resume {record.id}`")
        await self.store.set_control(record.id, control)
        return f"requested ({control}) from {record.owner}"

    async def _spec_of(self, record: ExecutionRecord) -> WorkflowSpec:
        from ..workflows import WorkflowSpec as Spec

        if record.workflow_id is None:
            raise ChiefError(f"execution {record.id} has no recorded workflow definition")
        workflow = await self.store.get_workflow(record.workflow_id)
        if workflow is None:
            raise ChiefError(f"the workflow of execution {record.id} is missing from the database")
        spec = Spec.model_validate(workflow.definition)
        spec.source = workflow.source
        return spec

    def _ensure_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="engine-watcher")

    async def _watch(self) -> None:
        """Renew the leases of the executions driven here; apply controls left by other processes."""
        renew_every = max(1, int(LEASE_TTL_S / 3 / WATCH_INTERVAL_S))
        tick = 0
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            ids = list(self._runs)
            if not ids:
                continue
            tick += 1
            try:
                if tick % renew_every == 0:
                    for execution_id in ids:
                        await self.store.acquire_lease(execution_id, self.owner, LEASE_TTL_S)
                controls = await self.store.get_controls(ids)
                for execution_id, control in controls.items():
                    await self.store.set_control(execution_id, None)
                    await self._apply_control(execution_id, control)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watcher must outlive a failed control
                log.exception("engine watcher: applying controls failed")

    async def _apply_control(self, execution_id: str, control: str) -> None:
        if control == "pause":
            await self.pause(execution_id)
        elif control == "resume":
            await self.resume(execution_id)
        elif control == "cancel":
            await self.cancel(execution_id)
        elif control.startswith(("approve:", "reject:")):
            verb, step = control.split(":", 1)
            await self.approve(execution_id, step, verb == "approve", by="remote")

    # -- recovery -----------------------------------------------------------------------------------
    async def recover(self, execution_ids: list[str] | None = None) -> list[Any]:
        """Continue unfinished executions (all, or the named ones) that no live process drives.

        Each continues from its last checkpoint; finished steps come from the ledger, never run again.
        Returns a `recovery.Recovery` per execution looked at. Used by `chief recover`, `chief run
        --resume` and the chat at start-up.
        """
        from .recovery import recover

        return await recover(self, execution_ids)

    # -- checkpoints --------------------------------------------------------------------------------
    async def checkpoints(self, execution_id: str) -> list[CheckpointInfo]:
        """The checkpoints of an execution, newest first."""
        record = await self.get(execution_id)
        spec = await self._spec_of(record)
        graph = self.graph_of(spec)
        out = []
        async for snap in graph.aget_state_history({"configurable": {"thread_id": record.id}}):
            conf = snap.config["configurable"]
            parent = (snap.parent_config or {}).get("configurable", {}).get("checkpoint_id")
            created = datetime.fromisoformat(snap.created_at) if snap.created_at else None
            statuses = (snap.values or {}).get("statuses") or {}
            out.append(CheckpointInfo(id=conf["checkpoint_id"], created_at=created,
                                      step=(snap.metadata or {}).get("step", -1), next=list(snap.next),
                                      completed=[k for k, v in statuses.items() if v != "running"],
                                      parent_id=parent))
        return out

    async def restore(self, execution_id: str, checkpoint_id: str) -> str:
        """Fork a new execution from a checkpoint of this one and run it; the original stays as it was."""
        record = await self.get(execution_id)
        spec = await self._spec_of(record)
        known = {c.id for c in await self.checkpoints(record.id)}
        if checkpoint_id not in known:
            matches = [c for c in known if c.startswith(checkpoint_id)]
            if len(matches) != 1:
                raise ChiefError(f"no checkpoint '{checkpoint_id}' in execution {record.id} "
                                 f"(see `chief workflow checkpoints {record.id}`)")
            checkpoint_id = matches[0]
        workflow = await self.store.get_workflow(record.workflow_id or "")
        new_execution = new_id()
        await fork_checkpoint(self.checkpointer, record.id, checkpoint_id, new_execution)
        await self.store.create_execution(
            new_execution, workflow, record.inputs, parent_id=record.id, restored_from_checkpoint=checkpoint_id,
            conversation_id=record.conversation_id, settings=record.settings,
            events=[Event(execution_id=new_execution, type=EventType.EXECUTION_CREATED,
                          data={"workflow": spec.name, "restored_from": record.id, "checkpoint": checkpoint_id})],
        )
        await self._launch(new_execution, spec, None, resumed=False, settings=record.settings)
        return new_execution
