"""The Chief-of-Staff: a chat request (+ files + conversation) becomes a plan — a `WorkflowSpec` and its inputs.

Planners come from the `register_planners` hook and are asked in order of their `priority` (lower first;
default 100, so a plugin's specific planner goes before the built-in model planner (150) and catalog
planner (200)); a planner returns None for requests that are not its own. The first that returns a plan wins; when none does, the plan is the `answer` workflow (one
`assistant` step), so every request gets a reply. A planner may return a `Plan`, a `(spec, inputs)` pair,
or a bare `WorkflowSpec` (its inputs are then filled here from the message and files).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..agents import Completion, ExtractedFile, Message
from ..context import Part, fit_prompt, summary_request, window_for
from ..errors import ChiefError, ContextTooLarge, PlanError, WorkflowError
from ..routing import ModelChoice, Route, choose_route
from ..workflows import WorkflowSpec, levels, load_workflows_dir

log = logging.getLogger(__name__)

ANSWER = "answer"
_PAIR = re.compile(r"(?<![\w/])([A-Za-z_][\w-]*)=(\"[^\"]*\"|'[^']*'|\S+)")


@dataclass
class Plan:
    """What the Chief will run: a workflow, its inputs, who planned it and why."""

    spec: WorkflowSpec
    inputs: dict[str, Any]
    planner: str
    reason: str = ""
    problems: list[str] = field(default_factory=list)  # what earlier planners got wrong (shown to the user)
    notes: list[str] = field(default_factory=list)  # what context management left out or summarised
    model: str | None = None  # "provider/model" the planning call went to, when a planner asked a model
    tokens: dict[str, Any] | None = None  # planning calls' {"tokens_in", "tokens_out", "estimated", "calls"}

    def order(self) -> list[list[str]]:
        """The steps level by level: steps in one level run side by side."""
        return levels(self.spec)


def parse_pairs(text: str) -> tuple[dict[str, str], str]:
    """`key=value` pairs in a message (quotes allowed) and the message without them."""
    pairs: dict[str, str] = {}

    def take(match: re.Match[str]) -> str:
        value = match.group(2)
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        pairs[match.group(1)] = value
        return ""

    rest = _PAIR.sub(take, text)
    return pairs, " ".join(rest.split())


def files_text(files: Sequence[ExtractedFile]) -> str:
    """The files' texts, each under its name, for a string input."""
    if len(files) == 1:
        return files[0].text
    return "\n\n".join(f"### {f.name}\n\n{f.text}" for f in files)


def file_item(f: ExtractedFile) -> dict[str, Any]:
    """A file as a `files` input item: `{{item.name}}`, `{{item.text}}`, `{{item.mime}}`."""
    return {"name": f.name, "mime": f.mime_type, "text": f.text}


_CONTENT_WORDS = ("diff", "change", "code", "text", "content", "document", "data", "file", "log", "source")
_QUESTION_NAMES = ("question", "focus", "request", "topic", "query", "goal")


