"""Test doubles: a scripted provider (like llm's MockModel) and agents a test can hold or break."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from chief.core.agents import AgentContext, Completion
from chief.core.errors import ProviderError
from chief.core.hookspecs import hookimpl
from chief.core.messages import StepTask

# Three `gate` steps in a chain: tests hold a step (`GateAgent.held`) to pause, crash or inspect mid-run.
CHAIN = """
name: chain
steps:
  - {key: a, agent: gate, prompt: "first"}
  - {key: b, agent: gate, prompt: "second after {{a}}", depends_on: [a]}
  - {key: c, agent: gate, prompt: "third after {{b}}", depends_on: [b]}
"""


class ScriptedProvider:
    """Answers with queued replies (or echoes); records every conversation it was asked."""

    def __init__(self, name: str = "scripted", replies: Sequence[str | Exception] = ()):
        self.name = name
        self.default_model = "scripted-1"
        self.replies: deque[str | Exception] = deque(replies)
        self.asked: list[list[dict[str, str]]] = []

    async def complete(self, messages, *, model=None, **options) -> Completion:
        self.asked.append(list(messages))
        reply = self.replies.popleft() if self.replies else f"echo: {messages[-1]['content']}"
        if isinstance(reply, Exception):
            raise reply
        return Completion(text=reply, model=model or self.default_model, tokens_in=3, tokens_out=5)


@dataclass
class GateAgent:
    """An agent whose steps wait until the test opens their gate; counts runs per task key."""

    name: str = "gate"
    description: str = "waits for the test"
    capabilities: Sequence[str] = ("gate",)
    provider: str | None = None
    model: str | None = None
    runs: Counter = field(default_factory=Counter)
    started: dict[str, asyncio.Event] = field(default_factory=dict)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    held: set[str] = field(default_factory=set)  # task keys that wait for their gate

    def gate(self, task_key: str) -> asyncio.Event:
        return self.gates.setdefault(task_key, asyncio.Event())

    def started_event(self, task_key: str) -> asyncio.Event:
        return self.started.setdefault(task_key, asyncio.Event())

    async def run(self, task: StepTask, ctx: AgentContext) -> Any:
        self.runs[task.task_key] += 1
        self.started_event(task.task_key).set()
        if task.task_key in self.held:
            await self.gate(task.task_key).wait()
        return f"{task.task_key} done: {task.prompt}"


@dataclass
class FlakyAgent:
    """Fails its first `failures` attempts (per task key), then answers."""

    name: str = "flaky"
    description: str = "fails, then works"
    capabilities: Sequence[str] = ("flaky",)
    provider: str | None = None
    model: str | None = None
    failures: int = 1
    retryable: bool = True
    delay: float = 0.0
    attempts: Counter = field(default_factory=Counter)

    async def run(self, task: StepTask, ctx: AgentContext) -> Any:
        self.attempts[task.task_key] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.attempts[task.task_key] <= self.failures:
            raise ProviderError(f"flaky failure {self.attempts[task.task_key]}", retryable=self.retryable)
        return f"ok after {self.attempts[task.task_key]}"


class TestPlugin:
    """A plugin object registering whatever agents/providers a test gives it."""

    __test__ = False

    def __init__(self, agents: Sequence[Any] = (), providers: Sequence[Any] = ()):
        self.agents = list(agents)
        self.providers = list(providers)

    @hookimpl
    def register_agents(self, register):
        for agent in self.agents:
            register(agent)

    @hookimpl
    def register_providers(self, register):
        for provider in self.providers:
            register(provider)


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch):
    """Only built-in plugins (no third-party entry points), with the plugin manager reset before and after."""
    from chief.core import plugins

    monkeypatch.setenv("CHIEF_LOAD_PLUGINS", "")
    plugins.reset_plugin_manager()
    try:
        yield
    finally:
        plugins.reset_plugin_manager()
