"""chief-example-plugin: one of each thing a Chief plugin can register.

- agent `haiku`: asks its provider for a haiku and returns exactly three lines;
- provider `reverse`: the last user message's words in reverse order (no network), streamed
  word by word when the caller passes `on_token`;
- extractor `todo`: `.todo` files -> their open items;
- workflow folder `workflows/` with the `haiku` workflow.

Hooks are synchronous and do no I/O: they only hand objects to `register`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from chief.core.agents import Completion, ExtractedFile
from chief.core.errors import ChiefError, ProviderError
from chief.core.hookspecs import hookimpl

__version__ = "0.1.0"
WORKFLOWS = Path(__file__).parent / "workflows"


class HaikuAgent:
    """Writes a haiku about the step's prompt: asks its provider, then shapes the answer into three lines."""

    name = "haiku"
    description = "Writes a three-line haiku about a topic."
    capabilities = ("poetry", "haiku")
    provider = "reverse"  # its default; a step's `provider:` or the chat's choice still wins
    model = None

    async def run(self, task: Any, ctx: Any) -> str:
        completion = await ctx.complete([
            {"role": "system", "content": "You write haiku: three short lines, 5-7-5 syllables."},
            {"role": "user", "content": task.prompt},
        ])
        return three_lines(completion.text)


def three_lines(text: str) -> str:
    """The text as three lines: its first three lines, or its words spread over three lines."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) >= 3:
        return "\n".join(lines[:3])
    words = text.split()
    if not words:
        raise ChiefError("haiku: the provider answered with nothing")
    size = max(1, -(-len(words) // 3))
    return "\n".join(" ".join(words[i:i + size]) for i in range(0, len(words), size))


class ReverseProvider:
    """A stand-in for a real model: the words of the last user message, last first."""

    name = "reverse"
    default_model = "reverse-1"

    async def complete(self, messages: Any, *, model: str | None = None, **options: Any) -> Completion:
        user = [m["content"] for m in messages if m.get("role") == "user"]
        if not user:
            raise ProviderError("reverse: there is no user message to answer", retryable=False)
        words = user[-1].split()[::-1]
        on_token = options.get("on_token")
        for i, word in enumerate(words):  # stream as a real provider would: one piece at a time
            if on_token is not None:
                outcome = on_token(word if i == 0 else " " + word)
                if inspect.isawaitable(outcome):
                    await outcome
        text = " ".join(words)
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in messages)
        return Completion(text=text, model=model or self.default_model, tokens_in=prompt_words,
                          tokens_out=len(words), tokens_estimated=True)  # words, not real tokens: say so


class TodoExtractor:
    """`.todo` files: lines `[ ] open item` and `[x] done item` -> the open items."""

    name = "todo"
    mime_types = ("text/x-todo",)
    extensions = (".todo",)

    def extract(self, path: str, mime_type: str) -> ExtractedFile:
        raw = Path(path).read_text(encoding="utf-8", errors="replace")
        items = [line.strip() for line in raw.splitlines() if line.strip()]
        if not items or not all(line.startswith(("[ ]", "[x]", "[X]")) for line in items):
            raise ChiefError(f"{Path(path).name} is not a todo list: every line must start with [ ] or [x]")
        open_items = [line[3:].strip() for line in items if line.startswith("[ ]")]
        return ExtractedFile(name=Path(path).name, mime_type=mime_type,
                             text="\n".join(f"- {item}" for item in open_items),
                             meta={"open": len(open_items), "done": len(items) - len(open_items)})


@hookimpl
def register_agents(register: Any) -> None:
    """The haiku agent."""
    register(HaikuAgent())


@hookimpl
def register_providers(register: Any) -> None:
    """The reverse provider."""
    register(ReverseProvider())


@hookimpl
def register_extractors(register: Any) -> None:
    """The .todo extractor."""
    register(TodoExtractor())


@hookimpl
def register_workflow_dirs(register: Any) -> None:
    """The folder with the haiku workflow."""
    register(WORKFLOWS)
