"""Keeping a prompt within the model's context window, by a stated policy (docs/context.md).

A prompt is built from parts of different weight:

- the **fixed part**: the system prompt and the step's own prompt (for the Chief, the planner's
  messages). It always goes in whole; if it alone does not fit, the call fails with
  `ContextTooLarge`, naming where, the tokens needed and the window.
- **files and earlier results**: each goes in *whole* or is left out with a visible marker line
  that names it, its size in tokens and why (the window of model X is N tokens). Never cut mid-file.
- **conversation history**: the newest turns are kept; what does not fit is handled by the policy:
  `truncate_oldest` (default) drops the oldest turns; `summarise` replaces them with one summary made
  by the same provider (if that call fails, or the summary does not fit, the turns are dropped as with
  `truncate_oldest`, and the notes say so).

The window of a model: the provider's `context_window(model) -> int | None` when it has one, else
`KNOWN_WINDOWS` (well-known model families), else `CHIEF_CONTEXT_TOKENS` (default 8192). A reserve is
kept for the answer: the call's `max_tokens` when given, else 1/8 of the window. Tokens are estimated
with `accounting.estimate_tokens` (no tokenizer download; it errs on the high side for code).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .accounting import estimate_tokens
from .agents import Message
from .errors import ContextConfigError, ContextTooLarge

log = logging.getLogger(__name__)

POLICIES = ("truncate_oldest", "summarise")
DEFAULT_POLICY = "truncate_oldest"
DEFAULT_WINDOW = 8192
MESSAGE_OVERHEAD = 4  # tokens a chat API spends per message on roles and separators
SUMMARY_MAX_TOKENS = 512
MIN_SUMMARY_TOKENS = 64  # below this room a summary says too little to be worth a call

# Context windows of well-known model families, by name prefix (the longest matching prefix wins).
KNOWN_WINDOWS: dict[str, int] = {
    "gpt-5": 400_000, "gpt-4.1": 1_047_576, "gpt-4o": 128_000, "gpt-4-turbo": 128_000, "gpt-4-32k": 32_768,
    "gpt-4": 8_192, "gpt-3.5-turbo": 16_385, "o1": 200_000, "o3": 200_000, "o4-mini": 200_000,
    "claude": 200_000, "llama3.1": 131_072, "llama3.2": 131_072, "llama3.3": 131_072, "llama-3.1": 131_072,
    "llama3": 8_192, "mistral": 32_768, "mixtral": 32_768, "qwen2.5": 32_768, "qwen3": 40_960,
    "gemma2": 8_192, "gemma3": 131_072, "phi3": 4_096, "phi4": 16_384, "deepseek": 65_536,
}


@dataclass(frozen=True)
class Window:
    """A model's context window, and the part of it kept for the answer."""

    model: str
    tokens: int
    reserve: int
    source: str  # "provider" | "table" | "CHIEF_CONTEXT_TOKENS" | "default"

    @property
    def budget(self) -> int:
        """Tokens the prompt may use."""
        return max(self.tokens - self.reserve, 0)

    def describe(self) -> str:
        """E.g. `the window of model gpt-4 is 8,192 tokens`."""
        return f"the window of model {self.model} is {self.tokens:,} tokens"


def env_window() -> tuple[int, str]:
    """`CHIEF_CONTEXT_TOKENS` (a positive integer) or the default 8192, with where it came from."""
    raw = os.environ.get("CHIEF_CONTEXT_TOKENS", "").strip()
    if not raw:
        return DEFAULT_WINDOW, "default"
    try:
        value = int(raw.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise ContextConfigError(f"CHIEF_CONTEXT_TOKENS must be a positive whole number of tokens, got {raw!r}")
    return value, "CHIEF_CONTEXT_TOKENS"


def policy_from_env() -> str:
    """`CHIEF_CONTEXT_POLICY`: `truncate_oldest` (default) or `summarise` (`summarize` is accepted)."""
    raw = os.environ.get("CHIEF_CONTEXT_POLICY", "").strip().lower() or DEFAULT_POLICY
    raw = {"summarize": "summarise", "truncate": "truncate_oldest"}.get(raw, raw)
    if raw not in POLICIES:
        raise ContextConfigError(f"CHIEF_CONTEXT_POLICY must be one of {', '.join(POLICIES)}, got {raw!r}")
    return raw


def known_window(model: str | None) -> int | None:
    """The window of a well-known model family (`KNOWN_WINDOWS`), or None."""
    if not model:
        return None
    names = {model.lower(), model.lower().rsplit("/", 1)[-1]}
    best: tuple[int, int] | None = None
    for name in names:
        for prefix, tokens in KNOWN_WINDOWS.items():
            if name.startswith(prefix) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), tokens)
    return best[1] if best else None


