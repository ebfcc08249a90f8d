"""`chief providers`: the AI providers, their models, configuration and (with --check) health.

Nothing here prints a key: providers describe themselves through `status()` (which says only
whether a key is set) and their errors never quote one.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from typing import Any

import click
from rich.table import Table

from .common import EXIT_FAILED, EXIT_OK, console, run_async, to_json
from .main import cli

CHECK_TIMEOUT_S = 20.0
SHOWN_MODELS = 6
PING = [{"role": "user", "content": "Reply with the word: ok"}]


def _models(provider: Any) -> list[str]:
    lister = getattr(provider, "models", None)
    if lister is None:
        return [provider.default_model]
    try:
        return list(lister())
    except Exception as exc:  # noqa: BLE001 - a provider that cannot list its models is still shown
        return [f"(cannot list models: {type(exc).__name__}: {' '.join(str(exc).split())[:120]})"]


def _status(provider: Any) -> str:
    describe = getattr(provider, "status", None)
    if describe is None:
        return "ok"
    try:
        return str(describe())
    except Exception as exc:  # noqa: BLE001
        return f"error: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"


async def _check(provider: Any) -> dict[str, Any]:
    """One tiny request: ok with its latency, or the provider's one-line error (unconfigured: not sent)."""
    configured = getattr(provider, "configured", None)
    if configured is not None and not configured():
        return {"ok": None, "detail": "not checked: not configured"}
    started = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            completion = await provider.complete(PING, model=provider.default_model, max_tokens=5)
    except TimeoutError:
        return {"ok": False, "detail": f"no answer within {CHECK_TIMEOUT_S:g} s"}
    except Exception as exc:  # noqa: BLE001 - health is reported, never raised
        return {"ok": False, "detail": " ".join(str(exc).split())[:300] or type(exc).__name__}
    ms = (time.perf_counter() - started) * 1000
    return {"ok": True, "detail": f"ok in {ms:.0f} ms ({completion.model})", "latency_ms": round(ms, 1)}


@cli.command()
@click.option("--check", is_flag=True, help="Send each provider a tiny request and report its health.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@run_async
async def providers(check: bool, as_json: bool) -> int:
    """List AI providers: the plugin that registered each, its models, configuration and health."""
    from ..core.plugins import get_registry

    registry = get_registry()
    default = registry.default_provider_name
    rows: list[dict[str, Any]] = []
    for name, provider in registry.providers.items():
        row = {"name": name, "plugin": registry.owner_of("provider", name), "default": name == default,
               "default_model": provider.default_model, "models": _models(provider), "status": _status(provider)}
        if check:
            row["health"] = await _check(provider)
        rows.append(row)
    notes = []
    if importlib.util.find_spec("llm") is None:
        notes.append("llm bridge: the `llm` package is not installed, so no llm:<model> providers "
                     "(pip install llm, then llm plugins such as llm-ollama)")
    if default not in registry.providers and ":" not in default:
        notes.append(f"CHIEF_PROVIDER is '{default}', which no plugin registered")
    if as_json:
        print(to_json({"default": default, "providers": rows, "notes": notes}))
    else:
        table = Table(box=None, header_style="bold")
        for col in ("provider", "plugin", "models", "status") + (("health",) if check else ()):
            table.add_column(col, overflow="fold")
        for row in rows:
            name = row["name"] + (" (default)" if row["default"] else "")
            models = ", ".join(row["models"][:SHOWN_MODELS]) + (
                f", ... ({len(row['models'])} in all; --json lists them)" if len(row["models"]) > SHOWN_MODELS else "")
            plugin = row["plugin"] or ""
            plugin = "built-in" if plugin.startswith("chief.plugins.") else plugin
            cells = [name, plugin, models, row["status"]]
            if check:
                health = row["health"]
                colour = {True: "green", False: "red", None: "dim"}[health["ok"]]
                cells.append(f"[{colour}]" + health["detail"].replace("[", r"\[") + f"[/{colour}]")
            table.add_row(*cells)
        console.print(table)
        for note in notes:
            console.print(f"note: {note}", markup=False)
    return EXIT_FAILED if check and any(r["health"]["ok"] is False for r in rows if r["default"]) else EXIT_OK
