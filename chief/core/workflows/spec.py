"""The workflow file format: pydantic models for a workflow, its steps, inputs and retry policy.

The older seed format is accepted and means the same: `dependencies` is `depends_on`,
`timeoutMs` is `timeout_s` in milliseconds, `retryPolicy: {maxRetries, retryDelayMs,
retryBackoffMultiplier}` is `retry`, and a top-level `config:` may use camelCase keys. A workflow
that declares no `inputs:` (as seed workflows never did) treats every bare `{{ name }}` that is not
a step key as a required string input.

Models are plain data: cross-step checks (unknown dependency, cycle, template naming a step that is
not upstream, ...) live in `validate.py`, so every problem can be reported at once.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ..errors import InputError, Problem, TemplateError
from .templates import template_refs

KEY_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"
RESERVED_NAMES = frozenset({"inputs", "steps", "item", "index"})

# Older names accepted for a canonical field, per model; used to normalise and to point at lines.
STEP_ALIASES: dict[str, tuple[str, ...]] = {
    "depends_on": ("dependencies",),
    "timeout_s": ("timeoutMs", "timeout_ms"),
    "retry": ("retryPolicy", "retry_policy"),
}
CONFIG_ALIASES: dict[str, tuple[str, ...]] = {
    "timeout_s": ("timeoutMs", "timeout_ms"),
    "retry": ("retryPolicy", "retry_policy"),
    "max_parallel": ("maxParallel", "maxParallelSteps", "max_parallel_steps"),
}
RETRY_ALIASES: dict[str, tuple[str, ...]] = {
    "attempts": ("maxRetries", "max_retries"),
    "backoff_s": ("retryDelayMs", "retry_delay_ms"),
    "multiplier": ("retryBackoffMultiplier", "retry_backoff_multiplier"),
}
_MS_FIELDS = frozenset({"timeoutMs", "timeout_ms"})


def _rename(data: dict[str, Any], aliases: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """Move older field names to their canonical name (converting units); both given is an error."""
    if not any(a in data for names in aliases.values() for a in names):
        return data
    data = dict(data)
    for canonical, names in aliases.items():
        for alias in names:
            if alias not in data:
                continue
            if canonical in data:
                raise ValueError(f"give '{canonical}' or its older name '{alias}', not both")
            value = data.pop(alias)
            if alias in _MS_FIELDS and isinstance(value, int | float) and not isinstance(value, bool):
                value = value / 1000
            elif canonical == "retry" and isinstance(value, dict):
                value = _legacy_retry(value)
            data[canonical] = value
    return data


def _legacy_retry(policy: dict[str, Any]) -> dict[str, Any]:
    """`retryPolicy: {maxRetries, retryDelayMs, retryBackoffMultiplier}` as a `retry:` mapping."""
    out = {k: v for k, v in policy.items() if not any(k in names for names in RETRY_ALIASES.values())}
    for canonical, names in RETRY_ALIASES.items():
        for alias in names:
            if alias not in policy:
                continue
            value = policy[alias]
            numeric = isinstance(value, int | float) and not isinstance(value, bool)
            if canonical == "attempts" and numeric:
                value = value + 1
            elif canonical == "backoff_s" and numeric:
                value = value / 1000
            out[canonical] = value
    return out


def normalise_step(data: dict[str, Any]) -> dict[str, Any]:
    """A step mapping with older field names moved to the current ones (ValueError if both given)."""
    data = _rename(data, STEP_ALIASES)
    if isinstance(data.get("depends_on"), str):
        data = {**data, "depends_on": [data["depends_on"]]}
    elif "depends_on" in data and data["depends_on"] is None:
        data = {**data, "depends_on": []}
    if "inputs" in data and data["inputs"] is None:
        data = {**data, "inputs": {}}
    return data


class RetrySpec(BaseModel):
    """How often a failed step is tried and how long to wait between attempts (exponential backoff)."""

    model_config = ConfigDict(extra="forbid")

    attempts: int = Field(3, ge=1, description="total attempts, including the first")
    backoff_s: float = Field(1.0, ge=0)
    multiplier: float = Field(2.0, ge=1)
    max_backoff_s: float = Field(30.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _accept_seed_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and any(a in data for names in RETRY_ALIASES.values() for a in names):
            return _legacy_retry(data)
        return data

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return min(self.backoff_s * self.multiplier ** max(attempt - 1, 0), self.max_backoff_s)


InputType = Literal["string", "number", "integer", "boolean", "list", "object", "file", "files"]


class InputSpec(BaseModel):
    """A workflow input. In YAML a plain string is its description: `git_diff: "The change"`."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    required: bool = False
    default: Any = None
    type: InputType = "string"

    @model_validator(mode="before")
    @classmethod
    def _from_description(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, str):
            return {"description": data}
        return data


