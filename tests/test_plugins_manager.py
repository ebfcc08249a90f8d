"""The plugin manager: built-ins, entry points loaded in isolation, the registry and its errors."""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chief.core import hookspecs, plugins
from chief.core.agents import ExtractedFile
from chief.core.errors import UnknownAgent, UnknownProvider
from chief.core.hookspecs import hookimpl
from chief.core.personas import EchoAgent, PersonaAgent
from chief.core.plugins import (
    PluginFailure,
    build_registry,
    get_plugin_manager,
    get_registry,
    register_temporary,
)

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_AGENTS = {"backend", "security", "quality", "product", "researcher", "writer", "assistant", "echo"}
BUILTIN_WORKFLOWS = {
    "code-review.yaml", "document-digest.yaml", "research-report.yaml",
    "data-insights.yaml", "release-notes.yaml", "answer.yaml",
}

FAKE_MODULES = {
    "chief_fake_broken_import": """
        raise ImportError("chief_fake_broken_import needs the 'pyweather' package")
    """,
    "chief_fake_broken_hook": """
        from chief.core.hookspecs import hookimpl
        from chief.core.personas import EchoAgent

        @hookimpl
        def register_agents(register):
            register(EchoAgent(name="half-registered"))
            raise RuntimeError("weather service key missing")
    """,
    "chief_fake_bad_signature": """
        from chief.core.hookspecs import hookimpl

        @hookimpl
        def register_agents(register, not_an_argument):
            pass
    """,
    "chief_fake_good": """
        from chief.core.hookspecs import hookimpl
        from chief.core.personas import PersonaAgent

        @hookimpl
        def register_agents(register):
            register(PersonaAgent(
                name="weather", description="Forecasts", capabilities=["forecast"],
                system_prompt="You are a weather forecaster.",
            ))
    """,
}
ENTRY_POINTS = {
    "broken_import": "chief_fake_broken_import",
    "broken_hook": "chief_fake_broken_hook",
    "bad_signature": "chief_fake_bad_signature",
    "good": "chief_fake_good",
}