def fill_inputs(spec: WorkflowSpec, request: str, files: Sequence[ExtractedFile],
                given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Inputs for `spec` from the message and the files (explicit `key=value` pairs win).

    `files`/`file` inputs get the uploads; the first required text input gets the files' text when
    there are files and no files-typed input took them (a diff for `git_diff`), else the request;
    optional inputs named like a question (`question`, `focus`, `topic`...) get the request.
    """
    values: dict[str, Any] = {k: v for k, v in (given or {}).items() if k in spec.inputs}
    files_taken = False
    for name, inp in spec.inputs.items():
        if name in values:
            continue
        if inp.type == "files" and files:
            values[name] = [file_item(f) for f in files]
            files_taken = True
        elif inp.type == "file" and files:
            values[name] = file_item(files[0])
            files_taken = True
    for name, inp in spec.inputs.items():
        if name in values or inp.type not in ("string",):
            continue
        about = f"{name} {inp.description}".lower()
        if inp.required:
            if files and not files_taken and any(w in about for w in _CONTENT_WORDS):
                values[name] = files_text(files)
                files_taken = True
            elif files and not files_taken and name == "request":
                values[name] = f"{request}\n\n{files_text(files)}" if request else files_text(files)
                files_taken = True
            else:
                values[name] = request or files_text(files)
        elif request and name in _QUESTION_NAMES and files_taken:
            values[name] = request
    return values


class ChiefOfStaff:
    """Plans chat requests with the registered planners; falls back to the `answer` workflow."""

    def __init__(self, registry: Any, *, catalog: dict[str, WorkflowSpec] | None = None,
                 provider: str | None = None, model: str | None = None) -> None:
        self.registry = registry
        self._catalog = catalog
        self.provider_name = provider or getattr(registry, "default_provider_name", None) or "offline"
        self.model = model

    def catalog(self) -> dict[str, WorkflowSpec]:
        """The registered workflows by name (first folder wins); invalid folders are logged and skipped."""
        if self._catalog is None:
            found: dict[str, WorkflowSpec] = {}
            for folder in getattr(self.registry, "workflow_dirs", []):
                try:
                    specs = load_workflows_dir(Path(folder))
                except ChiefError as exc:
                    log.warning("workflow folder %s skipped: %s", folder, exc)
                    continue
                for name, spec in specs.items():
                    found.setdefault(name, spec)
            self._catalog = found
        return self._catalog

    def planners(self) -> list[Any]:
        """The registered planners, lowest `priority` first (registration order breaks ties)."""
        planners = list(getattr(self.registry, "planners", []))
        return sorted(planners, key=lambda p: getattr(p, "priority", 100))

    def route(self, conversation: ModelChoice | dict[str, Any] | None = None) -> Route:
        """Where planning completions go: the conversation's model setting, else the Chief's default."""
        return choose_route(self.registry, None, None, conversation=conversation,
                            default=ModelChoice(self.provider_name, self.model))

    async def complete(self, messages: Sequence[dict[str, str]]) -> str:
        """Ask the configured provider (for planners that use a model)."""
        return await self.completer(self.route())(messages)

    def completer(self, route: Route, history: Sequence[Message] = (), files: Sequence[ExtractedFile] = (),
                  notes: list[str] | None = None, calls: list[tuple[str, Completion]] | None = None) -> Any:
        """A planner's `complete(messages)`: the planner's messages plus the conversation history and the
        files, fitted into the model's window (`chief.core.context`); what was left out goes to `notes`,
        and each call's `provider/model` and completion (its tokens) to `calls`."""
        parts = [Part(f.name, f.text) for f in files if f.text]
        summaries: dict[tuple[int, int], str] = {}  # a planner's retries reuse the summary

        async def summarise(turns: list[Message], limit: int) -> str:
            key = (len(turns), limit)
            if key not in summaries:
                done = await route.provider.complete(summary_request(turns, limit), model=route.model,
                                                     max_tokens=limit)
                summaries[key] = done.text
            return summaries[key]

        async def complete(messages: Sequence[dict[str, str]], **options: Any) -> str:
            window = window_for(route.provider, route.model, max_tokens=options.get("max_tokens"))
            fitted = await fit_prompt(messages, window=window, where="the Chief's planning call",
                                      history=history, parts=parts, summarise=summarise)
            if notes is not None:
                notes.extend(n for n in fitted.notes if n not in notes)
            completion = await route.provider.complete(fitted.messages, model=route.model, **options)
            if calls is not None:
                calls.append((f"{route.provider_name}/{route.model}", completion))
            return completion.text

        return complete

    def context(self, history: Sequence[dict[str, str]] = (), *, route: Route | None = None,
                files: Sequence[ExtractedFile] = (), notes: list[str] | None = None,
                calls: list[tuple[str, Completion]] | None = None) -> dict[str, Any]:
        """What a planner gets besides the request and files (`complete` sends the history and files too)."""
        agents = [{"name": a.name, "description": a.description, "capabilities": list(a.capabilities)}
                  for a in getattr(self.registry, "agents", {}).values()]
        complete = self.completer(route, history, files, notes, calls) if route is not None else None
        return {"catalog": self.catalog(), "agents": agents,
                "provider": route.provider_name if route is not None else None,
                "model": route.model if route is not None else None,
                "complete": complete, "history": list(history), "fill_inputs": fill_inputs}

    async def plan(self, request: str, files: Sequence[ExtractedFile] = (),
                   history: Sequence[dict[str, str]] = (), *,
                   conversation: ModelChoice | dict[str, Any] | None = None) -> Plan:
        """The plan for a request: the first planner's answer, else the `answer` workflow.

        `conversation` is the chat's model setting (`{"provider", "model"}`); model planners ask that
        model, with the conversation `history` and the `files` fitted into its context window.
        """
        given, text = parse_pairs(request)
        problems: list[str] = []
        notes: list[str] = []
        calls: list[tuple[str, Completion]] = []
        try:
            route: Route | None = self.route(conversation)
        except ChiefError as exc:  # e.g. the conversation names a provider that is not installed
            route = None
            problems.append(f"model setting: {exc}")
        context = self.context(history, route=route, files=files, notes=notes, calls=calls)
        for planner in self.planners():
            asked_before = len(calls)
            try:
                result = await planner.plan(request, list(files), context)
            except WorkflowError as exc:
                problems.extend(str(p) for p in exc.problems)
                continue
            except ContextTooLarge as exc:  # said plainly: the request and files are too big for this model
                problems.append(f"planner {getattr(planner, 'name', '?')}: {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - a broken planner must not break the chat
                log.warning("planner %s failed: %s", getattr(planner, "name", planner), exc)
                problems.append(f"planner {getattr(planner, 'name', '?')}: {exc}")
                continue
            plan = self._as_plan(result, planner, text, files, given)
            if plan is not None:
                plan.problems = problems + plan.problems
                plan.notes = notes + [n for n in plan.notes if n not in notes]
                if plan.model is None and len(calls) > asked_before:
                    plan.model = calls[-1][0]
                plan.tokens = _planning_tokens([c for _, c in calls]) if calls else None
                return plan
        plan = self.answer(request, files, problems)
        plan.notes = notes
        plan.tokens = _planning_tokens([c for _, c in calls]) if calls else None
        return plan

    def answer(self, request: str, files: Sequence[ExtractedFile] = (), problems: Sequence[str] = ()) -> Plan:
        """The plain reply: the `answer` workflow (one `assistant` step)."""
        spec = self.catalog().get(ANSWER)
        if spec is None:
            raise PlanError("no planner had a plan and there is no 'answer' workflow to fall back to")
        return Plan(spec, fill_inputs(spec, request, files), planner="fallback",
                    reason="no workflow fits, so the assistant answers directly", problems=list(problems))

    def _as_plan(self, result: Any, planner: Any, request: str, files: Sequence[ExtractedFile],
                 given: dict[str, Any]) -> Plan | None:
        name = getattr(planner, "name", type(planner).__name__)
        if result is None:
            return None
        if isinstance(result, Plan):
            return result
        if isinstance(result, tuple):
            spec, inputs = result
            return Plan(spec, {**fill_inputs(spec, request, files, given), **(inputs or {})}, planner=name)
        if isinstance(result, WorkflowSpec):
            return Plan(result, fill_inputs(result, request, files, given), planner=name)
        raise PlanError(f"planner {name} returned {type(result).__name__}, not a plan")


def _planning_tokens(completions: Sequence[Completion]) -> dict[str, Any]:
    """Token totals of the planning calls (a planner may ask more than once)."""
    return {"tokens_in": sum(c.tokens_in or 0 for c in completions),
            "tokens_out": sum(c.tokens_out or 0 for c in completions),
            "estimated": any(c.tokens_estimated or c.tokens_in is None for c in completions),
            "calls": len(completions)}
