"""The plugin manager: built-in and third-party plugins, each loaded and called in isolation.

Built-in plugins are modules of `chief.plugins` named in `DEFAULT_PLUGINS` and imported by
name (so `chief.core` never imports `chief.plugins`). Third-party plugins are entry points of
group `chief`. A plugin that fails to import, to register, or raises inside a hook is
recorded as a `PluginFailure` (shown by `chief plugins`) and skipped; the others work.

Environment:
- `CHIEF_LOAD_PLUGINS`: comma-separated entry-point (or distribution) names to load; an
  empty string loads no third-party plugin; unset loads them all.
- `CHIEF_TRACE_PLUGINS=1`: print every hook call and its result to stderr.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import pluggy

from . import hookspecs
from .agents import Agent, Extractor, Planner, Provider
from .config import Settings
from .errors import UnknownAgent, UnknownProvider

log = logging.getLogger(__name__)

DEFAULT_PLUGINS: tuple[str, ...] = (
    "chief.plugins.offline",
    "chief.plugins.agents",
    "chief.plugins.workflow_dirs",
    "chief.plugins.extractors",
    "chief.plugins.planners",
    "chief.plugins.openai_compat",
    "chief.plugins.anthropic",
    "chief.plugins.llm_bridge",
)
ENTRY_POINT_GROUP = "chief"
BUILT_IN = "built-in"

Stage = Literal["import", "register", "hook"]

# kind -> (hook name, protocol a registered object must satisfy (None: a path), its attributes)
_KINDS: dict[str, tuple[str, type | None, tuple[str, ...]]] = {
    "provider": ("register_providers", Provider, ("name", "default_model", "complete")),
    "agent": ("register_agents", Agent, ("name", "description", "capabilities", "provider", "model", "run")),
    "extractor": ("register_extractors", Extractor, ("name", "mime_types", "extensions", "extract")),
    "workflow_dir": ("register_workflow_dirs", None, ()),
    "planner": ("register_planners", Planner, ("name", "plan")),
}


@dataclass(frozen=True)
class PluginFailure:
    """One plugin problem: which plugin, at which stage, and the error message."""

    plugin: str
    stage: Stage
    error: str
    hook: str | None = None

    def __str__(self) -> str:
        where = f"{self.plugin} ({self.stage}{': ' + self.hook if self.hook else ''})"
        return f"{where}: {self.error}"


@dataclass
class PluginInfo:
    """What `chief plugins` shows about one plugin."""

    name: str
    version: str
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)  # kind -> names
    error: str | None = None


class ChiefPluginManager(pluggy.PluginManager):
    """A pluggy manager with Chief's hookspecs and a record of how loading each plugin went."""

    def __init__(self, *, trace: bool | None = None) -> None:
        super().__init__("chief")
        self.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.versions: dict[str, str] = {}
        self.loaded = False
        self.trace_enabled = _env_flag("CHIEF_TRACE_PLUGINS") if trace is None else trace
        if self.trace_enabled:
            self.add_hookcall_monitoring(_trace_before, _trace_after)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _describe(exc: BaseException, limit: int = 500) -> str:
    """`Type: message` on one line (multi-line messages joined with "; "), capped at `limit`."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def trace(message: str) -> None:
    """Print one plugin-trace line to stderr (used when `CHIEF_TRACE_PLUGINS=1`)."""
    print(f"[chief plugins] {message}", file=sys.stderr)


def _trace_before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: dict[str, Any]) -> None:
    args = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
    trace(f"call {hook_name}({args}) -> {[i.plugin_name for i in impls]}")


def _trace_after(outcome: Any, hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: dict[str, Any]) -> None:
    if outcome.exception is not None:
        trace(f"{hook_name} raised {_describe(outcome.exception)}")
    else:
        trace(f"{hook_name} returned {_short(outcome.get_result())}")


# --- loading -----------------------------------------------------------------------------

_manager: ChiefPluginManager | None = None
_registry: Registry | None = None


def get_plugin_manager() -> ChiefPluginManager:
    """The process-wide plugin manager, built and loaded on first use."""
    global _manager
    if _manager is None:
        pm = ChiefPluginManager()
        load_plugins(pm)
        _manager = pm
    return _manager


def reset_plugin_manager() -> None:
    """Forget the manager and the registry (tests; or after changing `CHIEF_*_PLUGINS`)."""
    global _manager
    _manager = None
    reset_registry()


def load_plugins(pm: ChiefPluginManager | None = None) -> ChiefPluginManager:
    """Register the built-in modules, then each selected entry point, one at a time; idempotent."""
    if pm is None:
        return get_plugin_manager()
    if pm.loaded:
        return pm
    pm.loaded = True
    for dotted in DEFAULT_PLUGINS:
        _load_one(pm, dotted, BUILT_IN, lambda dotted=dotted: importlib.import_module(dotted))
    for ep in _selected_entry_points(pm):
        version = ep.dist.version if ep.dist is not None else "unknown"
        _load_one(pm, ep.name, version, ep.load)
    return pm


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def _selected_entry_points(pm: ChiefPluginManager) -> list[metadata.EntryPoint]:
    """Entry points of group `chief`, limited by `CHIEF_LOAD_PLUGINS` when it is set."""
    found = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    wanted_raw = os.environ.get("CHIEF_LOAD_PLUGINS")
    if wanted_raw is None:
        return found
    wanted = {_norm(n) for n in wanted_raw.split(",") if n.strip()}
    selected = [
        ep for ep in found
        if _norm(ep.name) in wanted or (ep.dist is not None and _norm(ep.dist.name) in wanted)
    ]
    known = {_norm(ep.name) for ep in found} | {_norm(ep.dist.name) for ep in found if ep.dist is not None}
    for missing in sorted(wanted - known):
        pm.failures.append(PluginFailure(
            missing, "import",
            f"CHIEF_LOAD_PLUGINS names '{missing}' but no installed plugin has that name",
        ))
    return selected


def _load_one(pm: ChiefPluginManager, name: str, version: str, load: Callable[[], Any]) -> None:
    """Import and register one plugin; record (never raise) whatever goes wrong."""
    pm.versions.setdefault(name, version)
    try:
        plugin = load()
    except Exception as exc:  # a broken plugin must never stop Chief
        _record_load_failure(pm, PluginFailure(name, "import", _describe(exc)))
        return
    try:
        pm.register(plugin, name=name)
    except Exception as exc:
        if pm.get_plugin(name) is plugin:  # never leave half a plugin behind
            with contextlib.suppress(Exception):
                pm.unregister(name=name)
        _record_load_failure(pm, PluginFailure(name, "register", _describe(exc)))
        return
    for hook_name in _unknown_hooks(pm, plugin):
        close = difflib.get_close_matches(hook_name, _hook_names(), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        pm.failures.append(PluginFailure(
            name, "register", f"unknown hook '{hook_name}' ignored{hint}", hook=hook_name,
        ))
    if pm.trace_enabled:
        trace(f"loaded {name} ({version})")


def _record_load_failure(pm: ChiefPluginManager, failure: PluginFailure) -> None:
    pm.failures.append(failure)
    log.warning("plugin %s skipped: %s", failure.plugin, failure.error)
    if pm.trace_enabled:
        trace(f"skipped {failure}")


def _hook_names() -> list[str]:
    return [n for n in dir(hookspecs) if n.startswith(("register_", "on_"))]


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hooks the plugin implements that Chief does not define (a typo would otherwise be silent)."""
    return [
        caller.name for caller in (pm.get_hookcallers(plugin) or [])
        if not caller.has_spec()
        and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls())
    ]


