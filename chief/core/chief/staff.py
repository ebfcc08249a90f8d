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

from ..agents import ExtractedFile
from ..errors import ChiefError, PlanError, WorkflowError
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

    async def complete(self, messages: Sequence[dict[str, str]]) -> str:
        """Ask the configured provider (for planners that use a model)."""
        provider = self.registry.provider(self.provider_name)
        completion = await provider.complete(messages, model=self.model or None)
        return completion.text

    def context(self, history: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
        """What a planner gets besides the request and files."""
        agents = [{"name": a.name, "description": a.description, "capabilities": list(a.capabilities)}
                  for a in getattr(self.registry, "agents", {}).values()]
        return {"catalog": self.catalog(), "agents": agents, "provider": self.provider_name,
                "complete": self.complete, "history": list(history), "fill_inputs": fill_inputs}

    async def plan(self, request: str, files: Sequence[ExtractedFile] = (),
                   history: Sequence[dict[str, str]] = ()) -> Plan:
        """The plan for a request: the first planner's answer, else the `answer` workflow."""
        given, text = parse_pairs(request)
        context = self.context(history)
        problems: list[str] = []
        for planner in self.planners():
            try:
                result = await planner.plan(request, list(files), context)
            except WorkflowError as exc:
                problems.extend(str(p) for p in exc.problems)
                continue
            except Exception as exc:  # noqa: BLE001 - a broken planner must not break the chat
                log.warning("planner %s failed: %s", getattr(planner, "name", planner), exc)
                problems.append(f"planner {getattr(planner, 'name', '?')}: {exc}")
                continue
            plan = self._as_plan(result, planner, text, files, given)
            if plan is not None:
                plan.problems = problems + plan.problems
                return plan
        return self.answer(request, files, problems)

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
