"""`chief workflow ...`: validate, show, list, status, events, and steer executions from any terminal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click
from rich.table import Table

from ..core.errors import Problem, WorkflowError
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    console,
    err_console,
    fmt_time,
    open_engine,
    open_store,
    parse_since,
    run_async,
    to_json,
)
from .main import cli


@cli.group()
def workflow() -> None:
    """Workflows and their executions."""


@workflow.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
@run_async
async def validate(files: tuple[str, ...]) -> int:
    """Check workflow FILES; print every problem of every file; exit 2 if any."""
    from ..core.plugins import get_registry
    from ..core.workflows import load_workflow

    registry = get_registry()
    agents = set(registry.agents)
    capabilities = {cap for agent in registry.agents.values() for cap in agent.capabilities}
    known_workflows = {p.stem for folder in registry.workflow_dirs for p in Path(folder).glob("*.y*ml")}
    problems: list[Problem] = []
    for name in files:
        try:
            spec = load_workflow(name, agents=agents, capabilities=capabilities,
                                 workflows=known_workflows | {Path(f).name for f in files})
        except WorkflowError as exc:
            problems.extend(exc.problems)
            continue
        except OSError as exc:
            problems.append(Problem(f"cannot read: {exc.strerror}", source=name))
            continue
        console.print(f"[green]ok[/green] {name} ({spec.name}, {len(spec.steps)} steps)")
    for problem in problems:
        err_console.print(f"[red]error:[/red] {problem}")
    return EXIT_USAGE if problems else EXIT_OK


@workflow.command()
@click.argument("file")
@run_async
async def show(file: str) -> int:
    """Print WORKFLOW's levels, critical path, priorities and a Mermaid drawing of its compiled graph."""
    from ..core.workflows import critical_path, levels, priorities
    from ..core.workflows.compiler import graph_mermaid
    from .common import resolve_workflow

    spec = resolve_workflow(file)
    console.print(f"[bold]{spec.name}[/bold] v{spec.version} — {spec.description}")
    prios = priorities(spec)
    for depth, level in enumerate(levels(spec)):
        parts = []
        for key in level:
            step = spec.step(key)
            who = step.agent or (f"capability:{step.capability}" if step.capability else f"workflow:{step.workflow}")
            lane, rank = prios[key]
            parts.append(f"{key} ({who}, {lane.name.lower()}/{rank})")
        console.print(f"level {depth}: " + ", ".join(parts), markup=False)
    console.print("critical path: " + " -> ".join(critical_path(spec)), markup=False)
    console.print("\n```mermaid\n" + graph_mermaid(spec).strip() + "\n```", markup=False)
    return EXIT_OK


@workflow.command("list")
@click.option("--status", help="Only executions in this status (running, paused, succeeded, ...).")
@click.option("--workflow", "workflow_name", help="Only executions of this workflow.")
@click.option("--since", help="Only executions created since: 30m, 1h, 2d or an ISO date.")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@run_async
async def list_(status: str | None, workflow_name: str | None, since: str | None, limit: int, as_json: bool) -> int:
    """List executions, newest first."""
    async with open_store() as store:
        rows = await store.list_executions(status=status, workflow=workflow_name, since=parse_since(since), limit=limit)
    if as_json:
        print(to_json([r.__dict__ for r in rows]))
        return EXIT_OK
    table = Table(box=None, header_style="bold")
    for col in ("id", "workflow", "status", "created", "finished"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.id, r.workflow_name, r.status, fmt_time(r.created_at), fmt_time(r.finished_at))
    console.print(table if rows else "no executions")
    return EXIT_OK


async def _execution(store, execution_id: str):
    """The execution with this id (or unique prefix), or ExecutionNotFound."""
    from ..core.errors import ExecutionNotFound

    record = await store.get_execution(execution_id)
    if record is None:
        raise ExecutionNotFound(f"no execution '{execution_id}' (see `chief workflow list`)")
    return record


