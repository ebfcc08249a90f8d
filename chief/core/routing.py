"""Which provider and model answer a completion, and whose plugin to blame when one raises.

Precedence, highest first (each level may name a provider, a model, or both):

1. the step (`provider:` / `model:` in the workflow, i.e. `StepTask.provider` / `.model`);
2. the agent's defaults (`agent.provider` / `agent.model`);
3. the conversation's setting (the chat's model picker), passed in by the caller;
4. the global default (`CHIEF_PROVIDER` / `CHIEF_MODEL`, or `chief run --provider/--model`);
5. the chosen provider's own `default_model`.

The provider comes from the highest level that names one. The model comes from the highest
level that names one, except that a model named *below* the level that chose the provider is
used only if that level names no provider or the same one: a global `CHIEF_MODEL=gpt-4o` for
`openai` is never sent to a step that asked for `anthropic`. A family name such as
`llm:mistral-7b` or `openai:gpt-4o` names its model too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .agents import Provider
from .errors import ChiefError, PluginError, ProviderError

LEVELS = ("step", "agent", "conversation", "global")
BUILT_IN_PREFIX = "chief.plugins."  # built-in plugins' names: their errors already say whose they are


@dataclass(frozen=True)
class ModelChoice:
    """A provider and/or model named at one level (None: this level does not say)."""

    provider: str | None = None
    model: str | None = None

    @classmethod
    def of(cls, value: ModelChoice | Mapping[str, Any] | None) -> ModelChoice:
        """From a `ModelChoice`, a mapping with `provider`/`model` keys (chat settings), or None."""
        if value is None:
            return cls()
        if isinstance(value, ModelChoice):
            return value
        return cls(provider=(value.get("provider") or None), model=(value.get("model") or None))


@dataclass(frozen=True)
class Route:
    """The decision: the provider (its registered name and the object) and the model to ask."""

    provider_name: str
    model: str
    provider: Provider
    provider_source: str  # "step" | "agent" | "conversation" | "global"
    model_source: str  # one of the above, or "provider" (its default_model)


def choose_route(
    registry: Any,
    task: Any | None = None,
    agent: Any | None = None,
    *,
    conversation: ModelChoice | Mapping[str, Any] | None = None,
    default: ModelChoice | Mapping[str, Any] | None = None,
) -> Route:
    """Decide the provider and model of one completion (see the module docstring for the precedence).

    `task` is the `StepTask` (or None outside a step, e.g. the Chief planning in chat); `agent`
    the agent running it (or None); `conversation` the chat's setting; `default` the global
    default (None: `CHIEF_PROVIDER` / `CHIEF_MODEL` from the environment). Raises
    `UnknownProvider` when the chosen name is not registered.
    """
    if default is None:
        from .config import Settings

        settings = Settings()
        default = ModelChoice(settings.provider, settings.model)
    levels = [
        ("step", ModelChoice(getattr(task, "provider", None), getattr(task, "model", None))),
        ("agent", ModelChoice(getattr(agent, "provider", None), getattr(agent, "model", None))),
        ("conversation", ModelChoice.of(conversation)),
        ("global", ModelChoice.of(default)),
    ]
    levels = [(name, _with_family_model(registry, choice)) for name, choice in levels]
    chosen = next(((i, name, c.provider) for i, (name, c) in enumerate(levels) if c.provider), None)
    if chosen is None:  # nobody named one (a `default` without provider): the registry's default
        index, provider_source, provider_name = len(levels) - 1, "global", registry.default_provider_name
    else:
        index, provider_source, provider_name = chosen
    provider = registry.provider(provider_name)
    for i, (name, choice) in enumerate(levels):
        if choice.model and (i <= index or choice.provider in (None, provider_name)):
            return Route(provider_name, choice.model, provider, provider_source, name)
    return Route(provider_name, provider.default_model, provider, provider_source, "provider")


def _with_family_model(registry: Any, choice: ModelChoice) -> ModelChoice:
    """`llm:mistral-7b` with no model names the model `mistral-7b` (unless that exact name is registered)."""
    name = choice.provider
    if choice.model or not name or ":" not in name or name in getattr(registry, "providers", {}):
        return choice
    return ModelChoice(name, name.partition(":")[2] or None)


def blame(registry: Any, kind: str, name: str, exc: BaseException) -> BaseException:
    """`exc` raised by the plugin's `kind` ("agent" / "provider") `name`, with the plugin's name in its message.

    Unexpected exceptions (a plugin's bug) become a `PluginError` naming the plugin; a third-party
    `ProviderError` keeps its class's `retryable` and gains the plugin's name. Chief's own errors
    (timeouts, unknown names, built-in providers' errors, which already say what to do) and an
    error blamed once already come back unchanged. The new error's `__cause__` is the original;
    its `plugin` attribute is the plugin's name.
    """
    owner = registry.owner_of(kind, name) if hasattr(registry, "owner_of") else None
    if owner is None or getattr(exc, "plugin", None):
        return exc
    if isinstance(exc, ChiefError) and not (isinstance(exc, ProviderError) and not owner.startswith(BUILT_IN_PREFIX)):
        return exc
    text = " ".join(str(exc).split())
    detail = text if isinstance(exc, ChiefError) else (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    message = f"plugin '{owner}' ({kind} '{name}'): {detail}"
    new: BaseException = (ProviderError(message, retryable=exc.retryable) if isinstance(exc, ProviderError)
                          else PluginError(message))
    new.plugin = owner  # type: ignore[attr-defined]
    new.__cause__ = exc
    return new
