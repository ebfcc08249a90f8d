"""Persona agents send their system prompt and the step's prompt through the context; echo calls nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from chief.core.agents import Agent, AgentContext, Completion
from chief.core.messages import StepTask
from chief.core.personas import EchoAgent, PersonaAgent
from chief.plugins.agents import PERSONAS, builtin_agents

EXPECTED_CAPABILITIES = {
    "backend": {"code-analysis", "parsing", "backend"},
    "security": {"security-audit", "code-review"},
    "quality": {"code-quality", "testing", "code-review"},
    "product": {"summarise", "aggregate", "product"},
    "researcher": {"research", "outline", "data-analysis"},
    "writer": {"writing", "editing", "release-notes", "summarise"},
    "assistant": {"answer", "chat", "general"},
}


class FakeCompleter:
    """Scripted replies and a record of every conversation it was asked (like llm's MockModel)."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.asked: list[tuple[list[dict[str, str]], dict[str, Any]]] = []

    async def __call__(self, messages: Sequence[dict[str, str]], **options: Any) -> Completion:
        self.asked.append((list(messages), options))
        text = self.replies.pop(0) if self.replies else "ok"
        return Completion(text=text, model="fake-1")


def _task(agent: str, prompt: str = "Audit this change: eval(input())") -> StepTask:
    return StepTask(execution_id="e", task_key="s", step_key="s", agent=agent, prompt=prompt)


def test_personas_builtin_set_and_capabilities() -> None:
    agents = {a.name: a for a in builtin_agents()}
    assert set(agents) == set(EXPECTED_CAPABILITIES) | {"echo"}
    for name, caps in EXPECTED_CAPABILITIES.items():
        agent = agents[name]
        assert isinstance(agent, Agent)
        assert caps <= set(agent.capabilities), name
        assert agent.description and agent.system_prompt.startswith("You are"), name
        assert agent.provider is None and agent.model is None


@pytest.mark.parametrize("persona", PERSONAS, ids=[p["name"] for p in PERSONAS])
async def test_personas_send_system_prompt_and_task_prompt(persona: dict[str, Any]) -> None:
    agent = PersonaAgent.from_dict(persona)
    task = _task(agent.name)
    fake = FakeCompleter(f"reply from {agent.name}")
    ctx = AgentContext(task, complete=fake)
    result = await agent.run(task, ctx)
    assert result == f"reply from {agent.name}"
    assert fake.asked == [([
        {"role": "system", "content": persona["system_prompt"]},
        {"role": "user", "content": "Audit this change: eval(input())"},
    ], {})]
    assert [c.text for c in ctx.completions] == [result]


async def test_personas_options_are_passed_to_complete() -> None:
    agent = PersonaAgent("terse", "d", ["x"], "You are terse.", options={"temperature": 0})
    fake = FakeCompleter()
    await agent.run(_task("terse"), AgentContext(_task("terse"), complete=fake))
    assert fake.asked[0][1] == {"temperature": 0}


async def test_personas_echo_returns_prompt_and_calls_nothing() -> None:
    fake = FakeCompleter()
    agent = EchoAgent()
    assert (agent.name, tuple(agent.capabilities)) == ("echo", ("echo",))
    assert isinstance(agent, Agent)
    task = _task("echo", "hello, world")
    assert await agent.run(task, AgentContext(task, complete=fake)) == "hello, world"
    assert fake.asked == []


def test_personas_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="unknown field.*promt"):
        PersonaAgent.from_dict({"name": "x", "description": "d", "capabilities": [], "system_prompt": "s", "promt": 1})
    with pytest.raises(ValueError, match="list of strings"):
        PersonaAgent("x", "d", "code-review", "s")