def window_for(provider: Any, model: str | None, *, max_tokens: int | None = None) -> Window:
    """The window for `model` at `provider` (provider's own answer > known table > environment)."""
    label = model or getattr(provider, "default_model", None) or "?"
    tokens: int | None = None
    source = "provider"
    ask = getattr(provider, "context_window", None)
    if callable(ask):
        try:
            tokens = ask(label)
        except Exception as exc:  # noqa: BLE001 - a provider's bad guess must not fail the step
            log.warning("provider %s: context_window(%r) failed: %s", getattr(provider, "name", "?"), label, exc)
            tokens = None
        if tokens is not None and (not isinstance(tokens, int) or tokens <= 0):
            tokens = None
    if tokens is None:
        tokens, source = known_window(label), "table"
    if tokens is None:
        tokens, source = env_window()
    reserve = int(max_tokens) if isinstance(max_tokens, int | float) and max_tokens and max_tokens > 0 else tokens // 8
    return Window(model=label, tokens=tokens, reserve=min(reserve, tokens - 1), source=source)


def count(message: Message) -> int:
    """Tokens of one message (its text plus the per-message overhead)."""
    return estimate_tokens(str(message.get("content", ""))) + MESSAGE_OVERHEAD


@dataclass(frozen=True)
class Part:
    """A file or an earlier result: goes into the prompt whole, or is left out with a marker."""

    name: str
    text: str
    kind: str = "file"  # "file" | "result"

    def block(self) -> str:
        """How the part appears in the prompt."""
        return f"### {self.kind} {self.name}\n\n{self.text}"


@dataclass
class Fitted:
    """The prompt that fits, and what was done to make it fit."""

    messages: list[Message]
    tokens: int
    window: Window
    notes: list[str] = field(default_factory=list)  # one line per thing left out / summarised (shown to users)
    left_out: list[str] = field(default_factory=list)  # names of files / results left out
    dropped_turns: int = 0  # history turns not in the prompt (summarised ones included)
    summarised_turns: int = 0  # history turns replaced by the summary


Summariser = Callable[[list[Message], int], Awaitable[str]]  # (turns to summarise, max tokens) -> summary text


def newest_that_fit(turns: Sequence[Message], room: int) -> tuple[list[Message], int]:
    """The newest `turns` that fit in `room` tokens (in their order; none after the first that does not
    fit), and the room left."""
    kept: list[Message] = []
    for turn in reversed(turns):
        size = count(turn)
        if size > room:
            break
        kept.insert(0, turn)
        room -= size
    return kept, room


