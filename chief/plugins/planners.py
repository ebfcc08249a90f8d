"""Built-in planners: the catalog planner (offline) and the model planner (asks the configured model).

The catalog planner picks among the registered workflows by what the request says (their names,
descriptions, tags and inputs) and what was attached; the model planner asks for a `WorkflowSpec` as JSON,
validates it, and sends the problems back for a bounded number of tries. With the offline provider the
model planner steps aside, so the catalog planner (then the `answer` fallback) plans every request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from chief.core.agents import ExtractedFile
from chief.core.chief import Plan, fill_inputs, parse_pairs
from chief.core.errors import WorkflowError
from chief.core.hookspecs import hookimpl
from chief.core.workflows import WorkflowSpec, spec_from_data

_WORD = re.compile(r"[a-z0-9]+")
_STOP = set(
    "a an the this that these those of for to in on at by with and or is are be it its my our your me us "
    "please can could would you i we do does make give some any all about from as into what how why".split()
)
# Words a request uses for what a workflow's tags say.
_SYNONYMS = {
    "review": ("review", "audit", "check", "inspect"),
    "security": ("security", "secure", "vulnerability", "vulnerabilities", "exploit", "injection"),
    "summary": ("summary", "summarise", "summarize", "digest", "tldr", "overview", "recap"),
    "data": ("data", "dataset", "spreadsheet", "csv", "xlsx", "table", "statistics", "analyse", "analyze"),
    "research": ("research", "report", "investigate", "explain", "study"),
    "release": ("release", "changelog", "announcement", "notes"),
}
_DATA_MIMES = ("text/csv", "application/json", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
MIN_SCORE = 3.0


def words(text: str) -> list[str]:
    """Lower-case words of `text` without stop words."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def _expand(tokens: Sequence[str]) -> set[str]:
    out = set(tokens)
    for canon, variants in _SYNONYMS.items():
        if out & set(variants) or canon in out:
            out |= {canon, *variants}
    # crude stemming: "reviews" -> "review", "summarising" -> "summarise"
    out |= {t[:-1] for t in tokens if t.endswith("s") and len(t) > 3}
    return out


def score(spec: WorkflowSpec, request: str, files: Sequence[ExtractedFile]) -> float:
    """How well a workflow fits a request and its files (0: not at all)."""
    asked = _expand(words(request))
    total = 0.0
    name_words = set(words(spec.name.replace("-", " ")))
    total += 3.0 * len(asked & name_words)
    total += 2.0 * len(asked & set(_expand([w for t in spec.tags for w in words(t)])))
    total += 0.5 * len(asked & set(words(spec.description)))
    takes_files = any(i.type in ("file", "files") for i in spec.inputs.values())
    if files:
        mimes = {f.mime_type for f in files}
        if takes_files:
            total += 1.5
        if mimes & set(_DATA_MIMES) and "data" in spec.tags:
            total += 3.0
        if "text/x-diff" in mimes and "diff" in spec.tags:
            total += 3.0
        if mimes & {"text/x-code"} and "code" in spec.tags:
            total += 1.5
    return total


class CatalogPlanner:
    """Offline: the registered workflow whose name, tags, description and inputs best fit the request."""

    name = "catalog"
    priority = 200  # after third-party planners (default 100) and the model planner

    async def plan(self, request: str, files: Sequence[ExtractedFile], context: dict[str, Any]) -> Plan | None:
        """The best-fitting workflow (not `answer`), or None when none fits well enough."""
        given, text = parse_pairs(request)
        catalog: dict[str, WorkflowSpec] = context.get("catalog") or {}
        ranked = sorted(((score(spec, text, files), name) for name, spec in catalog.items() if name != "answer"),
                        reverse=True)
        if not ranked or ranked[0][0] < MIN_SCORE:
            return None
        best, name = ranked[0]
        spec = catalog[name]
        inputs = fill_inputs(spec, text, files, given)
        try:
            spec.bind_inputs(inputs)
        except WorkflowError:
            return None  # it fits the words but the message does not give what it needs
        return Plan(spec, inputs, planner=self.name,
                    reason=f"'{name}' fits the request best ({spec.description.strip()[:160]})")