@workflow.command()
@click.argument("execution_id")
@click.option("--json", "as_json", is_flag=True)
@run_async
async def status(execution_id: str, as_json: bool) -> int:
    """An execution's status, its workflow version, and each step with attempts, timings, tokens, errors."""
    async with open_store() as store:
        record = await _execution(store, execution_id)
        steps = await store.list_steps(record.id)
    from ..core.accounting import PriceTable, usage_of_steps

    usage = usage_of_steps(steps, PriceTable.from_env())  # every attempt: failed ones were paid for too
    latest = {}
    for s in steps:  # the newest attempt of each task
        latest[s.task_key] = s
    if as_json:
        print(to_json({"execution": record.__dict__, "steps": [s.__dict__ for s in steps],
                       "usage": usage.as_dict()}))
        return EXIT_OK
    # the YAML's `version:` plus the content hash of the exact definition that ran (an edit without a
    # version bump is still a different definition)
    definition = f" ({record.workflow_id[:12]})" if record.workflow_id else ""
    console.print(f"[bold]{record.id}[/bold] {record.workflow_name} v{record.workflow_version}{definition} — "
                  f"[bold]{record.status}[/bold]")
    console.print(f"created {fmt_time(record.created_at)}  started {fmt_time(record.started_at)}  "
                  f"finished {fmt_time(record.finished_at)}")
    if record.parent_id:
        console.print(f"restored from {record.parent_id} at checkpoint {record.restored_from_checkpoint}")
    if record.error:
        console.print(f"[red]error:[/red] {record.error}", markup=True)
    table = Table(box=None, header_style="bold")
    for col in ("step", "status", "attempt", "agent", "provider/model", "ms", "tokens", "error"):
        table.add_column(col)
    for s in latest.values():
        tokens = "" if s.tokens_in is None else f"{s.tokens_in}/{s.tokens_out}" + ("~" if s.tokens_estimated else "")
        table.add_row(s.task_key, s.status, str(s.attempt), s.agent or "", f"{s.provider or ''}/{s.model or ''}".strip("/"),
                      f"{s.duration_ms:.0f}" if s.duration_ms is not None else "", tokens, (s.error or "")[:60])
    console.print(table)
    if usage.calls:
        console.print(f"total: {usage.summary()}", markup=False)
    return EXIT_OK


@workflow.command()
@click.argument("execution_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the execution finishes.")
@run_async
async def events(execution_id: str, follow: bool) -> int:
    """Print an execution's events (from the database)."""
    async with open_store() as store:
        record = await _execution(store, execution_id)
        after = 0
        while True:
            rows = await store.list_events(record.id, after_id=after)
            for e in rows:
                detail = e.data.get("error") or e.data.get("reason") or ""
                console.print(f"{fmt_time(e.created_at)} {e.type:<26} {e.task_key or '':<24} {detail}", markup=False)
                after = e.id
            if not follow:
                return EXIT_OK
            current = await store.get_execution(record.id)
            if current and current.status in ("succeeded", "failed", "cancelled") and not rows:
                return EXIT_OK
            await asyncio.sleep(0.5)  # polling the database: works across processes without Redis


def _steer(verb: str):
    @click.argument("execution_id")
    @run_async
    async def command(execution_id: str) -> int:
        async with open_engine(workers=1) as engine:
            outcome = await getattr(engine, verb)(execution_id)
            console.print(f"{execution_id}: {outcome}")
            if outcome == "resumed":  # nobody else drives it: this process runs it to the end
                record = await engine.wait((await engine.get(execution_id)).id, finished=False)
                console.print(f"{record.id}: {record.status}")
                return EXIT_OK if record.status in ("succeeded", "paused", "waiting") else EXIT_FAILED
        return EXIT_OK

    command.__name__ = verb
    command.__doc__ = {"pause": "Pause EXECUTION_ID: running steps finish, no new step starts.",
                       "resume": "Resume a paused EXECUTION_ID (here, if no other process drives it).",
                       "cancel": "Cancel EXECUTION_ID."}[verb]
    return workflow.command(verb)(command)


for _verb in ("pause", "resume", "cancel"):
    _steer(_verb)


@workflow.command()
@click.argument("execution_id")
@click.argument("step")
@click.option("--reject", is_flag=True, help="Reject the step instead.")
@click.option("--comment", help="A note kept with the decision.")
@run_async
async def approve(execution_id: str, step: str, reject: bool, comment: str | None) -> int:
    """Approve (or --reject) STEP of EXECUTION_ID, which waits for approval."""
    import getpass

    async with open_engine(workers=1) as engine:
        outcome = await engine.approve(execution_id, step, not reject, by=getpass.getuser(), comment=comment)
        console.print(f"{execution_id}: {outcome}")
        if outcome in ("approved", "rejected"):
            record = await engine.wait((await engine.get(execution_id)).id)
            console.print(f"{record.id}: {record.status}")
    return EXIT_OK


@workflow.command()
@click.argument("execution_id")
@run_async
async def checkpoints(execution_id: str) -> int:
    """List EXECUTION_ID's checkpoints, newest first (ids to restore from)."""
    async with open_engine(workers=0) as engine:
        rows = await engine.checkpoints(execution_id)
    table = Table(box=None, header_style="bold")
    for col in ("checkpoint", "step", "created", "next", "done"):
        table.add_column(col)
    for c in rows:
        table.add_row(c.id, str(c.step), fmt_time(c.created_at), ", ".join(c.next) or "-", ", ".join(c.completed))
    console.print(table)
    return EXIT_OK


@workflow.command()
@click.argument("execution_id")
@click.argument("checkpoint_id")
@run_async
async def restore(execution_id: str, checkpoint_id: str) -> int:
    """Fork a new execution from CHECKPOINT_ID of EXECUTION_ID and run it (the original is unchanged)."""
    async with open_engine(workers=1) as engine:
        new_id = await engine.restore(execution_id, checkpoint_id)
        console.print(f"restored as {new_id}")
        record = await engine.wait(new_id)
        console.print(f"{new_id}: {record.status}")
        return EXIT_OK if record.status in ("succeeded", "paused", "waiting") else EXIT_FAILED
