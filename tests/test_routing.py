"""Model selection precedence (step > agent > conversation > global > provider default) and blame."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.errors import PluginError, ProviderError, StepTimeout, UnknownProvider
from chief.core.messages import StepTask
from chief.core.personas import PersonaAgent
from chief.core.plugins import register_temporary
from chief.core.routing import ModelChoice, blame, choose_route
from chief.core.workflows import parse_workflow
from tests.fakes import ScriptedProvider, TestPlugin


def task(provider: str | None = None, model: str | None = None) -> StepTask:
    return StepTask(execution_id="e", task_key="s", step_key="s", agent="a", prompt="p",
                    provider=provider, model=model)


@dataclass
class Agent:
    provider: str | None = None
    model: str | None = None


@pytest.fixture
def registry():
    providers = [ScriptedProvider("alpha"), ScriptedProvider("beta"), ScriptedProvider("gamma")]
    with register_temporary(TestPlugin(providers=providers)) as reg:
        yield reg


GLOBAL = ModelChoice("gamma", "g-model")


def test_routing_step_wins(registry) -> None:
    route = choose_route(registry, task("alpha", "a-model"), Agent("beta", "b-model"),
                         conversation={"provider": "beta", "model": "c-model"}, default=GLOBAL)
    assert (route.provider_name, route.model, route.provider_source, route.model_source) == \
        ("alpha", "a-model", "step", "step")
    assert route.provider is registry.providers["alpha"]


def test_routing_agent_default_beats_conversation_and_global(registry) -> None:
    route = choose_route(registry, task(), Agent("beta", "b-model"),
                         conversation={"provider": "alpha", "model": "c-model"}, default=GLOBAL)
    assert (route.provider_name, route.model, route.provider_source) == ("beta", "b-model", "agent")


def test_routing_conversation_beats_global(registry) -> None:
    route = choose_route(registry, task(), Agent(), conversation={"provider": "alpha", "model": "c-model"},
                         default=GLOBAL)
    assert (route.provider_name, route.model, route.provider_source) == ("alpha", "c-model", "conversation")


def test_routing_global_default(registry) -> None:
    route = choose_route(registry, task(), Agent(), conversation=None, default=GLOBAL)
    assert (route.provider_name, route.model, route.model_source) == ("gamma", "g-model", "global")


def test_routing_provider_default_model_last(registry) -> None:
    route = choose_route(registry, task(), Agent(), default=ModelChoice("beta", None))
    assert (route.provider_name, route.model, route.model_source) == ("beta", "scripted-1", "provider")


def test_routing_global_defaults_come_from_the_environment(registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIEF_PROVIDER", "beta")
    monkeypatch.setenv("CHIEF_MODEL", "env-model")
    route = choose_route(registry, task(), None)
    assert (route.provider_name, route.model) == ("beta", "env-model")


def test_routing_a_step_model_alone_keeps_the_lower_provider(registry) -> None:
    route = choose_route(registry, task(model="s-model"), Agent("beta", "b-model"), default=GLOBAL)
    assert (route.provider_name, route.model, route.provider_source, route.model_source) == \
        ("beta", "s-model", "agent", "step")


def test_routing_never_sends_a_lower_levels_model_to_another_provider(registry) -> None:
    # the global model belongs to gamma: a step on alpha gets alpha's own default
    route = choose_route(registry, task("alpha"), Agent(), default=GLOBAL)
    assert (route.provider_name, route.model, route.model_source) == ("alpha", "scripted-1", "provider")
    # an agent model with no provider of its own applies to whichever provider was chosen
    route = choose_route(registry, task("alpha"), Agent(model="agent-model"), default=GLOBAL)
    assert route.model == "agent-model"
    # the same provider named lower down: its model applies
    route = choose_route(registry, task("gamma"), Agent(), default=GLOBAL)
    assert route.model == "g-model"


def test_routing_a_family_name_names_its_model(registry, monkeypatch: pytest.MonkeyPatch) -> None:
    class Family(ScriptedProvider):
        def for_model(self, model: str) -> ScriptedProvider:
            member = ScriptedProvider(f"fam:{model}")
            member.default_model = model
            return member

    with register_temporary(TestPlugin(providers=[Family("fam")])) as reg:
        route = choose_route(reg, task("fam:big-1"), Agent(model="agent-model"), default=GLOBAL)
        assert (route.provider_name, route.model, route.model_source) == ("fam:big-1", "big-1", "step")
        assert reg.owner_of("provider", "fam:big-1") == reg.owner_of("provider", "fam")


def test_routing_unknown_provider(registry) -> None:
    with pytest.raises(UnknownProvider, match="No provider named 'alhpa'.*Did you mean 'alpha'"):
        choose_route(registry, task("alhpa"), None, default=GLOBAL)


def test_routing_blame_names_the_plugin(registry) -> None:
    owner = registry.owner_of("provider", "alpha")
    assert owner
    boom = blame(registry, "provider", "alpha", ValueError("bad things"))
    assert isinstance(boom, PluginError) and str(boom) == f"plugin '{owner}' (provider 'alpha'): ValueError: bad things"
    assert isinstance(boom.__cause__, ValueError) and boom.plugin == owner
    assert blame(registry, "agent", "a", boom) is boom  # blamed once, even when it passes through an agent
    not_retryable = blame(registry, "provider", "alpha", ProviderError("quota", retryable=False))
    assert isinstance(not_retryable, ProviderError) and not not_retryable.retryable and owner in str(not_retryable)
    timeout = StepTimeout("step 's' timed out")
    assert blame(registry, "agent", "x", timeout) is timeout  # Chief's own errors stay as they are
    assert blame(registry, "agent", "nobody", RuntimeError("x")).args == ("x",)  # unknown owner: unchanged
    builtin = ProviderError("offline: simulated failure")
    assert blame(registry, "provider", "offline", builtin) is builtin  # built-ins' errors already say whose
    crash = blame(registry, "provider", "offline", KeyError("k"))
    assert str(crash) == "plugin 'chief.plugins.offline' (provider 'offline'): KeyError: 'k'"


@dataclass
class CrashingAgent:
    name: str = "crasher"
    description: str = "raises inside run"
    capabilities: tuple = ("crash",)
    provider: str | None = None
    model: str | None = None

    async def run(self, task, ctx):
        raise RuntimeError("the plugin's own bug")


class CrashingProvider(ScriptedProvider):
    async def complete(self, messages, *, model=None, **options):
        raise KeyError("missing field in the plugin")


async def test_routing_a_plugin_raising_at_run_time_fails_its_step_not_the_app(tmp_path: Path) -> None:
    persona = PersonaAgent(name="uses-crashing", description="d", capabilities=["y"], system_prompt="s",
                           provider="crashing")
    plugin = TestPlugin(agents=[CrashingAgent(), persona], providers=[CrashingProvider("crashing")])
    spec = parse_workflow("""