Priority = Literal["low", "normal", "high", "critical"]


class StepSpec(BaseModel):
    """One step: an agent (by name or capability) or a sub-workflow, with its prompt and wiring."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=KEY_PATTERN)
    description: str = ""
    agent: str | None = None
    capability: str | None = None
    workflow: str | None = None
    prompt: str = ""
    depends_on: list[str] = Field(default_factory=list)
    when: str | None = None
    for_each: str | None = None
    approval: bool = False
    retry: RetrySpec | None = None
    timeout_s: float | None = Field(None, gt=0)
    provider: str | None = None
    model: str | None = None
    priority: Priority | None = None
    cache: bool = True
    optional: bool = False
    inputs: dict[str, Any] = Field(default_factory=dict)
    parallel: bool | None = None  # seed format; informational only: parallelism comes from the graph

    @model_validator(mode="before")
    @classmethod
    def _accept_seed_names(cls, data: Any) -> Any:
        return normalise_step(data) if isinstance(data, dict) else data

    @field_validator("depends_on")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _one_target(self) -> StepSpec:
        given = [f for f in ("agent", "capability", "workflow") if getattr(self, f)]
        if len(given) != 1:
            which = " and ".join(given) if given else "none"
            raise ValueError(f"give exactly one of agent, capability or workflow (got {which})")
        if not self.workflow and not self.prompt.strip():
            raise ValueError("prompt is required (only a workflow: step may leave it out)")
        return self

    @property
    def kind(self) -> Literal["agent", "capability", "workflow"]:
        """Which of agent, capability or workflow this step names."""
        if self.agent:
            return "agent"
        return "capability" if self.capability else "workflow"

    @property
    def target(self) -> str:
        """The agent name, capability or sub-workflow this step runs."""
        return self.agent or self.capability or self.workflow or ""

    def template_fields(self) -> list[tuple[str, str]]:
        """(field, text) of every template of this step: prompt, for_each, when, inputs.<name>."""
        out = [("prompt", self.prompt)]
        if self.for_each:
            out.append(("for_each", self.for_each))
        if self.when:
            out.append(("when", self.when))
        for name, value in self.inputs.items():
            out.extend((f"inputs.{name}{sub}", text) for sub, text in _strings_in(value))
        return out


def _strings_in(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Every string inside a (nested) value, with its sub-path (`.a.0`)."""
    if isinstance(value, str):
        return [(prefix, value)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings_in(v, f"{prefix}.{k}")]
    if isinstance(value, list | tuple):
        return [s for i, v in enumerate(value) for s in _strings_in(v, f"{prefix}.{i}")]
    return []


