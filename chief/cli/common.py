"""What every CLI command shares: running coroutines, opening the engine, one-line errors, output."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from ..core.config import Settings
from ..core.errors import ChiefError, WorkflowError, WorkflowNotFound

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def run_async(func: Callable[..., Coroutine[Any, Any, int | None]]) -> Callable[..., None]:
    """Run an async command; print Chief's errors as one line (with detail under -v) and exit with a code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        ctx = click.get_current_context()
        verbose = bool(ctx.find_root().params.get("verbose"))
        try:
            code = asyncio.run(func(*args, **kwargs))
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        except WorkflowError as exc:
            for problem in exc.problems:
                err_console.print(f"[red]error:[/red] {problem}", markup=True)
            sys.exit(EXIT_USAGE)
        except ChiefError as exc:
            err_console.print(f"[red]error:[/red] {exc}", markup=True)
            if verbose:
                err_console.print_exception()
            sys.exit(EXIT_FAILED if not isinstance(exc, WorkflowNotFound) else EXIT_USAGE)
        sys.exit(code or EXIT_OK)

    return wrapper


def settings_for(provider: str | None = None, model: str | None = None) -> Settings:
    """Settings from the environment, with `--provider` / `--model` (when given) as the global default."""
    settings = Settings()
    if provider:
        settings.provider = provider
    if model:
        settings.model = model
    return settings


@asynccontextmanager
async def open_engine(*, workers: int = 1, settings: Settings | None = None):
    """The engine on the configured (or embedded) store, bus and workers; closed on exit."""
    from ..core.engine import Engine

    engine = await Engine.open(settings or Settings(), workers=workers)
    try:
        yield engine
    finally:
        await engine.close()


@asynccontextmanager
async def open_store(settings: Settings | None = None):
    """Just the store (for read-only commands)."""
    from ..core.store import Store

    store = await Store.open((settings or Settings()).resolved_database_url())
    try:
        yield store
    finally:
        await store.close()


def resolve_workflow(ref: str):
    """A workflow by file path, or by name among the registered workflow folders."""
    from ..core.plugins import get_registry
    from ..core.workflows import load_workflow

    path = Path(ref)
    if path.suffix in (".yaml", ".yml", ".json") or path.exists():
        if not path.is_file():
            raise WorkflowNotFound(f"no workflow file '{ref}'")
        return load_workflow(path)
    folders = [Path(p) for p in get_registry().workflow_dirs]
    for folder in folders:
        for suffix in (".yaml", ".yml", ".json"):
            candidate = folder / f"{ref}{suffix}"
            if candidate.is_file():
                return load_workflow(candidate)
    raise WorkflowNotFound(f"no workflow '{ref}': not a file, and not a name in {', '.join(map(str, folders)) or 'no workflow folder'}")


def parse_inputs(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`key=value` pairs; `key=@path` reads a file (`@-` reads standard input)."""
    values: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ChiefError(f"--input '{pair}': expected key=value or key=@file")
        key, value = pair.split("=", 1)
        if value.startswith("@"):
            source = value[1:]
            try:
                value = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                raise ChiefError(f"--input {key}: cannot read '{source}': {exc.strerror}") from exc
        values[key.strip()] = value
    return values


def to_json(value: Any) -> str:
    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return obj.isoformat()
        if hasattr(obj, "__dataclass_fields__"):
            return obj.__dict__
        return str(obj)

    return json.dumps(value, indent=2, ensure_ascii=False, default=default)


def fmt_time(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def parse_since(text: str | None) -> datetime | None:
    """`1h`, `30m`, `2d`, `45s` ago, or an ISO date."""
    if not text:
        return None
    from datetime import UTC, timedelta

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ChiefError(f"--since '{text}': use 30m, 1h, 2d or an ISO date") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