name: crashes
steps:
  - {key: a, agent: crasher, prompt: p, retry: {attempts: 1}}
  - {key: b, agent: uses-crashing, prompt: p, retry: {attempts: 1}}
""")
    with register_temporary(plugin) as registry:
        engine = await Engine.open(Settings(home=tmp_path / "home"), registry=registry)
        try:
            record = await engine.run(spec, {})
            steps = {s.task_key: s for s in await engine.store.list_steps(record.id) if s.status == "failed"}
            again = await engine.run(parse_workflow("name: fine\nsteps:\n  - {key: x, agent: echo, prompt: ok}\n"), {})
        finally:
            await engine.close()
    assert record.status == "failed"
    assert "the plugin's own bug" in steps["a"].error and "missing field" in steps["b"].error
    assert again.status == "succeeded"  # the app goes on


async def test_routing_execution_settings_reach_the_worker_and_survive_a_restore(tmp_path: Path) -> None:
    """`Engine.start(settings=...)`: the conversation's model and a canary arm route every step's completion,
    are kept on the execution row, and a restored (forked) execution keeps them."""
    alpha, beta = ScriptedProvider("alpha"), ScriptedProvider("beta")
    persona = PersonaAgent(name="plain", description="d", capabilities=["z"], system_prompt="s")
    spec = parse_workflow("name: routed\nsteps:\n  - {key: a, agent: plain, prompt: hello}\n")
    with register_temporary(TestPlugin(agents=[persona], providers=[alpha, beta])) as registry:
        engine = await Engine.open(Settings(home=tmp_path / "home"), registry=registry)
        try:
            chat = await engine.run(spec, {}, settings={"conversation": {"provider": "alpha", "model": "c-1"}})
            canary = await engine.run(spec, {}, settings={"canary": {"id": "k", "provider": "beta", "model": "n-2"}})
            rows = {r.id: [s for s in await engine.store.list_steps(r.id) if s.status == "succeeded"][0]
                    for r in (chat, canary)}
            first = (await engine.checkpoints(chat.id))[-1].id
            forked = await engine.wait(await engine.restore(chat.id, first), finished=True)
        finally:
            await engine.close()
    assert chat.status == canary.status == "succeeded"
    assert (rows[chat.id].provider, rows[chat.id].model) == ("alpha", "c-1")
    assert (rows[canary.id].provider, rows[canary.id].model) == ("beta", "n-2")
    assert chat.settings == {"conversation": {"provider": "alpha", "model": "c-1"}}
    assert forked.settings == chat.settings
    assert len(alpha.asked) == 2 and len(beta.asked) == 1  # the fork re-ran its step on the same route