class WorkflowConfig(BaseModel):
    """Workflow-wide defaults: step timeout and retry, parallelism cap, provider and model."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float | None = Field(None, gt=0)
    retry: RetrySpec | None = None
    max_parallel: int | None = Field(None, ge=1)
    provider: str | None = None
    model: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _accept_seed_names(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, dict):
            return _rename(data, CONFIG_ALIASES)
        return data


class LineIndex(Protocol):
    """Where things are in the source text: the line of a path such as ("steps", 2, "prompt")."""

    def line(self, path: tuple[str | int, ...]) -> int | None: ...


class WorkflowSpec(BaseModel):
    """A workflow: named inputs and a graph of steps. Treat it as immutable once loaded.

    `source` is the file it came from (set by the loader). Two specs are equal when their fields
    are, wherever they came from.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=KEY_PATTERN)
    description: str = ""
    version: str = "1"
    author: str | None = None
    tags: list[str] = Field(default_factory=list)
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: list[StepSpec] = Field(min_length=1)
    output: str | None = None
    config: WorkflowConfig = Field(default_factory=WorkflowConfig)

    _source: str | None = PrivateAttr(default=None)
    _lines: LineIndex | None = PrivateAttr(default=None)
    _implicit: tuple[str, ...] = PrivateAttr(default=())
    _cache_token: tuple[int, int] | None = PrivateAttr(default=None)
    _by_key: dict[str, StepSpec] = PrivateAttr(default_factory=dict)
    _dependents: dict[str, list[str]] = PrivateAttr(default_factory=dict)

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    @field_validator("inputs", "tags", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any, info: Any) -> Any:
        if value is None:
            return {} if info.field_name == "inputs" else []
        return value

    @model_validator(mode="after")
    def _declare_implicit_inputs(self) -> WorkflowSpec:
        if not self.inputs:
            names = implicit_input_names(self.steps, self.output)
            self.inputs = {n: InputSpec(required=True) for n in names}
            self._implicit = tuple(names)
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkflowSpec):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]

    # --- where it came from -------------------------------------------------------------
    @property
    def source(self) -> str | None:
        """The file this workflow was loaded from, if any."""
        return self._source

    @source.setter
    def source(self, value: str | None) -> None:
        self._source = value

    @property
    def implicit_inputs(self) -> tuple[str, ...]:
        """Inputs that were not declared but used as bare `{{ name }}` (seed format)."""
        return self._implicit

    def line_of(self, *path: str | int) -> int | None:
        """The 1-based source line of a path such as `("steps", 2, "depends_on")`, when known."""
        return self._lines.line(tuple(path)) if self._lines is not None else None

    def set_line_index(self, index: LineIndex | None) -> None:
        """Attach where each part of the spec is in its source text (used by the loader)."""
        self._lines = index

    # --- steps -------------------------------------------------------------------------
    def _index(self) -> None:
        token = (id(self.steps), len(self.steps))
        if self._cache_token == token:
            return
        by_key: dict[str, StepSpec] = {}
        dependents: dict[str, list[str]] = {}
        for step in self.steps:
            by_key.setdefault(step.key, step)
            dependents.setdefault(step.key, [])
        for step in self.steps:
            for dep in step.depends_on:
                if dep in dependents and step.key not in dependents[dep]:
                    dependents[dep].append(step.key)
        self._by_key, self._dependents, self._cache_token = by_key, dependents, token

    @property
    def steps_by_key(self) -> dict[str, StepSpec]:
        """Steps by key (the first one, if a key is duplicated), in file order."""
        self._index()
        return self._by_key

    def step(self, key: str) -> StepSpec:
        """The step with this key; KeyError names the known keys if there is none."""
        try:
            return self.steps_by_key[key]
        except KeyError:
            raise KeyError(f"no step '{key}' in workflow '{self.name}'") from None

    def dependents(self, key: str) -> list[str]:
        """The steps that list `key` in their `depends_on`, in file order."""
        self._index()
        return list(self._dependents.get(key, ()))

    def sinks(self) -> list[str]:
        """Steps no other step depends on (their results make the default output), in file order."""
        self._index()
        return [k for k, deps in self._dependents.items() if not deps]

    # --- defaults ----------------------------------------------------------------------
    def effective_retry(self, step: StepSpec | str) -> RetrySpec:
        """The step's retry policy, else the workflow's, else the default (3 attempts)."""
        s = self.step(step) if isinstance(step, str) else step
        return s.retry or self.config.retry or RetrySpec()

    def effective_timeout(self, step: StepSpec | str) -> float | None:
        """The step's timeout in seconds, else the workflow's, else None (no limit)."""
        s = self.step(step) if isinstance(step, str) else step
        return s.timeout_s if s.timeout_s is not None else self.config.timeout_s

    def bind_inputs(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The inputs for a run: `values` (strings coerced to the declared type) plus defaults.

        Raises `InputError` (a `WorkflowError`) listing every missing, unknown or mistyped input.
        """
        values = dict(values or {})
        where = self.source or self.name
        problems: list[Problem] = []
        for name in values:
            if name not in self.inputs:
                close = difflib.get_close_matches(name, list(self.inputs), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"inputs: {', '.join(self.inputs) or 'none'}"
                problems.append(Problem(f"unknown input '{name}' ({hint})", where))
        bound: dict[str, Any] = {}
        for name, spec in self.inputs.items():
            if name in values:
                try:
                    bound[name] = _coerce_input(spec.type, values[name])
                except ValueError:
                    problems.append(Problem(f"input '{name}' must be {spec.type}, got {str(values[name])[:40]!r}", where))
            elif spec.required and spec.default is None:
                what = f" ({spec.description})" if spec.description else ""
                problems.append(Problem(f"missing required input '{name}'{what}", where))
            else:
                bound[name] = spec.default
        if problems:
            raise InputError(problems)
        return bound

    def content_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of the spec; equal specs hash equal."""
        dump = self.model_dump(mode="json")
        text = json.dumps(dump, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def implicit_input_names(steps: list[StepSpec], output: str | None) -> list[str]:
    """Bare `{{ name }}`s that are not step keys, in order of first use (seed-format inputs)."""
    keys = {s.key for s in steps}
    texts = [text for s in steps for _, text in s.template_fields()]
    if output:
        texts.append(output)
    names: dict[str, None] = {}
    for text in texts:
        try:
            refs = template_refs(text)
        except TemplateError:
            continue  # validation reports it
        for ref in refs:
            if ref.bare and ref.name not in keys and ref.name not in RESERVED_NAMES:
                names.setdefault(ref.name)
    return list(names)


def _coerce_input(kind: str, value: Any) -> Any:
    """A value given as text (command line, chat) turned into the declared type; ValueError if it is not one."""
    if not isinstance(value, str):
        return value
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if kind == "boolean":
        lowered = value.strip().lower()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise ValueError(value)
    if kind in ("list", "object", "files") and value.strip()[:1] in ("[", "{"):
        return json.loads(value)
    return value
