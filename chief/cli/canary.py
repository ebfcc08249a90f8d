"""`chief canary ...`: give a new workflow version or model a growing share of runs, watch it, promote or roll back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ..core.canary import DEFAULT_STAGES, Canary, CanaryError, Thresholds, decide, parse_model, parse_stages
from .common import EXIT_OK, console, fmt_time, open_store, run_async, to_json
from .main import cli

_DEFAULTS = Thresholds()


@cli.group()
def canary() -> None:
    """Canary routes: a new workflow version or model takes 10% -> 25% -> 50% -> 100% of runs.

    It moves up a stage when, over the stage, its error rate and p50 latency hold against the stable
    arm, and is rolled back (every new run stable again) when they do not. Decisions are made when a
    canary run finishes and by `chief canary status`. See docs/canary.md.
    """


def _threshold_options(func: Any) -> Any:
    options = [
        click.option("--stages", default=",".join(map(str, DEFAULT_STAGES)), show_default=True,
                     help="The candidate's share of runs at each stage, in percent; the last is 100."),
        click.option("--min-runs", type=int, default=_DEFAULTS.min_runs, show_default=True,
                     help="Finished candidate runs a stage needs before it is judged."),
        click.option("--max-error-increase", type=float, default=_DEFAULTS.max_error_increase, show_default=True,
                     help="Largest error-rate increase over the stable arm that still holds (0.05 = 5 points)."),
        click.option("--max-latency-ratio", type=float, default=_DEFAULTS.max_latency_ratio, show_default=True,
                     help="Largest candidate p50 / stable p50 that still holds."),
        click.option("--latency-slack-ms", type=float, default=_DEFAULTS.latency_slack_ms, show_default=True,
                     help="A p50 difference below this never counts as slower."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _policy(stages: str, min_runs: int, max_error_increase: float, max_latency_ratio: float,
            latency_slack_ms: float) -> tuple[list[int], Thresholds]:
    return parse_stages(stages), Thresholds(max_error_increase=max_error_increase,
                                            max_latency_ratio=max_latency_ratio, min_runs=min_runs,
                                            latency_slack_ms=latency_slack_ms)


@canary.group()
def start() -> None:
    """Start a canary for a workflow version or a model."""


@start.command("workflow")
@click.argument("name")
@click.option("--candidate", "candidate_file", required=True, type=click.Path(),
              help="The new version: a workflow file whose name is NAME.")
@_threshold_options
@run_async
async def start_workflow(name: str, candidate_file: str, **policy: Any) -> int:
    """Give runs of workflow NAME the version in --candidate, a share at a time.

    The stable arm is the version runs use now (the last promoted canary's, else NAME's file).
    """
    from ..core.plugins import get_registry
    from ..core.store.canary import CanaryStore
    from ..core.workflows import load_workflow
    from .common import resolve_workflow

    stages, thresholds = _policy(**policy)
    registry = get_registry()
    if not Path(candidate_file).is_file():
        raise CanaryError(f"--candidate '{candidate_file}': no such file")
    candidate = load_workflow(candidate_file, agents=set(registry.agents), capabilities=set(registry.capabilities()))
    if candidate.name != name:
        raise CanaryError(f"--candidate '{candidate_file}' is workflow '{candidate.name}', not '{name}'")
    async with open_store() as store:
        canaries = CanaryStore(store)
        promoted = next((c for c in await canaries.active() if c.kind == "workflow" and c.subject == name), None)
        if promoted is not None and promoted.status == "running":
            raise CanaryError(f"canary {promoted.id} is already running for workflow '{name}'")
        if promoted is not None:
            stable_record = await store.get_workflow(promoted.candidate)
            stable_inputs = (stable_record.definition.get("inputs") or {}) if stable_record else {}
            stable_id = promoted.candidate
        else:
            stable = resolve_workflow(name)
            saved = await store.save_workflow(stable.name, str(stable.version), stable.model_dump(mode="json"),
                                              source=stable.source)
            stable_inputs, stable_id = stable.model_dump(mode="json").get("inputs") or {}, saved.id
        _check_inputs(name, stable_inputs, candidate)
        saved = await store.save_workflow(candidate.name, str(candidate.version), candidate.model_dump(mode="json"),
                                          source=str(Path(candidate_file).resolve()))
        if saved.id == stable_id:
            raise CanaryError(f"--candidate '{candidate_file}' is the same as the stable version of '{name}'")
        created = await canaries.create("workflow", name, stable_id, saved.id, stages, thresholds)
    console.print(f"canary [bold]{created.id}[/bold] started: workflow {name} v{candidate.version} takes "
                  f"{created.share}% of runs (stages {', '.join(f'{s}%' for s in stages)})")
    return EXIT_OK


def _check_inputs(name: str, stable_inputs: dict[str, Any], candidate: Any) -> None:
    """Runs of `name` give the stable version's inputs: the candidate must take them all, and need no other."""
    dropped = sorted(k for k in stable_inputs if k not in candidate.inputs)
    if dropped:
        raise CanaryError(f"the candidate does not take input(s) {', '.join(dropped)} of the stable version "
                          f"of '{name}': runs that give them would fail on the candidate arm")
    needed = sorted(k for k, spec in candidate.inputs.items()
                    if spec.required and spec.default is None and k not in stable_inputs)
    if needed:
        raise CanaryError(f"the candidate requires input(s) {', '.join(needed)} that runs of '{name}' do not give "
                          "(give them a default)")