def _impls(pm: pluggy.PluginManager, hook_name: str) -> list[pluggy.HookImpl]:
    """A hook's plain implementations: `tryfirst` ones, then registration order, then `trylast`."""
    caller = getattr(pm.hook, hook_name, None)
    if caller is None:
        return []
    impls = [i for i in caller.get_hookimpls() if not (i.hookwrapper or i.wrapper)]
    return sorted(impls, key=lambda i: 0 if i.tryfirst else 2 if i.trylast else 1)


def _call_impl(pm: ChiefPluginManager, impl: pluggy.HookImpl, hook_name: str, kwargs: dict[str, Any]) -> Any:
    """Call one hookimpl with only the arguments it asks for (so it may take fewer than the spec)."""
    if pm.trace_enabled:
        trace(f"call {hook_name} in {impl.plugin_name}")
    args = [kwargs[a] for a in impl.argnames]
    try:
        result = impl.function(*args)
    except Exception as exc:
        if pm.trace_enabled:
            trace(f"{hook_name} in {impl.plugin_name} raised {_describe(exc)}")
        raise
    if pm.trace_enabled:
        trace(f"{hook_name} in {impl.plugin_name} returned {_short(result)}")
    return result


# --- the registry ------------------------------------------------------------------------


class Registry:
    """Everything the plugins registered: agents, providers, extractors, workflow folders, planners.

    Each hookimpl is called on its own: one that raises is recorded in `errors` and what it
    registered before raising is dropped; the other plugins are unaffected. When two plugins
    register the same name, the first wins (built-ins register first; a third-party plugin can
    go first with `@hookimpl(tryfirst=True)`) and the duplicate is recorded in `errors`.
    """

    def __init__(self, pm: ChiefPluginManager) -> None:
        self.pm = pm
        self.agents: dict[str, Agent] = {}
        self.providers: dict[str, Provider] = {}
        self.extractors: list[Extractor] = []
        self.workflow_dirs: list[Path] = []
        self.planners: list[Planner] = []
        self.errors: list[PluginFailure] = list(pm.failures)
        self._owners: dict[tuple[str, str], str] = {}  # (kind, name) -> plugin name
        self._members: dict[str, Provider] = {}  # "family:model" providers made on first use
        self._seen_errors: set[tuple[str, str, str]] = set()
        for kind in _KINDS:
            self._collect(kind)
        self._event_impls = _impls(pm, "on_event")

    def _collect(self, kind: str) -> None:
        hook_name = _KINDS[kind][0]
        for impl in _impls(self.pm, hook_name):
            try:
                staged, problems = self._call_register(impl, kind)
            except Exception as exc:
                self._fail(impl.plugin_name, "hook", _describe(exc), hook_name)
                continue
            for problem in problems:
                self._fail(impl.plugin_name, "hook", problem, hook_name)
            if self.pm.trace_enabled:
                names = [str(i) if kind == "workflow_dir" else i.name for i in staged]
                trace(f"{hook_name} in {impl.plugin_name} registered {kind}s: {', '.join(names) or '(none)'}")
            for item in staged:
                self._add(kind, impl.plugin_name, item, hook_name)

    def _call_register(self, impl: pluggy.HookImpl, kind: str) -> tuple[list[Any], list[str]]:
        """Call one `register_*` impl; return what it registered and what it got wrong."""
        hook_name, protocol, attrs = _KINDS[kind]
        staged: list[Any] = []
        problems: list[str] = []

        def register(item: Any) -> None:
            if protocol is None:
                staged.append(Path(item))
            elif isinstance(item, protocol) and isinstance(item.name, str) and item.name:
                staged.append(item)
            else:
                missing = [a for a in attrs if not hasattr(item, a)]
                why = f"missing {', '.join(missing)}" if missing else "it needs a non-empty string name"
                problems.append(f"{_short(item, 80)} is not a valid {protocol.__name__}: {why}")

        _call_impl(self.pm, impl, hook_name, {"register": register})
        return staged, problems

    def _add(self, kind: str, plugin: str, item: Any, hook_name: str) -> None:
        name = str(item) if kind == "workflow_dir" else getattr(item, "name", "")
        owner = self._owners.get((kind, name))
        if owner is not None:
            if kind != "workflow_dir" and owner != plugin:
                self._fail(plugin, "hook", f"{kind} '{name}' is already registered by {owner}; ignored", hook_name)
            elif kind != "workflow_dir":
                self._fail(plugin, "hook", f"{kind} '{name}' registered twice; ignored", hook_name)
            return
        self._owners[(kind, name)] = plugin
        if kind == "agent":
            self.agents[name] = item
        elif kind == "provider":
            self.providers[name] = item
        elif kind == "extractor":
            self.extractors.append(item)
        elif kind == "planner":
            self.planners.append(item)
        else:
            self.workflow_dirs.append(item)

    def _fail(self, plugin: str, stage: Stage, message: str, hook: str | None = None) -> None:
        key = (plugin, hook or stage, message)
        if key in self._seen_errors:  # an observer failing on every event is recorded once
            return
        self._seen_errors.add(key)
        self.errors.append(PluginFailure(plugin, stage, message, hook))
        log.warning("plugin %s: %s: %s", plugin, hook or stage, message)

    def _failed_hint(self) -> str:
        names = sorted({f.plugin for f in self.errors})
        if not names:
            return ""
        return f" ({len(names)} plugin(s) had errors: {', '.join(names)}; run `chief plugins`)"

    # --- look-ups ------------------------------------------------------------------------

    def agent(self, name: str) -> Agent:
        """The agent named `name`; `UnknownAgent` (with a did-you-mean) if there is none."""
        try:
            return self.agents[name]
        except KeyError:
            raise UnknownAgent(
                f"No agent named '{name}'.{_did_you_mean(name, self.agents)} "
                f"Available agents: {_listing(self.agents)}.{self._failed_hint()}"
            ) from None

    def agents_with_capability(self, capability: str) -> list[Agent]:
        """Agents that declare `capability`, in registration order."""
        return [a for a in self.agents.values() if capability in a.capabilities]

    def capabilities(self) -> list[str]:
        """Every capability some agent declares, sorted."""
        return sorted({c for a in self.agents.values() for c in a.capabilities})

    def resolve_agent(self, name: str | None = None, capability: str | None = None) -> Agent:
        """The agent a step runs on: by `name`, else the first agent declaring `capability`."""
        if name:
            return self.agent(name)
        if not capability:
            raise UnknownAgent("A step needs an agent name or a capability.")
        found = self.agents_with_capability(capability)
        if found:
            return found[0]
        caps = self.capabilities()
        raise UnknownAgent(
            f"No agent declares capability '{capability}'.{_did_you_mean(capability, caps)} "
            f"Capabilities available: {_listing(caps)}.{self._failed_hint()}"
        )

    def provider(self, name: str | None = None) -> Provider:
        """The provider named `name` (default: `default_provider_name`); `UnknownProvider` if none."""
        name = name or self.default_provider_name
        found = self.providers.get(name) or self._family_member(name)
        if found is not None:
            return found
        raise UnknownProvider(
            f"No provider named '{name}'.{_did_you_mean(name, self.providers)} "
            f"Available providers: {_listing(self.providers)}. Install a provider plugin "
            f"or set CHIEF_PROVIDER to one of these.{self._failed_hint()}"
        )

    def _family_member(self, name: str) -> Provider | None:
        """`family:model` (e.g. `llm:mistral-7b`, `openai:gpt-4o`): the family provider's `for_model(model)`."""
        family, sep, model = name.partition(":")
        provider = self.providers.get(family) if sep and model else None
        for_model = getattr(provider, "for_model", None)
        if for_model is None:
            return None
        member = self._members.get(name)
        if member is None:
            member = self._members[name] = for_model(model)
        return member

    def owner_of(self, kind: str, name: str) -> str | None:
        """The plugin that registered the `kind` ("agent", "provider", ...) named `name` (`family:model`
        names belong to their family's plugin); None if nothing by that name is registered."""
        owner = self._owners.get((kind, name))
        if owner is None and kind == "provider" and ":" in name:
            owner = self._owners.get((kind, name.partition(":")[0]))
        return owner

    @property
    def default_provider_name(self) -> str:
        """The global default provider (`CHIEF_PROVIDER`, default `offline`)."""
        return Settings().provider

    def default_provider(self) -> Provider:
        """The global default provider object."""
        return self.provider(self.default_provider_name)

    # --- events and introspection --------------------------------------------------------

    def notify_event(self, event: Any) -> None:
        """Call `on_event` on every plugin; an observer that raises is recorded, never propagated."""
        for impl in self._event_impls:
            try:
                _call_impl(self.pm, impl, "on_event", {"event": event})
            except Exception as exc:
                self._fail(impl.plugin_name, "hook", _describe(exc), "on_event")

    def plugin_infos(self) -> list[PluginInfo]:
        """One `PluginInfo` per plugin, loaded or failed, in load order (for `chief plugins`)."""
        infos: dict[str, PluginInfo] = {}
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:
                continue
            hooks = sorted(c.name for c in (self.pm.get_hookcallers(plugin) or []))
            infos[name] = PluginInfo(name, self.pm.versions.get(name, "unknown"), hooks)
        for (kind, item_name), owner in self._owners.items():
            info = infos.setdefault(owner, PluginInfo(owner, self.pm.versions.get(owner, "unknown")))
            info.registered.setdefault(kind + "s", []).append(item_name)
        for failure in self.errors:
            info = infos.setdefault(
                failure.plugin, PluginInfo(failure.plugin, self.pm.versions.get(failure.plugin, "unknown"))
            )
            text = f"{failure.stage}{': ' + failure.hook if failure.hook else ''}: {failure.error}"
            info.error = f"{info.error}; {text}" if info.error else text
        return list(infos.values())