def _forget_fake_modules() -> None:
    for name in [n for n in sys.modules if n.startswith("chief_fake_")]:
        del sys.modules[name]


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh manager and registry for the test, restored to fresh ones afterwards."""
    monkeypatch.delenv("CHIEF_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("CHIEF_TRACE_PLUGINS", raising=False)
    plugins.reset_plugin_manager()
    try:
        yield
    finally:
        plugins.reset_plugin_manager()
        _forget_fake_modules()


@pytest.fixture
def fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_plugins: None) -> Path:
    """An installed distribution `chief-fakes` whose `chief` entry points are broken and good plugins."""
    for module, source in FAKE_MODULES.items():
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    dist_info = tmp_path / "chief_fakes-1.2.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: chief-fakes\nVersion: 1.2.3\n")
    lines = "".join(f"{name} = {module}\n" for name, module in ENTRY_POINTS.items())
    (dist_info / "entry_points.txt").write_text(f"[chief]\n{lines}")
    monkeypatch.syspath_prepend(str(tmp_path))
    _forget_fake_modules()
    return tmp_path


def _failure(registry: plugins.Registry, plugin: str) -> PluginFailure:
    found = [f for f in registry.errors if f.plugin == plugin]
    assert found, f"no failure recorded for {plugin}: {registry.errors}"
    return found[0]


# --- built-ins -----------------------------------------------------------------------------


def test_plugins_builtins_load(fresh_plugins: None) -> None:
    registry = get_registry()
    assert set(registry.agents) == BUILTIN_AGENTS
    assert "offline" in registry.providers
    assert registry.provider().name == registry.default_provider_name == "offline"
    assert registry.errors == []
    [folder] = registry.workflow_dirs
    assert BUILTIN_WORKFLOWS <= {p.name for p in folder.glob("*.yaml")}
    infos = {i.name: i for i in registry.plugin_infos()}
    assert infos["chief.plugins.agents"].version == "built-in"
    assert "echo" in infos["chief.plugins.agents"].registered["agents"]
    assert infos["chief.plugins.offline"].hooks == ["register_providers"]


def test_plugins_registry_is_cached_and_resettable(fresh_plugins: None) -> None:
    assert get_registry() is get_registry()
    first = get_registry()
    plugins.reset_registry()
    assert get_registry() is not first


def test_plugins_core_never_imports_chief_plugins() -> None:
    for path in (ROOT / "chief" / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            assert not any(n == "chief.plugins" or n.startswith("chief.plugins.") for n in names), path


def test_plugins_capability_resolution_in_registration_order(fresh_plugins: None) -> None:
    registry = get_registry()
    assert registry.resolve_agent(capability="code-review").name == "security"
    assert registry.resolve_agent(capability="code-quality").name == "quality"
    assert registry.resolve_agent(capability="summarise").name == "product"
    assert registry.resolve_agent("writer", "summarise").name == "writer"
    assert [a.name for a in registry.agents_with_capability("summarise")] == ["product", "writer"]


# --- entry points, isolated ----------------------------------------------------------------


def test_plugins_broken_entry_points_reported_and_skipped(fake_distribution: Path) -> None:
    registry = get_registry()  # must not raise
    assert "weather" in registry.agents
    assert BUILTIN_AGENTS <= set(registry.agents)

    failure = _failure(registry, "broken_import")
    assert failure.stage == "import"
    assert "ImportError" in failure.error and "pyweather" in failure.error

    failure = _failure(registry, "broken_hook")
    assert (failure.stage, failure.hook) == ("hook", "register_agents")
    assert "weather service key missing" in failure.error
    assert "half-registered" not in registry.agents  # a hook that raised registers nothing

    failure = _failure(registry, "bad_signature")
    assert failure.stage == "register"
    assert "not_an_argument" in failure.error
    assert get_plugin_manager().get_plugin("bad_signature") is None

    infos = {i.name: i for i in registry.plugin_infos()}
    assert infos["good"].version == "1.2.3"
    assert infos["good"].registered == {"agents": ["weather"]}
    assert infos["good"].error is None
    assert "pyweather" in (infos["broken_import"].error or "")
    assert infos["broken_hook"].hooks == ["register_agents"]


def test_plugins_load_plugins_env_selects_entry_points(fake_distribution: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIEF_LOAD_PLUGINS", "good")
    registry = get_registry()
    assert "weather" in registry.agents
    assert registry.errors == []
    assert get_plugin_manager().get_plugin("broken_hook") is None


def test_plugins_load_plugins_empty_loads_no_third_party(fake_distribution: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIEF_LOAD_PLUGINS", "")
    registry = get_registry()
    assert set(registry.agents) == BUILTIN_AGENTS
    assert registry.errors == []


def test_plugins_load_plugins_unknown_name_reported(fake_distribution: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIEF_LOAD_PLUGINS", "good, nope")
    registry = get_registry()
    assert "weather" in registry.agents
    assert "no installed plugin" in _failure(registry, "nope").error


def test_plugins_trace_prints_hook_calls(fake_distribution: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CHIEF_TRACE_PLUGINS", "1")
    monkeypatch.setenv("CHIEF_LOAD_PLUGINS", "good,broken_hook")
    registry = get_registry()
    registry.notify_event({"type": "step.started"})
    get_plugin_manager().hook.on_event(event="direct")  # a direct pluggy call is traced too
    err = capsys.readouterr().err
    assert "call register_agents in good" in err
    assert "registered agents: weather" in err
    assert "register_agents in broken_hook raised RuntimeError" in err
    assert "call on_event(event='direct')" in err


def test_plugins_no_trace_by_default(fresh_plugins: None, capsys: pytest.CaptureFixture[str]) -> None:
    get_registry()
    assert "[chief plugins]" not in capsys.readouterr().err


# --- hooks: every one implemented by a test plugin -------------------------------------------


class FakeProvider:
    name = "fake"
    default_model = "fake-1"

    async def complete(self, messages: Any, *, model: str | None = None, **options: Any) -> Any:
        raise NotImplementedError


class FakeExtractor:
    name = "fake-text"
    mime_types = ("text/x-fake",)
    extensions = (".fake",)

    def extract(self, path: str, mime_type: str) -> ExtractedFile:
        return ExtractedFile(name=path, mime_type=mime_type, text="fake")


class FakePlanner:
    name = "fake-planner"

    async def plan(self, request: str, files: Any, context: dict[str, Any]) -> Any:
        return None


class EverythingPlugin:
    """Implements every hook, some with fewer arguments than the spec."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.events: list[Any] = []

    @hookimpl
    def register_providers(self, register: Any) -> None:
        register(FakeProvider())

    @hookimpl
    def register_agents(self, register: Any) -> None:
        register(EchoAgent(name="fake-echo", capabilities=("fake",)))

    @hookimpl
    def register_extractors(self, register: Any) -> None:
        register(FakeExtractor())

    @hookimpl
    def register_workflow_dirs(self, register: Any) -> None:
        register(str(self.folder))

    @hookimpl
    def register_planners(self, register: Any) -> None:
        register(FakePlanner())

    @hookimpl
    def on_event(self, event: Any) -> None:
        self.events.append(event)