@start.command("model")
@click.argument("agent", default="*")
@click.option("--candidate", required=True, metavar="PROVIDER:MODEL", help="The new model, e.g. openai:gpt-4o-mini.")
@click.option("--stable", metavar="PROVIDER:MODEL",
              help="The model runs use now (default: $CHIEF_PROVIDER and $CHIEF_MODEL).")
@_threshold_options
@run_async
async def start_model(agent: str, candidate: str, stable: str | None, **policy: Any) -> int:
    """Give steps of AGENT (default `*`: every agent) the model in --candidate, a share of runs at a time.

    The model replaces the global default only: a step or agent that names its own provider keeps it.
    """
    from ..core.config import Settings
    from ..core.plugins import get_registry
    from ..core.store.canary import CanaryStore

    stages, thresholds = _policy(**policy)
    registry = get_registry()
    if agent != "*":
        registry.agent(agent)  # UnknownAgent with a did-you-mean
    provider, model = parse_model(candidate)
    registry.provider(provider)  # UnknownProvider with the list
    if stable is None:
        settings = Settings()
        stable = f"{settings.provider}:{settings.model or registry.provider(settings.provider).default_model}"
    registry.provider(parse_model(stable)[0])
    if stable == candidate:
        raise CanaryError(f"--candidate {candidate} is the stable model already")
    async with open_store() as store:
        created = await CanaryStore(store).create("model", agent, stable, candidate, stages, thresholds)
    who = "every agent" if agent == "*" else f"agent {agent}"
    console.print(f"canary [bold]{created.id}[/bold] started: {candidate} (stable {stable}) for {who} takes "
                  f"{created.share}% of runs (stages {', '.join(f'{s}%' for s in stages)})")
    return EXIT_OK


async def _find(canaries: Any, canary_id: str) -> Canary:
    found = await canaries.get(canary_id)
    if found is None:
        raise CanaryError(f"no canary '{canary_id}' (see `chief canary status`)")
    return found


