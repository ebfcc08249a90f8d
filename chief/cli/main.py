"""`chief`: run workflows, watch and steer executions, inspect plugins, agents, dead letters, the database."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import click

from ..core.messages import EventType
from .common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    console,
    open_engine,
    parse_inputs,
    resolve_workflow,
    run_async,
    settings_for,
    to_json,
)
from .progress import Progress

FINAL_EVENTS = {EventType.EXECUTION_SUCCEEDED, EventType.EXECUTION_FAILED, EventType.EXECUTION_CANCELLED}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Show details (tracebacks, debug logs).")
@click.version_option(package_name="chief")
def cli(verbose: bool) -> None:
    """Chief: a chat-driven agent workspace. Workflows of agent steps, run durably."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.argument("workflow", required=False)
@click.option("--resume", "resume_id", metavar="EXECUTION_ID",
              help="Continue an execution left unfinished (e.g. its process died) from its last checkpoint.")
@click.option("-i", "--input", "inputs", multiple=True, metavar="KEY=VALUE",
              help="A workflow input; KEY=@FILE reads a file, KEY=@- standard input.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result instead of progress.")
@click.option("--provider", help="Default AI provider for this run (default: $CHIEF_PROVIDER or offline).")
@click.option("--model", help="Default model for this run.")
@run_async
async def run(workflow: str | None, inputs: tuple[str, ...], as_json: bool, provider: str | None, model: str | None,
              resume_id: str | None = None) -> int:
    """Run WORKFLOW (a YAML/JSON file or a built-in name) and show its steps as they happen."""
    if resume_id:
        from .db import resume_run

        return await resume_run(resume_id, as_json=as_json, provider=provider, model=model)
    if not workflow:
        raise click.UsageError("give a WORKFLOW to run, or --resume EXECUTION_ID")
    spec = resolve_workflow(workflow)
    values = parse_inputs(inputs)
    settings = settings_for(provider, model)
    async with open_engine(settings=settings) as engine:
        agents = {}
        for step in spec.steps:
            try:
                agents[step.key] = engine.registry.resolve_agent(step.agent, step.capability).name if not step.workflow else f"workflow:{step.workflow}"
            except Exception:  # noqa: BLE001 - unknown agents fail their step at run time, with the message
                agents[step.key] = step.agent or step.capability or "?"
        live = console.is_terminal and not as_json
        progress = Progress(console, [s.key for s in spec.steps], agents, live=live)
        async with engine.bus.subscribe(None) as queue:
            execution_id = await engine.start(spec, values)
            if not as_json:
                console.print(f"[bold]{spec.name}[/bold] [dim]execution {execution_id}[/dim]")
            try:
                with progress if not as_json else _Null():
                    await _follow(engine, execution_id, queue, None if as_json else progress)
            except (KeyboardInterrupt, asyncio.CancelledError):
                console.print(f"stopped; the execution is kept: chief workflow resume {execution_id}")
                return EXIT_INTERRUPTED
        record = await engine.get(execution_id)
        if as_json:
            steps = await engine.store.list_steps(execution_id)
            print(to_json({
                "execution_id": record.id, "workflow": spec.name, "status": record.status,
                "output": record.output, "error": record.error,
                "steps": [{"task_key": s.task_key, "status": s.status, "attempt": s.attempt, "agent": s.agent,
                           "provider": s.provider, "model": s.model, "duration_ms": s.duration_ms,
                           "result": s.result, "error": s.error} for s in steps],
            }))
        else:
            if record.status == "succeeded":
                console.rule("output")
                output = record.output
                console.print(output if isinstance(output, str) else to_json(output), markup=False)
            else:
                console.print(f"[red]{record.status}[/red]: {record.error or ''}")
        return EXIT_OK if record.status == "succeeded" else EXIT_FAILED


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def _follow(engine, execution_id: str, queue: asyncio.Queue, progress: Progress | None) -> None:
    """Show events until the execution is finished (a pause or an approval waits for the other terminal)."""
    while True:
        event = await queue.get()
        if event.execution_id != execution_id:
            continue
        if progress is not None:
            progress.handle(event)
        if event.type == EventType.EXECUTION_PAUSED and progress is not None:
            console.print(f"paused: continue with [bold]chief workflow resume {execution_id}[/bold] "
                          "(from any terminal), or press Ctrl-C to leave it paused")
        if event.type == EventType.EXECUTION_WAITING and progress is not None:
            for step in event.data.get("steps", []):
                console.print(f"waiting: [bold]chief workflow approve {execution_id} {step}[/bold] "
                              f"(or --reject)")
        if event.type in FINAL_EVENTS:
            return


def main() -> None:
    """Console-script entry point."""
    from . import admin, canary, chat, db, plugin_new, providers, worker, workflow  # noqa: F401 - registers the command groups

    if os.environ.get("CHIEF_TRACE_PLUGINS") == "1":
        logging.getLogger("chief.plugins").setLevel(logging.DEBUG)
    try:
        cli(prog_name="chief")
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
