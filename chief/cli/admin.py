"""`chief plugins`, `chief agents`, `chief dlq`: looking after an installation (`chief db` is in db.py)."""

from __future__ import annotations

import click
from rich.table import Table

from .common import EXIT_FAILED, EXIT_OK, console, fmt_time, open_store, run_async, to_json
from .main import cli


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def plugins(as_json: bool) -> None:
    """List plugins: version, hooks, what they registered, and errors of those that failed."""
    from ..core.plugins import get_registry

    registry = get_registry()
    infos = registry.plugin_infos()
    if as_json:
        print(to_json([i.__dict__ for i in infos]))
        return
    table = Table(box=None, header_style="bold")
    for col in ("plugin", "version", "hooks", "registered", "error"):
        table.add_column(col)
    for info in infos:
        registered = getattr(info, "registered", None) or getattr(info, "items", None) or ""
        if isinstance(registered, dict):
            registered = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in registered.items() if v)
        elif isinstance(registered, list | tuple):
            registered = ", ".join(map(str, registered))
        table.add_row(info.name, str(getattr(info, "version", "")), ", ".join(getattr(info, "hooks", []) or []),
                      str(registered), f"[red]{info.error}[/red]" if getattr(info, "error", None) else "")
    console.print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def agents(as_json: bool) -> None:
    """List agents with their capabilities and provider."""
    from ..core.plugins import get_registry

    registry = get_registry()
    rows = [{"name": a.name, "description": a.description, "capabilities": list(a.capabilities),
             "provider": a.provider or f"{registry.default_provider_name} (default)", "model": a.model or ""}
            for a in registry.agents.values()]
    if as_json:
        print(to_json(rows))
        return
    table = Table(box=None, header_style="bold")
    for col in ("agent", "capabilities", "provider", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], ", ".join(r["capabilities"]), r["provider"], r["description"])
    console.print(table)


@cli.group(invoke_without_command=True)
@click.pass_context
def dlq(ctx: click.Context) -> None:
    """Dead letters: steps that failed every attempt (lists them by default)."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(dlq_list)


@dlq.command("list")
@click.option("--limit", default=50, show_default=True)
@run_async
async def dlq_list(limit: int = 50) -> int:
    """List dead letters, newest first."""
    async with open_store() as store:
        rows = await store.list_dead_letters(limit=limit)
    if not rows:
        console.print("no dead letters")
        return EXIT_OK
    table = Table(box=None, header_style="bold")
    for col in ("id", "when", "execution", "step", "agent", "attempts", "reason"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r.id), fmt_time(r.created_at), r.execution_id or "", r.task_key or "", r.recipient,
                      str(r.attempts), r.reason[:80])
    console.print(table)
    return EXIT_OK


@dlq.command("show")
@click.argument("dead_letter_id", type=int)
@run_async
async def dlq_show(dead_letter_id: int) -> int:
    """Show one dead letter with its message."""
    async with open_store() as store:
        row = await store.get_dead_letter(dead_letter_id)
    if row is None:
        console.print(f"no dead letter {dead_letter_id}")
        return EXIT_FAILED
    print(to_json(row.__dict__))
    return EXIT_OK


@dlq.command("drop")
@click.argument("dead_letter_id", type=int)
@run_async
async def dlq_drop(dead_letter_id: int) -> int:
    """Delete a dead letter."""
    async with open_store() as store:
        done = await store.delete_dead_letter(dead_letter_id)
    console.print(f"dropped {dead_letter_id}" if done else f"no dead letter {dead_letter_id}")
    return EXIT_OK if done else EXIT_FAILED


@dlq.command("retry")
@click.argument("dead_letter_id", type=int)
@run_async
async def dlq_retry(dead_letter_id: int) -> int:
    """Run a dead-lettered step again: fork its execution from the checkpoint before the step, run it to
    the end here, and drop the dead letter when it succeeds."""
    from ..core.errors import ChiefError
    from .common import open_engine

    async with open_engine() as engine:
        row = await engine.store.get_dead_letter(dead_letter_id)
        if row is None:
            console.print(f"no dead letter {dead_letter_id}")
            return EXIT_FAILED
        if not row.execution_id or not row.task_key:
            raise ChiefError(f"dead letter {dead_letter_id} belongs to no execution (a malformed message): "
                             f"read it with `chief dlq show {dead_letter_id}`, then `chief dlq drop {dead_letter_id}`")
        step = row.task_key.split("/")[0].split("[")[0]
        target = next((c for c in await engine.checkpoints(row.execution_id) if step in c.next), None)
        if target is None:
            raise ChiefError(f"no checkpoint of execution {row.execution_id} before step '{step}'; "
                             f"see `chief workflow checkpoints {row.execution_id}`")
        new_execution = await engine.restore(row.execution_id, target.id)
        console.print(f"retrying step {row.task_key} of {row.execution_id} as execution {new_execution}")
        record = await engine.wait(new_execution, finished=True)
        if record.status == "succeeded":
            await engine.store.delete_dead_letter(dead_letter_id)
            console.print(f"succeeded; dropped dead letter {dead_letter_id}")
            return EXIT_OK
        console.print(f"[red]{record.status}[/red]: {record.error or ''}")
        return EXIT_FAILED