def _did_you_mean(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    if not close:
        return ""
    return " Did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def _listing(names: Any) -> str:
    names = sorted(names)
    return ", ".join(names) if names else "(none)"


# --- the process-wide registry -----------------------------------------------------------


def build_registry(pm: ChiefPluginManager | None = None) -> Registry:
    """Call every `register_*` hook of `pm` (default: the loaded process-wide manager)."""
    return Registry(pm if pm is not None else get_plugin_manager())


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        _registry = build_registry()
    return _registry


def reset_registry() -> None:
    """Forget the cached registry; the next `get_registry()` calls the hooks again."""
    global _registry
    _registry = None


def notify_event(event: Any) -> None:
    """Tell every plugin's `on_event` about `event`; failures are recorded, never raised."""
    get_registry().notify_event(event)


@contextlib.contextmanager
def register_temporary(plugin: object, name: str | None = None) -> Iterator[Registry]:
    """Register `plugin` (a module or object with `@hookimpl`s) for the duration of a `with` block.

    Yields the rebuilt registry; unregisters the plugin and resets the registry in `finally`.
    """
    pm = get_plugin_manager()
    registered = pm.register(plugin, name=name)
    reset_registry()
    try:
        yield get_registry()
    finally:
        if registered is not None and pm.get_plugin(registered) is plugin:
            pm.unregister(name=registered)
        reset_registry()