def test_plugins_every_hook_registers(fresh_plugins: None, tmp_path: Path) -> None:
    plugin = EverythingPlugin(tmp_path)
    with register_temporary(plugin, name="everything") as registry:
        assert registry.provider("fake").default_model == "fake-1"
        assert registry.agent("fake-echo").capabilities == ("fake",)
        assert "fake-text" in [e.name for e in registry.extractors]
        assert tmp_path in registry.workflow_dirs
        assert "fake-planner" in [p.name for p in registry.planners]
        plugins.notify_event("e1")
        assert plugin.events == ["e1"]
        assert registry.errors == []
    assert "fake-echo" not in get_registry().agents  # unregistered in `finally`
    assert get_plugin_manager().get_plugin("everything") is None


def test_plugins_hookimpl_may_take_fewer_arguments(fresh_plugins: None) -> None:
    events: list[str] = []

    class NoArgs:
        @hookimpl
        def register_agents(self) -> None:
            events.append("called")

        @hookimpl
        def on_event(self) -> None:
            events.append("event")

    with register_temporary(NoArgs()) as registry:
        registry.notify_event("x")
        assert events == ["called", "event"]
        assert registry.errors == []


def test_plugins_on_event_observer_that_raises_is_isolated(fresh_plugins: None) -> None:
    seen: list[Any] = []

    class Raising:
        @hookimpl
        def on_event(self, event: Any) -> None:
            raise ValueError("audit log is full")

    class Recording:
        @hookimpl
        def on_event(self, event: Any) -> None:
            seen.append(event)

    with register_temporary(Raising(), name="raising"), register_temporary(Recording(), name="recording"):
        registry = get_registry()
        registry.notify_event("first")
        plugins.notify_event("second")
        assert seen == ["first", "second"]
        failures = [f for f in registry.errors if f.plugin == "raising"]
        assert len(failures) == 1  # recorded once, not once per event
        assert (failures[0].hook, failures[0].error) == ("on_event", "ValueError: audit log is full")


def test_plugins_duplicate_agent_name_recorded(fresh_plugins: None) -> None:
    class Impostor:
        @hookimpl
        def register_agents(self, register: Any) -> None:
            register(EchoAgent(name="security"))

    with register_temporary(Impostor(), name="impostor") as registry:
        assert isinstance(registry.agent("security"), PersonaAgent)  # the first one wins
        failure = _failure(registry, "impostor")
        assert "security" in failure.error and "chief.plugins.agents" in failure.error


