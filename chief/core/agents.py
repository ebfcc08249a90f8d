"""What plugins implement: agents, providers, extractors, planners, and the context an agent runs in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .messages import StepTask


@dataclass
class Completion:
    """A provider's answer to one `complete()` call."""

    text: str
    model: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    tokens_estimated: bool = False


Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": "..."}


@runtime_checkable
class Provider(Protocol):
    """An AI provider: turns chat messages into a completion.

    Options every provider should accept in `complete(**options)` (and ignore if it cannot use
    them): `on_token`, a callable (sync or async) given each piece of text as it is generated, so
    a chat can stream the answer into its step; the full text is still returned in the
    `Completion`, with token counts from the provider's usage (or estimated, and marked
    `tokens_estimated=True`). Also common: `temperature`, `max_tokens`. Optional extras that
    `chief providers` uses when present: `models() -> list[str]`, `status() -> str` (one line,
    never a key), `configured() -> bool`, and `for_model(model)` for a family of names
    `<name>:<model>` (e.g. `llm:mistral-7b`).
    """

    name: str
    default_model: str

    async def complete(self, messages: Sequence[Message], *, model: str | None = None, **options: Any) -> Completion:
        """Answer the conversation (streaming into `options["on_token"]` if given); raise `ProviderError`
        on failure (with `retryable` set)."""
        ...


class AgentContext:
    """What an agent may use while it runs: its provider (routed), the task, and a logger of its own.

    Agents reach providers only through `complete()`, so routing, breaker, cache and token
    accounting apply to every agent.
    """

    def __init__(
        self,
        task: StepTask,
        complete: Callable[..., Awaitable[Completion]],
        *,
        attempt: int = 1,
    ):
        self.task = task
        self.attempt = attempt
        self._complete = complete
        self.provider_name: str | None = None  # set by the router on the first completion
        self.completions: list[Completion] = []
        # Set by the worker: the provider/model route of this task (`routing.Route`), for agents that
        # size their prompts to the model's context window (`chief.core.context`). None outside a worker.
        self.route: Callable[[], Any] | None = None

    async def complete(self, messages: Sequence[Message], **options: Any) -> Completion:
        """Ask the step's provider (or the agent's default) to complete `messages`."""
        result = await self._complete(messages, **options)
        self.completions.append(result)
        return result


@runtime_checkable
class Agent(Protocol):
    """An agent: a named worker with capabilities that turns a step's prompt into a result."""

    name: str
    description: str
    capabilities: Sequence[str]
    provider: str | None  # default provider name; None means the global default
    model: str | None

    async def run(self, task: StepTask, ctx: AgentContext) -> Any:
        """Do the step; return text or JSON-able data. Raise to fail the attempt."""
        ...


@dataclass
class ExtractedFile:
    """Text extracted from an uploaded file."""

    name: str
    mime_type: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Extractor(Protocol):
    """Turns a file of some types into text."""

    name: str
    mime_types: Sequence[str]
    extensions: Sequence[str]

    def extract(self, path: str, mime_type: str) -> ExtractedFile:
        """Extract the file's text; raise `ChiefError` with a clear message if it cannot."""
        ...


@runtime_checkable
class Planner(Protocol):
    """Turns a chat request into a workflow spec (used by the Chief-of-Staff)."""

    name: str

    async def plan(self, request: str, files: Sequence[ExtractedFile], context: dict[str, Any]) -> Any:
        """Return a `WorkflowSpec` (with inputs) or None when this planner has no plan."""
        ...
