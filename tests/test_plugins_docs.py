"""The examples in docs/plugins.md are real plugins: each registers cleanly and works."""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path

import pytest

from chief.core import plugins
from chief.core.agents import AgentContext, Completion, ExtractedFile
from chief.core.messages import StepTask
from chief.core.plugins import register_temporary
from tests.fakes import fresh_plugins  # noqa: F401 - the fixture every test here uses

DOCS = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)
PLUGIN_BLOCKS = {b.splitlines()[0].lstrip("# ").strip(): b for b in BLOCKS if "@hookimpl\ndef " in b}


pytestmark = pytest.mark.usefixtures("fresh_plugins")


def _module(title: str, tmp_path: Path | None = None) -> types.ModuleType:
    module = types.ModuleType(title.replace("/", "_").removesuffix(".py"))
    module.__file__ = str((tmp_path or Path("/nonexistent")) / "plugin.py")
    exec(compile(PLUGIN_BLOCKS[title], f"docs/plugins.md:{title}", "exec"), module.__dict__)
    return module


def test_plugins_docs_python_blocks_parse() -> None:
    assert len(PLUGIN_BLOCKS) >= 7
    for block in BLOCKS:
        ast.parse(block)


@pytest.mark.parametrize("title", sorted(PLUGIN_BLOCKS))
def test_plugins_docs_example_registers_cleanly(title: str) -> None:
    with register_temporary(_module(title)) as registry:
        assert registry.errors == []
        [info] = [i for i in registry.plugin_infos() if i.name not in plugins.DEFAULT_PLUGINS]
        assert info.hooks


async def test_plugins_docs_provider_example_completes() -> None:
    with register_temporary(_module("chief_echo_provider.py")) as registry:
        reply = await registry.provider("shout").complete([{"role": "user", "content": "hi there"}])
        assert reply.text == "HI THERE"


async def test_plugins_docs_agent_example_runs() -> None:
    asked: list[object] = []

    async def fake(messages: object, **options: object) -> Completion:
        asked.append(messages)
        return Completion(text="two commits", model="fake")

    with register_temporary(_module("chief_changelog.py")) as registry:
        task = StepTask(execution_id="e", task_key="s", step_key="s", agent="commit-counter",
                        prompt="commit a\nfix\ncommit b\n")
        result = await registry.agent("commit-counter").run(task, AgentContext(task, complete=fake))
        assert result == {"commits": 2, "summary": "two commits"}
        assert registry.resolve_agent(capability="contract-review").name == "legal"


def test_plugins_docs_extractor_example_extracts(tmp_path: Path) -> None:
    vtt = tmp_path / "talk.vtt"
    vtt.write_text("WEBVTT\n\n1\n00:00.000 --> 00:01.000\nHello there\n")
    with register_temporary(_module("chief_vtt.py")) as registry:
        [extractor] = [e for e in registry.extractors if "text/vtt" in e.mime_types]
        extracted = extractor.extract(str(vtt), "text/vtt")
        assert isinstance(extracted, ExtractedFile) and extracted.text == "Hello there"


def test_plugins_docs_workflow_dir_example_registers_its_folder(tmp_path: Path) -> None:
    with register_temporary(_module("chief_legal/__init__.py", tmp_path)) as registry:
        assert tmp_path / "workflows" in registry.workflow_dirs


BUILT_IN_PLANNERS = {"catalog", "model"}


async def test_plugins_docs_planner_example_plans() -> None:
    with register_temporary(_module("chief_standup.py")) as registry:
        [planner] = [p for p in registry.planners if p.name not in BUILT_IN_PLANNERS]
        assert await planner.plan("what's the weather?", [], {}) is None
        spec = await planner.plan("summarise today's standup", [], {})
        assert [s.key for s in spec.steps] == ["extract", "next-steps"]


def test_plugins_docs_on_event_example_observes(caplog: pytest.LogCaptureFixture) -> None:
    from chief.core.messages import Event, EventType

    with register_temporary(_module("chief_notify.py")) as registry:
        registry.notify_event(Event(execution_id="x1", type=EventType.STEP_FAILED, step_key="s",
                                    data={"error": "boom"}))
        registry.notify_event(Event(execution_id="x1", type=EventType.STEP_STARTED))
        assert registry.errors == []
    assert [r.getMessage() for r in caplog.records if r.name == "chief_notify"] == [
        "Chief: step.failed in execution x1 (step s): boom"
    ]