async def fit_prompt(
    messages: Sequence[Message],
    *,
    window: Window,
    where: str,
    history: Sequence[Message] = (),
    parts: Sequence[Part] = (),
    policy: str | None = None,
    summarise: Summariser | None = None,
) -> Fitted:
    """Fit `messages` (the fixed part), `parts` and `history` into `window` by the policy (module docstring).

    The result is: the leading system message(s), then the summary of older turns (if any), the kept
    history turns, and the fixed messages, with the files/results block (and markers) at the start of
    the first fixed user message. `where` names the call in errors ("step 'review'").
    """
    policy = policy or policy_from_env()
    if policy not in POLICIES:
        raise ContextConfigError(f"context policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    fixed = [dict(m) for m in messages]
    budget = window.budget
    needed = sum(count(m) for m in fixed)
    if needed > budget:
        raise ContextTooLarge(
            f"{where}: the prompt alone needs ~{needed:,} tokens, but {window.describe()} "
            f"({window.reserve:,} kept for the answer, so {budget:,} for the prompt); shorten the input or "
            "choose a model with a larger window",
            needed=needed, window=window.tokens,
        )
    fitted = Fitted(messages=[], tokens=needed, window=window)
    room = budget - needed

    # Files and earlier results: whole or not at all, in the order given.
    blocks: list[str] = []
    for part in parts:
        block = part.block()
        size = estimate_tokens(block) + 2  # the blank line joining it to the rest
        if size <= room:
            blocks.append(block)
            room -= size
            continue
        marker = (f"[{part.kind} '{part.name}' left out: {estimate_tokens(part.text):,} tokens do not fit; "
                  f"{window.describe()}]")
        blocks.append(marker)
        room -= estimate_tokens(marker) + 2
        fitted.left_out.append(part.name)
        fitted.notes.append(marker.strip("[]"))
    room = max(room, 0)

    # History: newest turns first while they fit.
    turns = [dict(m) for m in history if m.get("content")]
    kept, room = newest_that_fit(turns, room)
    dropped = turns[: len(turns) - len(kept)]
    summary: Message | None = None
    if dropped and policy == "summarise":
        summary, room, kept, dropped = await _summarise(dropped, kept, room, window, summarise, fitted)
    fitted.dropped_turns = len(dropped) + fitted.summarised_turns
    if dropped and policy == "truncate_oldest":
        fitted.notes.append(f"the {len(dropped)} oldest turn(s) of the conversation were left out "
                                f"(truncate_oldest): {window.describe()}")

    system = [m for m in fixed if m.get("role") == "system"]
    rest = [m for m in fixed if m.get("role") != "system"]
    if blocks:
        text = "\n\n".join(blocks)
        first_user = next((m for m in rest if m.get("role") == "user"), None)
        if first_user is None:
            rest.insert(0, {"role": "user", "content": text})
        else:
            first_user["content"] = f"{text}\n\n{first_user.get('content', '')}"
    fitted.messages = system + ([summary] if summary else []) + kept + rest
    fitted.tokens = sum(count(m) for m in fitted.messages)
    for note in fitted.notes:
        log.info("%s: %s", where, note)
    return fitted


async def _summarise(dropped: list[Message], kept: list[Message], room: int, window: Window,
                     summarise: Summariser | None, fitted: Fitted
                     ) -> tuple[Message | None, int, list[Message], list[Message]]:
    """Replace `dropped` turns by one summary; on any failure, leave them dropped and say so.

    Returns (summary or None, room left, kept turns, turns left out without a summary).
    """
    before = (None, room, list(kept), list(dropped))  # what truncation alone gives: the fallback
    kept = list(kept)
    # Make room for a useful summary by letting more old turns go into it.
    while room < MIN_SUMMARY_TOKENS and kept:
        turn = kept.pop(0)
        room += count(turn)
        dropped = [*dropped, turn]
    limit = min(SUMMARY_MAX_TOKENS, room - MESSAGE_OVERHEAD - 16)
    n = len(dropped)
    if summarise is None:
        fitted.notes.append(f"the {len(dropped)} oldest turn(s) were left out: no summariser was given "
                            "(truncate_oldest)")
        return before
    if limit < MIN_SUMMARY_TOKENS // 2:
        fitted.notes.append(f"the {len(before[3])} oldest turn(s) were left out: no room for a summary; "
                            f"{window.describe()}")
        return before
    # The summary call has the same window (its answer's room included): give it the newest dropped turns
    # that fit.
    room_for_input = window.tokens - limit - sum(count(m) for m in summary_request([], limit))
    source, _ = newest_that_fit(dropped, room_for_input)
    try:
        if not source:
            raise ValueError("even the newest turn to summarise does not fit the model's window")
        text = (await summarise(source, limit)).strip()
        if not text:
            raise ValueError("the summary came back empty")
        message: Message = {"role": "user", "content": f"(Summary of the {n} earlier turn(s) of this conversation:"
                                                       f" {text})"}
        size = count(message)
        if size > room:
            raise ValueError(f"the summary is ~{size:,} tokens, over the {room:,} left")
    except Exception as exc:  # noqa: BLE001 - a failed summary falls back to truncation, visibly
        fitted.notes.append(f"summarising the {len(before[3])} oldest turn(s) failed ({_one_line(exc)}); they "
                            "were left out instead (truncate_oldest)")
        return before
    fitted.summarised_turns = n
    skipped = n - len(source)
    fitted.notes.append(f"the {n} oldest turn(s) of the conversation were replaced by a summary (summarise)"
                        + (f"; the {skipped} oldest of them did not fit the summary call and were left out"
                           if skipped else "") + f": {window.describe()}")
    return message, room - size, kept, []


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:200]


def window_of(ctx: Any, *, max_tokens: int | None = None) -> Window:
    """The window of the model an agent's completions go to.

    The worker gives each `AgentContext` a `route()` (the routed provider and model); a context without
    one (a test's) gets the environment's window (`CHIEF_CONTEXT_TOKENS`, default 8192).
    """
    route = getattr(ctx, "route", None)
    if callable(route):
        chosen = route()
        return window_for(chosen.provider, chosen.model, max_tokens=max_tokens)
    return window_for(None, None, max_tokens=max_tokens)


SUMMARY_PROMPT = ("Summarise the conversation below for an assistant that will continue it: keep the user's "
                  "requests, decisions, names, numbers and open questions; leave out pleasantries. Answer with "
                  "the summary only, in at most {words} words.")


def summary_request(turns: Sequence[Message], max_tokens: int) -> list[Message]:
    """The messages of a summary call for `turns` (what `summarise` policies send to the provider)."""
    transcript = "\n\n".join(f"{t.get('role', 'user')}: {t.get('content', '')}" for t in turns)
    words = max(int(max_tokens * 3 / 4), 20)
    return [{"role": "system", "content": SUMMARY_PROMPT.format(words=words)},
            {"role": "user", "content": transcript}]