def test_plugins_tryfirst_registers_before_builtins(fresh_plugins: None) -> None:
    class Override:
        @hookimpl(tryfirst=True)
        def register_agents(self, register: Any) -> None:
            register(EchoAgent(name="security"))

    with register_temporary(Override(), name="override") as registry:
        assert isinstance(registry.agent("security"), EchoAgent)
        assert "override" in _failure(registry, "chief.plugins.agents").error


def test_plugins_invalid_item_recorded(fresh_plugins: None) -> None:
    class Sloppy:
        @hookimpl
        def register_agents(self, register: Any) -> None:
            register("not an agent")
            register(EchoAgent(name="still-fine"))

    with register_temporary(Sloppy(), name="sloppy") as registry:
        assert "still-fine" in registry.agents
        failure = _failure(registry, "sloppy")
        assert "is not a valid Agent" in failure.error and "missing" in failure.error


def test_plugins_unknown_hook_name_reported(fake_distribution: Path) -> None:
    (fake_distribution / "chief_fake_typo.py").write_text(textwrap.dedent("""
        from chief.core.hookspecs import hookimpl

        @hookimpl
        def register_agent(register):
            pass
    """))
    dist_info = fake_distribution / "chief_fakes-1.2.3.dist-info"
    (dist_info / "entry_points.txt").write_text("[chief]\ntypo = chief_fake_typo\n")
    failure = _failure(get_registry(), "typo")
    assert failure.stage == "register"
    assert "did you mean register_agents" in failure.error


def test_plugins_build_registry_from_a_given_manager(fresh_plugins: None) -> None:
    pm = plugins.ChiefPluginManager()
    registry = build_registry(plugins.load_plugins(pm))
    assert set(registry.agents) == BUILTIN_AGENTS
    assert registry.pm is pm is not get_plugin_manager()


# --- errors a person can act on -------------------------------------------------------------


def test_plugins_unknown_agent_did_you_mean(fresh_plugins: None) -> None:
    with pytest.raises(UnknownAgent, match=r"No agent named 'securty'\. Did you mean 'security'\?.*backend"):
        get_registry().agent("securty")


def test_plugins_unknown_capability_did_you_mean(fresh_plugins: None) -> None:
    with pytest.raises(UnknownAgent, match=r"capability 'code-qualty'.*Did you mean 'code-quality'.*security-audit"):
        get_registry().resolve_agent(capability="code-qualty")
    with pytest.raises(UnknownAgent, match="agent name or a capability"):
        get_registry().resolve_agent()


def test_plugins_unknown_provider_lists_available(fresh_plugins: None) -> None:
    with pytest.raises(UnknownProvider, match=r"'ofline'\. Did you mean 'offline'\?.*Available providers: .*offline"):
        get_registry().provider("ofline")


def test_plugins_unknown_names_mention_broken_plugins(fake_distribution: Path) -> None:
    with pytest.raises(UnknownAgent, match="broken_hook.*chief plugins"):
        get_registry().agent("forecaster")


def test_plugins_default_provider_from_settings(fresh_plugins: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIEF_PROVIDER", "acme")  # openai is built in now: use a name nobody registers
    assert get_registry().default_provider_name == "acme"
    with pytest.raises(UnknownProvider, match="'acme'"):
        get_registry().default_provider()


# --- meta: every hook documented and tested --------------------------------------------------


def _hook_names() -> list[str]:
    return sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "chief_spec"))


def test_plugins_every_hook_is_documented_and_tested() -> None:
    names = _hook_names()
    assert names == sorted([
        "register_providers", "register_agents", "register_extractors",
        "register_workflow_dirs", "register_planners", "on_event",
    ])
    docs = (ROOT / "docs" / "plugins.md").read_text()
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    for name in names:
        assert re.search(rf"^## {name}\b", docs, re.MULTILINE), f"docs/plugins.md has no '## {name}' section"
        assert f"def {name}(" in tests, f"no test implements the hook {name}"
        assert getattr(hookspecs, name).__doc__, f"hookspec {name} has no docstring"
