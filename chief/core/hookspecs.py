"""The hooks a Chief plugin may implement (pluggy project name and entry-point group: `chief`).

Every hook is synchronous and does no I/O; the `register_*` hooks take a `register` callback.
A hookimpl may take fewer arguments than its spec, so hooks can grow without breaking plugins.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("chief")
hookimpl = pluggy.HookimplMarker("chief")


@hookspec
def register_providers(register: Any) -> None:
    """Register AI providers: call `register(provider)` with objects implementing `chief.core.agents.Provider`."""


@hookspec
def register_agents(register: Any) -> None:
    """Register agents: call `register(agent)` with objects implementing `chief.core.agents.Agent`."""


@hookspec
def register_extractors(register: Any) -> None:
    """Register file extractors: call `register(extractor)` with `chief.core.agents.Extractor` objects."""


@hookspec
def register_workflow_dirs(register: Any) -> None:
    """Register folders of workflow YAML files: call `register(path)` with a `Path` or `str`."""


@hookspec
def register_planners(register: Any) -> None:
    """Register planners that turn a chat request into a workflow: call `register(planner)`."""


@hookspec
def on_event(event: Any) -> None:
    """Observe an execution event (a `chief.core.messages.Event`); must not block or raise."""
