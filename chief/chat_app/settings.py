"""The chat's per-conversation model setting (Chainlit chat settings) and how token totals are shown.

The setting is a provider (a Select of the registered providers, or the default) and a model (free
text; empty: the provider's default). It is kept in the conversation and in its thread's metadata
(`chief_model`), so a reopened conversation keeps it; it routes the Chief's planning call and every
step of the runs started from the conversation at the "conversation" level (`chief.core.routing`).
"""

from __future__ import annotations

from typing import Any

from chainlit.input_widget import Select, TextInput

from ..core.accounting import PriceTable, Usage
from ..core.errors import ChiefError

DEFAULT = "default"
METADATA_KEY = "chief_model"
MAX_MODEL_CHARS = 200


def widgets(registry: Any, choice: dict[str, str] | None, *, default_provider: str) -> list[Any]:
    """The settings panel: a provider Select (the registry's providers) and a model TextInput."""
    names = sorted(getattr(registry, "providers", {}) or {})
    items = {f"default ({default_provider})": DEFAULT, **{name: name for name in names}}
    current = (choice or {}).get("provider") or DEFAULT
    if current not in items.values():
        items[current] = current  # a setting kept from before whose plugin is gone: still shown
    return [
        Select(id="provider", label="Provider", items=items, initial_value=current,
               description="Where this conversation's planning and steps go (unless a step or agent names one)"),
        TextInput(id="model", label="Model", initial=(choice or {}).get("model") or "",
                  placeholder="the provider's default model",
                  description="e.g. gpt-4o-mini, claude-3-5-haiku-latest, llama3.1:8b"),
    ]


def choice_from(settings: dict[str, Any], registry: Any) -> dict[str, str] | None:
    """The conversation's model choice from the panel's values (None: the defaults); ChiefError if invalid."""
    provider = str(settings.get("provider") or "").strip()
    model = str(settings.get("model") or "").strip()
    if provider in ("", DEFAULT):
        provider = ""
    if provider and provider not in (getattr(registry, "providers", {}) or {}):
        known = ", ".join(sorted(getattr(registry, "providers", {}) or {}))
        raise ChiefError(f"no provider '{provider}' is installed (installed: {known})")
    if len(model) > MAX_MODEL_CHARS or any(c.isspace() for c in model):
        raise ChiefError(f"'{model[:60]}' is not a model name (one word, at most {MAX_MODEL_CHARS} characters)")
    choice = {k: v for k, v in (("provider", provider), ("model", model)) if v}
    return choice or None


def describe(choice: dict[str, str] | None, *, default_provider: str) -> str:
    """E.g. `openai · gpt-4o-mini`, or `the default (offline)`."""
    if not choice:
        return f"the default ({default_provider})"
    provider = choice.get("provider") or f"default provider ({default_provider})"
    return f"{provider} · {choice.get('model') or 'its default model'}"


def prices() -> tuple[PriceTable | None, str | None]:
    """The price table (`CHIEF_PRICES`), or None; and the error text when it cannot be read."""
    try:
        return PriceTable.from_env(), None
    except ChiefError as exc:
        return None, str(exc)


def usage_text(usage: Usage, *, problem: str | None = None) -> str:
    """One line: `Tokens: ~1,204 in / ~310 out (~ estimated) · cost 0.0012`, or that none were reported."""
    if not usage.calls:
        text = "Tokens: none reported (no model was called)"
    else:
        text = "Tokens: " + usage.summary().replace(" tokens", "")
    if problem:
        text += f" · cost unknown: {problem}"
    return text


def usage_table(usage: Usage) -> str:
    """The totals by provider/model as a Markdown table (for `/usage`)."""
    mark = "~" if usage.estimated else ""
    lines = ["| provider/model | tokens in | tokens out |", "| --- | --- | --- |"]
    for key, counts in sorted(usage.by_model.items()):
        lines.append(f"| `{key}` | {mark}{counts['tokens_in']:,} | {mark}{counts['tokens_out']:,} |")
    return "\n".join(lines)