_PROMPT = """You are the Chief-of-Staff of a team of AI agents. Plan the user's request as a workflow.
Answer with ONE JSON object and nothing else: {{"workflow": <workflow>, "inputs": {{...}}}}.
<workflow> follows this JSON schema:
{schema}
Agents you may use (a step names an `agent` or a `capability`):
{agents}
Existing workflows you may reuse as they are (then "workflow" may be just {{"use": "<name>"}}):
{catalog}
Step prompts use templates: {{{{inputs.NAME}}}} for an input, {{{{STEP.result}}}} for an earlier step's result
(the step must be in depends_on, directly or not). Independent steps run in parallel.
Uploaded files, if any, are given as the input `files` (type "files"; each item has name and text)."""


def _agents_text(agents: Sequence[dict[str, Any]]) -> str:
    return "\n".join(f"- {a['name']}: {a['description']} (capabilities: {', '.join(a['capabilities'])})"
                     for a in agents)


def _json_in(text: str) -> Any:
    """The JSON object in a model's reply (code fences and prose around it are ignored)."""
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    body = fenced.group(1) if fenced else text
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the reply")
    return json.loads(body[start:end + 1])


class ModelPlanner:
    """Asks the configured model for a workflow as JSON; validation problems go back to it, a few times."""

    name = "model"
    priority = 150  # after third-party planners (default 100), before the catalog planner

    def __init__(self, max_attempts: int = 3) -> None:
        self.max_attempts = max_attempts

    async def plan(self, request: str, files: Sequence[ExtractedFile], context: dict[str, Any]) -> Plan | None:
        """A plan the model wrote and Chief validated, or None (offline provider, or no valid plan in time)."""
        if context.get("provider") in (None, "offline") or context.get("complete") is None:
            return None  # the offline provider writes no plans; the catalog planner does better
        catalog: dict[str, WorkflowSpec] = context.get("catalog") or {}
        agents = context.get("agents") or []
        system = _PROMPT.format(
            schema=json.dumps(WorkflowSpec.model_json_schema(), separators=(",", ":")),
            agents=_agents_text(agents),
            catalog="\n".join(f"- {n}: {s.description.strip()}" for n, s in catalog.items()) or "(none)",
        )
        # The files' full texts come with the call (the Chief fits them into the model's window whole, or
        # leaves one out with a marker line): no preview cut mid-file here.
        listing = "\n".join(f"- {f.name} ({f.mime_type}, {len(f.text)} chars)" for f in files)
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": request + (f"\n\nAttached files:\n{listing}" if listing else "")}]
        names = {a["name"] for a in agents}
        capabilities = {c for a in agents for c in a["capabilities"]}
        for _ in range(self.max_attempts):
            reply = await context["complete"](messages)
            try:
                plan = self._check(reply, request, files, catalog, names, capabilities)
            except (ValueError, WorkflowError) as exc:
                problems = [str(p) for p in exc.problems] if isinstance(exc, WorkflowError) else [str(exc)]
                messages += [{"role": "assistant", "content": reply},
                             {"role": "user", "content": "That plan is not valid:\n- " + "\n- ".join(problems)
                              + "\nAnswer again with the corrected JSON object only."}]
                continue
            return plan
        return None

    def _check(self, reply: str, request: str, files: Sequence[ExtractedFile], catalog: dict[str, WorkflowSpec],
               agents: set[str], capabilities: set[str]) -> Plan:
        data = _json_in(reply)
        if not isinstance(data, dict) or "workflow" not in data:
            raise ValueError('the reply must be a JSON object with a "workflow" key')
        workflow, given = data["workflow"], data.get("inputs") or {}
        if not isinstance(given, dict):
            raise ValueError('"inputs" must be an object')
        if isinstance(workflow, dict) and set(workflow) == {"use"}:
            if workflow["use"] not in catalog:
                raise ValueError(f"there is no workflow named {workflow['use']!r}; known: {', '.join(catalog)}")
            spec = catalog[workflow["use"]]
        else:
            spec = spec_from_data(workflow, source="<model plan>", agents=agents, capabilities=capabilities,
                                  workflows=list(catalog))
        inputs = {**fill_inputs(spec, request, files), **given}
        spec.bind_inputs(inputs)  # missing or mistyped inputs go back to the model too
        return Plan(spec, inputs, planner=self.name, reason="planned by the model")


@hookimpl
def register_planners(register: Any) -> None:
    """Register the model planner (only with a real model) and the catalog planner; plugin planners go first."""
    register(ModelPlanner())
    register(CatalogPlanner())
