"""The `offline` provider: no network, no model; a deterministic, clearly labelled reply.

It lets Chief run end to end with nothing configured, and it is what the benchmark uses.
The reply says what the step was about (the persona, the first lines of the prompt, its
size, and for a unified diff the changed files with +/- counts) so a chat stays readable.

Options (constructor arguments, else environment variables):
- `latency_ms` / `CHIEF_OFFLINE_LATENCY_MS`: sleep this long per call (0: never sleep).
- `failure_rate` / `CHIEF_OFFLINE_FAILURE_RATE`: probability in [0, 1] that a call raises a
  retryable `ProviderError`; deterministic for a given seed and call sequence.
- `seed` / `CHIEF_OFFLINE_SEED`: the seed of that sequence (default 0).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from chief.core.agents import Completion, Message
from chief.core.errors import ProviderError
from chief.core.hookspecs import hookimpl

LABEL = "[offline reply — no AI model configured]"
QUOTE_LINES = 3
QUOTE_WIDTH = 120
HEAD_CHARS = 8192  # only the head of a prompt is scanned for quotable lines
MAX_FILES_LISTED = 20

_DIFF_STARTS = ("diff --git ", "--- a/", "+++ b/", "@@ -")
_HUNK = re.compile(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")  # anchored with match(): linear


def estimate_tokens(text: str) -> int:
    """A rough token count (about 4 tokens per 3 words), for providers that do not report one."""
    return math.ceil(len(text.split()) * 4 / 3)


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


class OfflineProvider:
    """A provider that needs nothing: deterministic text derived from the prompt."""

    name = "offline"
    default_model = "offline-1"

    def __init__(
        self,
        *,
        latency_ms: float | None = None,
        failure_rate: float | None = None,
        seed: int | None = None,
    ) -> None:
        self.latency_ms = _env_number("CHIEF_OFFLINE_LATENCY_MS", 0.0) if latency_ms is None else float(latency_ms)
        rate = _env_number("CHIEF_OFFLINE_FAILURE_RATE", 0.0) if failure_rate is None else float(failure_rate)
        self.seed = int(_env_number("CHIEF_OFFLINE_SEED", 0)) if seed is None else int(seed)
        if self.latency_ms < 0:
            raise ValueError(f"offline provider: latency_ms must be >= 0, got {self.latency_ms}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"offline provider: failure_rate must be between 0 and 1, got {rate}")
        self.failure_rate = rate
        self.calls = 0
        self._random = random.Random(self.seed)

    def __repr__(self) -> str:
        return f"OfflineProvider(latency_ms={self.latency_ms}, failure_rate={self.failure_rate}, seed={self.seed})"

    async def complete(self, messages: Sequence[Message], *, model: str | None = None, **options: Any) -> Completion:
        """Reply to `messages` without any model; may sleep or fail as configured."""
        self.calls += 1
        if self.latency_ms > 0:
            await asyncio.sleep(self.latency_ms / 1000)
        if self.failure_rate > 0 and self._random.random() < self.failure_rate:
            raise ProviderError(
                f"offline provider: simulated failure (call {self.calls}, failure_rate={self.failure_rate}, "
                f"seed={self.seed})",
                retryable=True,
            )
        text = reply_for(messages)
        return Completion(
            text=text,
            model=model or self.default_model,
            tokens_in=sum(estimate_tokens(m.get("content", "")) for m in messages),
            tokens_out=estimate_tokens(text),
            tokens_estimated=True,
        )


def reply_for(messages: Sequence[Message]) -> str:
    """The offline reply to a conversation (pure function of the messages)."""
    system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
    prompt = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    out = [LABEL]
    persona = persona_of(system)
    if persona:
        out.append(f"Agent: {persona}")
    lines = prompt.count("\n") + 1 if prompt else 0
    out.append(f"Task: {len(prompt.split())} words, {lines} lines, {len(prompt)} characters.")
    quoted = first_lines(prompt)
    if quoted:
        out.append("It begins:")
        out.extend(f"> {line}" for line in quoted)
    files = diff_summary(prompt)
    if files:
        added = sum(f.added for f in files)
        removed = sum(f.removed for f in files)
        out.append(f"Changes: {len(files)} file(s), +{added} -{removed}")
        for f in files[:MAX_FILES_LISTED]:
            out.append(f"- {f.path} (+{f.added} -{f.removed}{', ' + f.status if f.status else ''})")
        if len(files) > MAX_FILES_LISTED:
            out.append(f"- ... and {len(files) - MAX_FILES_LISTED} more")
    out.append("Set CHIEF_PROVIDER to a real AI provider (from a provider plugin) for an actual answer.")
    return "\n".join(out)


def persona_of(system_prompt: str) -> str:
    """Who the system prompt says the agent is: its first sentence, without "You are"."""
    head = system_prompt.strip()[:400]
    if not head:
        return ""
    first = head.split("\n", 1)[0]
    end = first.find(". ")
    first = (first[:end] if end >= 0 else first).rstrip(".").strip()
    for prefix in ("You are ", "you are ", "You're "):
        if first.startswith(prefix):
            first = first[len(prefix):]
            break
    return _truncate(first, QUOTE_WIDTH)


def first_lines(prompt: str, count: int = QUOTE_LINES) -> list[str]:
    """The first `count` meaningful lines of `prompt`, truncated.

    Blank and fence-only lines are skipped; quoting stops where a diff starts (it is summarised).
    """
    found: list[str] = []
    for raw in prompt[:HEAD_CHARS].splitlines():
        if raw.startswith(_DIFF_STARTS):
            break
        line = raw.strip()
        if not line or line.strip("`~-=*#_ ") == "":
            continue
        found.append(_truncate(line, QUOTE_WIDTH))
        if len(found) == count:
            break
    return found


def _truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


@dataclass
class FileChange:
    """One file of a unified diff: its path, lines added and removed, and new/deleted/renamed."""

    path: str
    added: int = 0
    removed: int = 0
    status: str = ""


def diff_summary(text: str) -> list[FileChange]:
    """The files a unified diff inside `text` changes, with +/- counts (empty if there is no diff).

    Hunk headers give the number of old and new lines, so a removed line that happens to start
    with `--` is counted as removed, not mistaken for a file header. One pass, no backtracking.
    """
    if "\n+++ " not in text and not text.startswith("+++ ") and "diff --git " not in text:
        return []
    files: list[FileChange] = []
    current: FileChange | None = None
    awaiting_header = False  # after "diff --git", the "--- / +++" lines belong to the same file
    old_path = ""
    old_left = new_left = 0
    for line in text.splitlines():
        if current is not None and (old_left > 0 or new_left > 0):
            first = line[:1]
            if first == "+":
                current.added += 1
                new_left -= 1
                continue
            if first == "-":
                current.removed += 1
                old_left -= 1
                continue
            if first == "\\":  # "\ No newline at end of file"
                continue
            if first in (" ", ""):
                old_left -= 1
                new_left -= 1
                continue
            old_left = new_left = 0  # the hunk ended early (a truncated diff): read the line as a header
        if line.startswith("diff --git "):
            parts = line[len("diff --git "):].split(" b/", 1)
            current = FileChange(parts[1] if len(parts) == 2 else parts[0].removeprefix("a/"))
            files.append(current)
            awaiting_header = True
            old_path = ""
        elif line.startswith("--- "):
            old_path = _diff_path(line[4:])
        elif line.startswith("+++ "):
            new_path = _diff_path(line[4:])
            path = old_path if new_path == "/dev/null" else new_path
            if current is None or not awaiting_header:
                current = FileChange(path)
                files.append(current)
            current.path = path
            awaiting_header = False
            if old_path == "/dev/null":
                current.status = "new file"
            elif new_path == "/dev/null":
                current.status = "deleted"
        elif current is None:
            continue
        elif line.startswith("rename from "):
            current.status = f"renamed from {line[len('rename from '):].strip()}"
        elif line.startswith("new file mode"):
            current.status = "new file"
        elif line.startswith("deleted file mode"):
            current.status = "deleted"
        elif line.startswith("Binary files "):
            current.status = "binary"
        elif line.startswith("@@"):
            match = _HUNK.match(line)
            if match:
                old_left = int(match.group(1) if match.group(1) is not None else 1)
                new_left = int(match.group(2) if match.group(2) is not None else 1)
    return files


def _diff_path(raw: str) -> str:
    path = raw.split("\t", 1)[0].strip()
    if path.startswith(("a/", "b/")):
        path = path[2:]
    return path


@hookimpl
def register_providers(register: Any) -> None:
    """Register the `offline` provider."""
    register(OfflineProvider())
