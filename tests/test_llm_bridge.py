"""The `llm` bridge: models of the `llm` package and its plugins (here `llm-echo`) as Chief providers."""

from __future__ import annotations

import json
from pathlib import Path

import llm
import pytest

from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.errors import ProviderError, ProviderNotConfigured
from chief.core.personas import PersonaAgent
from chief.core.plugins import get_registry, register_temporary, reset_plugin_manager
from chief.core.workflows import parse_workflow
from chief.plugins import llm_bridge
from chief.plugins.llm_bridge import LlmProvider, flatten
from tests.fakes import TestPlugin

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "ping"}]


@pytest.fixture(autouse=True)
def llm_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # llm reads keys and aliases from its user folder: never the developer's
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm"))
    monkeypatch.delenv("LLM_ECHO_NEEDS_KEY_KEY", raising=False)
    monkeypatch.delenv("CHIEF_LLM_MODEL", raising=False)


def test_llm_bridge_registers_the_llm_family() -> None:
    reset_plugin_manager()
    try:
        registry = get_registry()
        assert "llm" in registry.providers
        echo = registry.provider("llm:echo")
        assert echo.name == "llm:echo" and echo.default_model == "echo"
        assert registry.owner_of("provider", "llm:echo") == "chief.plugins.llm_bridge"
        assert "llm:echo" in registry.provider("llm").models()
    finally:
        reset_plugin_manager()


def test_llm_bridge_registers_nothing_without_llm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_bridge, "available", lambda: False)
    registered: list[object] = []
    llm_bridge.register_providers(registered.append)
    assert registered == []


def test_llm_bridge_flattens_a_conversation() -> None:
    prompt, system = flatten([{"role": "system", "content": "S"}, {"role": "user", "content": "q1"},
                              {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}])
    assert system == "S" and prompt == "user: q1\n\nassistant: a1\n\nuser: q2"
    assert flatten([{"role": "user", "content": "only"}]) == ("only", None)


async def test_llm_bridge_completes_with_llm_echo() -> None:
    completion = await LlmProvider("echo").complete(MESSAGES)
    answer = json.loads(completion.text)
    assert answer["prompt"] == "ping" and answer["system"] == "Be brief."
    assert completion.model == "echo" and not completion.tokens_estimated
    assert completion.tokens_in == 3 and completion.tokens_out == len(completion.text.split())


async def test_llm_bridge_streams_tokens() -> None:
    tokens: list[str] = []

    async def on_token(text: str) -> None:
        tokens.append(text)

    completion = await LlmProvider("echo").complete(MESSAGES, on_token=on_token)
    assert tokens and "".join(tokens) == completion.text and json.loads(completion.text)["stream"] is True


async def test_llm_bridge_runs_sync_models_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_async(model_id: str):
        raise llm.UnknownModelError(model_id)

    monkeypatch.setattr(llm, "get_async_model", no_async)
    tokens: list[str] = []
    completion = await LlmProvider("echo").complete(MESSAGES, on_token=tokens.append)
    assert json.loads(completion.text)["prompt"] == "ping" and "".join(tokens) == completion.text
    assert completion.tokens_in == 3


async def test_llm_bridge_passes_only_the_options_a_model_declares() -> None:
    completion = await LlmProvider("echo").complete(MESSAGES, example_bool=True, temperature=0.3)
    assert json.loads(completion.text)["options"] == {"example_bool": True}


async def test_llm_bridge_model_that_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProviderNotConfigured) as caught:
        await LlmProvider("echo-needs-key").complete(MESSAGES)
    assert "llm keys set echo-needs-key" in str(caught.value) and not caught.value.retryable
    monkeypatch.setenv("LLM_ECHO_NEEDS_KEY_KEY", "k-123")
    completion = await LlmProvider("echo-needs-key").complete(MESSAGES)
    assert json.loads(completion.text)["prompt"] == "ping"


async def test_llm_bridge_unknown_model() -> None:
    with pytest.raises(ProviderError, match="no model 'nope'") as caught:
        await LlmProvider("nope").complete(MESSAGES)
    assert not caught.value.retryable


async def test_llm_bridge_in_a_workflow_run(tmp_path: Path) -> None:
    agent = PersonaAgent(name="echoer", description="d", capabilities=["x"], system_prompt="SYS")
    spec = parse_workflow("""
name: via-llm
steps:
  - {key: ask, agent: echoer, prompt: "hello from chief", provider: "llm:echo"}
output: "{{ask.result}}"
""")
    with register_temporary(TestPlugin(agents=[agent])) as registry:
        engine = await Engine.open(Settings(home=tmp_path / "home"), registry=registry)
        try:
            record = await engine.run(spec, {})
            steps = await engine.store.list_steps(record.id)
        finally:
            await engine.close()
    assert record.status == "succeeded", record.error
    assert json.loads(record.output)["prompt"] == "hello from chief"
    [final] = [s for s in steps if s.status == "succeeded"]
    assert (final.provider, final.model) == ("llm:echo", "echo") and final.tokens_in == 4