@canary.command()
@click.argument("canary_id", required=False)
@click.option("--all", "show_all", is_flag=True, help="Also canaries that are over (promoted, rolled back).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable list.")
@run_async
async def status(canary_id: str | None, show_all: bool, as_json: bool) -> int:
    """Show canaries and their arms over the current stage; judge the running ones (promote / roll back)."""
    from ..core.canary import apply, stage_stats
    from ..core.store.canary import CanaryStore

    async with open_store() as store:
        canaries = CanaryStore(store)
        if canary_id:
            listed = [await _find(canaries, canary_id)]
        else:
            listed = [c for c in await canaries.list_all() if show_all or c.active]
        rows = []
        for c in listed:
            stable, candidate = stage_stats(c, await canaries.runs(c.id))
            decision = None
            if c.status == "running":
                decision = decide(c, stable, candidate)
                if await apply(canaries, c, decision):
                    c = await _find(canaries, c.id)
            rows.append((c, stable, candidate, decision))
    if as_json:
        print(to_json([{"id": c.id, "kind": c.kind, "subject": c.subject, "status": c.status, "share": c.share,
                        "stage": c.stage_index, "stages": c.stages, "stable": c.stable, "candidate": c.candidate,
                        "thresholds": c.thresholds.as_dict(), "reason": c.reason,
                        "decision": d.action if d else None,
                        "arms": {"stable": s.__dict__ | {"error_rate": s.error_rate},
                                 "candidate": k.__dict__ | {"error_rate": k.error_rate}}}
                       for c, s, k, d in rows]))
        return EXIT_OK
    if not rows:
        console.print("no active canaries" + ("" if show_all else " (--all shows finished ones)"))
        return EXIT_OK
    table = Table(box=None, header_style="bold")
    for col in ("id", "kind", "subject", "status", "share", "stable", "candidate", "started"):
        table.add_column(col, overflow="fold")
    for c, _, _, _ in rows:
        stage = f"{c.share}%" + (f" ({c.stage_index + 1}/{len(c.stages)})" if c.status == "running" else "")
        table.add_row(c.id, c.kind, c.subject, c.status, stage, _short(c.stable), _short(c.candidate),
                      fmt_time(c.created_at))
    console.print(table)
    for c, s, k, d in rows:
        console.print(f"{c.id}  stable: {s.describe()}  |  candidate: {k.describe()}", markup=False)
        note = d.reason if d is not None and d.action == "hold" else c.reason
        if note:
            console.print(f"{c.id}  {note}", markup=False)
    return EXIT_OK


def _short(ref: str) -> str:
    return ref[:12] if ":" not in ref else ref


@canary.command()
@click.argument("canary_id")
@click.option("--reason", default="promoted by hand", show_default=True)
@run_async
async def promote(canary_id: str, reason: str) -> int:
    """Move a running canary to its next stage now (from the last stage: promoted, every run takes it)."""
    from ..core.store.canary import CanaryStore

    async with open_store() as store:
        canaries = CanaryStore(store)
        c = await _find(canaries, canary_id)
        if c.status != "running":
            raise CanaryError(f"canary {c.id} is {c.status}; only a running canary can be promoted")
        if c.stage_index + 1 < len(c.stages):
            done = await canaries.advance(c.id, c.stage_index, c.stage_index + 1, reason)
        else:
            done = await canaries.finish(c.id, "promoted", reason)
        if not done:
            raise CanaryError(f"canary {c.id} changed meanwhile; see `chief canary status {c.id}`")
        c = await _find(canaries, c.id)
    console.print(f"canary {c.id}: {c.status}, candidate takes {c.share}% of runs")
    return EXIT_OK


@canary.command()
@click.argument("canary_id")
@click.option("--reason", default="rolled back by hand", show_default=True)
@run_async
async def rollback(canary_id: str, reason: str) -> int:
    """Roll a canary back: every new run takes the stable arm (runs already started finish as they are)."""
    from ..core.store.canary import CanaryStore

    async with open_store() as store:
        canaries = CanaryStore(store)
        c = await _find(canaries, canary_id)
        if not await canaries.finish(c.id, "rolled_back", reason, from_statuses=("running", "promoted")):
            raise CanaryError(f"canary {c.id} is {c.status}; only a running or promoted canary can be rolled back")
    console.print(f"canary {c.id}: rolled back; new runs take the stable arm ({_short(c.stable)})")
    return EXIT_OK
