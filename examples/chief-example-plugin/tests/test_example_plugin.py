"""The example plugin's own tests: each thing it registers, through Chief's registry."""

from __future__ import annotations

from pathlib import Path

import chief_example_plugin
import pytest

from chief.core.agents import AgentContext
from chief.core.errors import ChiefError
from chief.core.messages import StepTask
from chief.core.plugins import register_temporary
from chief.core.workflows import load_workflow


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CHIEF_LOAD_PLUGINS", "")  # only the built-ins and this module, even if installed
    from chief.core import plugins

    plugins.reset_plugin_manager()
    try:
        with register_temporary(chief_example_plugin, name="example") as registry:
            yield registry
    finally:
        plugins.reset_plugin_manager()


def test_example_registers_cleanly(registry) -> None:
    assert [e for e in registry.errors if e.plugin == "example"] == []
    assert registry.agent("haiku").provider == "reverse"
    assert registry.provider("reverse").default_model == "reverse-1"
    assert chief_example_plugin.WORKFLOWS in registry.workflow_dirs
    assert registry.owner_of("agent", "haiku") == "example"


async def test_example_provider_reverses_and_streams(registry) -> None:
    tokens: list[str] = []
    completion = await registry.provider("reverse").complete([{"role": "user", "content": "one two three"}],
                                                             on_token=tokens.append)
    assert completion.text == "three two one" and "".join(tokens) == "three two one"
    assert completion.tokens_estimated


async def test_example_agent_writes_three_lines(registry) -> None:
    provider = registry.provider("reverse")
    task = StepTask(execution_id="e", task_key="w", step_key="w", agent="haiku",
                    prompt="Write a haiku about autumn leaves falling")

    async def complete(messages, **options):
        return await provider.complete(messages, **options)

    result = await registry.agent("haiku").run(task, AgentContext(task, complete=complete))
    assert result.splitlines() == ["falling leaves autumn", "about haiku a", "Write"]


def test_example_extractor(registry, tmp_path: Path) -> None:
    todo = tmp_path / "week.todo"
    todo.write_text("[ ] write docs\n[x] ship it\n[ ] test the plugin\n")
    [extractor] = [e for e in registry.extractors if e.name == "todo"]
    extracted = extractor.extract(str(todo), "text/x-todo")
    assert extracted.text == "- write docs\n- test the plugin" and extracted.meta == {"open": 2, "done": 1}
    bad = tmp_path / "bad.todo"
    bad.write_text("not a list\n")
    with pytest.raises(ChiefError, match="not a todo list"):
        extractor.extract(str(bad), "text/x-todo")


def test_example_workflow_is_valid(registry) -> None:
    spec = load_workflow(chief_example_plugin.WORKFLOWS / "haiku.yaml", agents=set(registry.agents))
    assert spec.name == "haiku" and [s.agent for s in spec.steps] == ["haiku"]
