"""`chief db upgrade|current|history|copy|prune` and `chief recover`: the database and durable executions."""

from __future__ import annotations

import asyncio

import click
from rich.table import Table

from ..core.config import Settings
from .common import (
    EXIT_FAILED,
    EXIT_OK,
    console,
    open_engine,
    open_store,
    parse_since,
    run_async,
    settings_for,
    to_json,
)
from .main import cli


@cli.group()
def db() -> None:
    """The database: schema (Alembic migrations), copying to another database, checkpoint retention."""


@db.command()
@run_async
async def upgrade() -> int:
    """Create or migrate the schema to this version of Chief."""
    from ..core.store import migrate

    url = Settings().resolved_database_url()
    await migrate.aupgrade(url)
    console.print(f"database at revision {await migrate.acurrent(url)}")
    return EXIT_OK


@db.command()
@run_async
async def current() -> int:
    """Print the database's schema revision."""
    from ..core.store import migrate

    url = Settings().resolved_database_url()
    console.print(f"{await migrate.acurrent(url) or 'empty'} (this Chief needs {migrate.head()})")
    return EXIT_OK


@db.command()
def history() -> None:
    """List the schema migrations."""
    from ..core.store import migrate

    for rev, message in migrate.history():
        console.print(f"{rev}  {message}", markup=False)


@db.command()
@click.option("--from", "source", metavar="URL", help="Database to copy from (default: $CHIEF_DATABASE_URL "
              "or the embedded SQLite file).")
@click.option("--to", "target", metavar="URL", required=True, help="Database to copy into (schema created).")
@click.option("--force", is_flag=True, help="Delete the target's data first if it has any.")
@click.option("--resume", is_flag=True, help="Continue an interrupted copy into the same target.")
@click.option("--json", "as_json", is_flag=True)
@run_async
async def copy(source: str | None, target: str, force: bool, resume: bool, as_json: bool) -> int:
    """Copy every row (and LangGraph's checkpoints) to another database; verify counts and checksums."""
    from ..core.store.copy import copy_database

    source = source or Settings().resolved_database_url()
    say = (lambda _line: None) if as_json else (lambda line: console.print(line, markup=False))
    report = await asyncio.to_thread(copy_database, source, target, force=force, resume=resume, progress=say)
    if as_json:
        print(to_json({"source": report.source, "target": report.target, "ok": report.ok,
                       "tables": [t.__dict__ for t in report.tables]}))
    else:
        console.print(f"copied {report.source} -> {report.target}: "
                      f"{sum(t.source_rows for t in report.tables)} rows and checkpoints, counts and checksums match")
    return EXIT_OK if report.ok else EXIT_FAILED


@db.command()
@click.option("--keep", type=int, help="Checkpoints kept per finished execution (default: "
              "$CHIEF_CHECKPOINT_KEEP or 10; at least 1).")
@click.option("--older-than", help="Only executions finished before: 30m, 1h, 7d or an ISO date.")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@run_async
async def prune(keep: int | None, older_than: str | None, dry_run: bool) -> int:
    """Delete old checkpoints of finished executions (the newest --keep of each stay restorable)."""
    from ..core.store.prune import prune_checkpoints

    async with open_store() as store:
        report = await prune_checkpoints(store, keep=keep, older_than=parse_since(older_than), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    console.print(f"{verb} {report.checkpoints} checkpoints ({report.writes} writes, {report.blobs} blobs) "
                  f"of {report.executions} finished executions")
    return EXIT_OK


@cli.command()
@click.argument("execution_ids", nargs=-1)
@click.option("--no-wait", is_flag=True, help="Only start them; exit at once (they stop with this process).")
@click.option("--json", "as_json", is_flag=True)
@run_async
async def recover(execution_ids: tuple[str, ...], no_wait: bool, as_json: bool) -> int:
    """Continue executions left unfinished by a process that died (all, or EXECUTION_IDS), to the end.

    Each continues from its last checkpoint; steps already recorded as finished are not run again.
    An execution another live process drives is left to it.
    """
    async with open_engine() as engine:
        found = await engine.recover(list(execution_ids) or None)
        rows = []
        for r in found:
            status = r.outcome
            if r.outcome in ("resumed", "started") and not no_wait:
                status = (await engine.wait(r.execution_id)).status
            rows.append({"execution_id": r.execution_id, "workflow": r.workflow, "outcome": r.outcome,
                         "status": status, "detail": r.detail})
    if as_json:
        print(to_json(rows))
    elif not rows:
        console.print("no unfinished executions")
    else:
        table = Table(box=None, header_style="bold")
        for col in ("execution", "workflow", "recovery", "status", "detail"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["execution_id"], r["workflow"], r["outcome"], r["status"], r["detail"])
        console.print(table)
    failed = [r for r in rows if r["outcome"] in ("resumed", "started") and r["status"] in ("failed", "cancelled")]
    return EXIT_FAILED if failed else EXIT_OK


async def resume_run(execution_id: str, *, as_json: bool, provider: str | None, model: str | None) -> int:
    """`chief run --resume ID`: recover one execution here and show it to the end, like `chief run`."""
    from ..core.messages import Event, EventType
    from .main import FINAL_EVENTS, Progress, _follow, _Null

    settings = settings_for(provider, model)
    async with open_engine(settings=settings) as engine:
        record = await engine.get(execution_id)
        if record.status in ("succeeded", "failed", "cancelled"):
            console.print(f"{record.id}: already {record.status}")
            return EXIT_OK if record.status == "succeeded" else EXIT_FAILED
        spec = await engine._spec_of(record)
        live = console.is_terminal and not as_json
        progress = Progress(console, [s.key for s in spec.steps], {s.key: s.agent or s.capability or "?"
                                                                  for s in spec.steps}, live=live)
        async with engine.bus.subscribe(None) as queue:
            [outcome] = await engine.recover([record.id])
            if outcome.outcome not in ("resumed", "started"):
                console.print(f"{record.id}: not resumed — {outcome.detail}", markup=False)
                return EXIT_FAILED
            if not as_json:
                console.print(f"[bold]{spec.name}[/bold] [dim]execution {record.id} ({outcome.outcome} "
                              f"{outcome.detail})[/dim]")
            with progress if not as_json else _Null():
                if not as_json:
                    for past in await engine.store.list_events(record.id):
                        event = Event(execution_id=past.execution_id, type=EventType(past.type),
                                      step_key=past.step_key, task_key=past.task_key, data=past.data,
                                      created_at=past.created_at.timestamp(), id=past.id)
                        if event.type not in FINAL_EVENTS:
                            progress.handle(event)
                await _follow(engine, record.id, queue, None if as_json else progress)
        record = await engine.get(record.id)
        steps = await engine.store.list_steps(record.id)
    if as_json:
        print(to_json({"execution_id": record.id, "workflow": spec.name, "status": record.status,
                       "output": record.output, "error": record.error,
                       "steps": [{"task_key": s.task_key, "status": s.status, "attempt": s.attempt,
                                  "agent": s.agent, "duration_ms": s.duration_ms, "result": s.result,
                                  "error": s.error} for s in steps]}))
    elif record.status == "succeeded":
        console.rule("output")
        console.print(record.output if isinstance(record.output, str) else to_json(record.output), markup=False)
    else:
        console.print(f"[red]{record.status}[/red]: {record.error or ''}")
    return EXIT_OK if record.status == "succeeded" else EXIT_FAILED
