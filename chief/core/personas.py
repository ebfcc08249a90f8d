"""Agents defined as data: a persona (a system prompt and capabilities) and the no-op echo agent."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .agents import AgentContext, Message
from .context import fit_prompt, window_of
from .messages import StepTask


@dataclass(frozen=True)
class PersonaAgent:
    """An agent that is only data: it sends its system prompt and the step's prompt to its provider.

    `provider` and `model` are the agent's defaults (None: the global default); the worker
    routes the call, so the agent never names a provider itself.
    """

    name: str
    description: str
    capabilities: Sequence[str]
    system_prompt: str
    provider: str | None = None
    model: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # passed to `ctx.complete` (e.g. temperature)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError("a persona needs a non-empty string name")
        if isinstance(self.capabilities, str):
            raise ValueError(f"persona '{self.name}': capabilities must be a list of strings, not one string")
        object.__setattr__(self, "capabilities", tuple(self.capabilities))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PersonaAgent:
        """Build a persona from a mapping with the field names above (unknown keys are an error)."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"persona {data.get('name', '?')!r}: unknown field(s) {', '.join(sorted(unknown))}")
        return cls(**data)

    def messages(self, task: StepTask) -> list[Message]:
        """The conversation this persona sends for `task`."""
        return [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": task.prompt},
        ]

    async def run(self, task: StepTask, ctx: AgentContext) -> str:
        """Ask the provider (through `ctx`) and return the completion's text.

        The prompt is checked against the routed model's context window first (`chief.core.context`):
        a prompt that cannot fit fails the step with `ContextTooLarge` instead of being cut.
        """
        options = dict(self.options)
        window = window_of(ctx, max_tokens=options.get("max_tokens"))
        fitted = await fit_prompt(self.messages(task), window=window, where=f"step '{task.step_key}'")
        completion = await ctx.complete(fitted.messages, **options)
        return completion.text


@dataclass(frozen=True)
class EchoAgent:
    """A no-op agent that returns the step's prompt and calls no provider (tests, benchmarks)."""

    name: str = "echo"
    description: str = "Returns the step's prompt unchanged, without calling any AI provider."
    capabilities: Sequence[str] = ("echo",)
    provider: str | None = None
    model: str | None = None

    async def run(self, task: StepTask, ctx: AgentContext) -> str:
        """Return `task.prompt`."""
        return task.prompt
