"""`chief plugin new NAME`: scaffold a third-party plugin package (agent, provider, extractor, workflow, tests).

The files come from the string templates below; the only thing substituted into them is the
plugin's name, checked first against a strict pattern, and nothing is ever evaluated.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

import click

from ..core.errors import ChiefError
from .common import EXIT_OK, EXIT_USAGE, console, err_console
from .main import cli

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")
MAX_NAME = 40

PYPROJECT = Template('''\
[build-system]
requires = ["hatchling>=1.25"]
build-backend = "hatchling.build"

[project]
name = "${dist}"
version = "0.1.0"
description = "A Chief plugin: the ${name} agent, provider, extractor and workflow."
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["chief"]

[project.optional-dependencies]
test = ["pytest>=8.3", "pytest-asyncio>=0.25"]

# Chief loads every entry point of the group "chief".
[project.entry-points.chief]
${name} = "${module}"

[tool.hatch.build.targets.wheel]
packages = ["${module}"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
''')

README = Template('''\
# ${dist}

A [Chief](https://pypi.org/project/chief/) plugin. It registers the agent `${name}`, the provider
`${name}-echo`, an extractor for `.${name}` files and the workflow `${name}-example`.

```
pip install -e .          # then: chief plugins, chief agents, chief providers
chief run ${name}-example --input topic="anything"
pip install -e ".[test]" && pytest
```

Hooks are synchronous and do no I/O: they only hand objects to `register`. See Chief's
`docs/plugins.md` for every hook, streaming (`on_token`) and errors (`ProviderError`).
''')

MODULE = Template('''\
"""${dist}: the ${name} agent, the ${name}-echo provider, a .${name} extractor and a workflow folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chief.core.agents import Completion, ExtractedFile
from chief.core.errors import ChiefError, ProviderError
from chief.core.hookspecs import hookimpl
from chief.core.personas import PersonaAgent

WORKFLOWS = Path(__file__).parent / "workflows"

AGENT = PersonaAgent(
    name="${name}",
    description="TODO: one line saying what the ${name} agent is good at.",
    capabilities=["${name}"],
    system_prompt="TODO: the system prompt of the ${name} agent.",
)


class EchoProvider:
    """TODO: call your model here. This stand-in answers with the last user message."""

    name = "${name}-echo"
    default_model = "${name}-echo-1"

    async def complete(self, messages: Any, *, model: str | None = None, **options: Any) -> Completion:
        user = [m["content"] for m in messages if m.get("role") == "user"]
        if not user:
            raise ProviderError("${name}-echo: there is no user message", retryable=False)
        on_token = options.get("on_token")  # stream pieces of the answer when the caller asks
        if on_token is not None:
            outcome = on_token(user[-1])
            if hasattr(outcome, "__await__"):
                await outcome
        words = len(user[-1].split())
        return Completion(text=user[-1], model=model or self.default_model, tokens_in=words,
                          tokens_out=words, tokens_estimated=True)


class TextExtractor:
    """TODO: turn your file type into text. This one reads .${name} files as UTF-8 text."""

    name = "${name}"
    mime_types = ("text/x-${name}",)
    extensions = (".${name}",)

    def extract(self, path: str, mime_type: str) -> ExtractedFile:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        if not text.strip():
            raise ChiefError(f"{Path(path).name} is empty")
        return ExtractedFile(name=Path(path).name, mime_type=mime_type, text=text, meta={"chars": len(text)})


@hookimpl
def register_agents(register: Any) -> None:
    """The ${name} agent."""
    register(AGENT)


@hookimpl
def register_providers(register: Any) -> None:
    """The ${name}-echo provider."""
    register(EchoProvider())


@hookimpl
def register_extractors(register: Any) -> None:
    """The .${name} extractor."""
    register(TextExtractor())


@hookimpl
def register_workflow_dirs(register: Any) -> None:
    """The folder with the ${name}-example workflow."""
    register(WORKFLOWS)
''')

WORKFLOW = Template('''\
name: ${name}-example
description: TODO - what this workflow does (the Chief plans with it by its description and tags).
version: 1
tags: [${name}]
inputs:
  topic:
    description: What to work on
    required: true
    type: string
steps:
  - key: answer
    agent: ${name}
    provider: ${name}-echo
    prompt: "Work on this: {{inputs.topic}}"
output: "{{answer.result}}"
''')

TESTS = Template('''\
"""Tests of the ${name} plugin through Chief's registry."""

from __future__ import annotations

from pathlib import Path

import pytest

import ${module}
from chief.core import plugins
from chief.core.agents import AgentContext
from chief.core.messages import StepTask
from chief.core.plugins import register_temporary
from chief.core.workflows import load_workflow


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CHIEF_LOAD_PLUGINS", "")  # the built-ins and this module only
    plugins.reset_plugin_manager()
    try:
        with register_temporary(${module}, name="${name}") as registry:
            yield registry
    finally:
        plugins.reset_plugin_manager()


def test_registers_cleanly(registry) -> None:
    assert [e for e in registry.errors if e.plugin == "${name}"] == []
    assert "${name}" in registry.agents and "${name}-echo" in registry.providers
    assert ${module}.WORKFLOWS in registry.workflow_dirs


async def test_agent_runs_with_the_provider(registry) -> None:
    provider = registry.provider("${name}-echo")
    task = StepTask(execution_id="e", task_key="t", step_key="t", agent="${name}", prompt="hello")

    async def complete(messages, **options):
        return await provider.complete(messages, **options)

    assert await registry.agent("${name}").run(task, AgentContext(task, complete=complete)) == "hello"


def test_extractor(registry, tmp_path: Path) -> None:
    sample = tmp_path / "sample.${name}"
    sample.write_text("some text")
    [extractor] = [e for e in registry.extractors if e.name == "${name}"]
    assert extractor.extract(str(sample), "text/x-${name}").text == "some text"


def test_workflow_is_valid(registry) -> None:
    spec = load_workflow(${module}.WORKFLOWS / "${name}-example.yaml", agents=set(registry.agents))
    assert spec.name == "${name}-example"
''')


def scaffold(name: str, parent: Path) -> Path:
    """Write the package `chief-<name>` under `parent`; return its folder. `ChiefError` if the name or folder is wrong."""
    name = name.strip().lower()
    name = name.removeprefix("chief-")
    if not NAME_RE.match(name) or len(name) > MAX_NAME:
        raise ChiefError(f"plugin name '{name}': use lowercase letters, digits and single dashes, starting with a "
                         f"letter, at most {MAX_NAME} characters (e.g. weather or code-stats)")
    dist = f"chief-{name}"
    module = "chief_" + name.replace("-", "_")
    root = parent / dist
    if root.exists() and any(root.iterdir()):
        raise ChiefError(f"{root} already exists and is not empty: choose another --dir or remove it")
    values = {"name": name, "dist": dist, "module": module}
    files = {
        root / "pyproject.toml": PYPROJECT,
        root / "README.md": README,
        root / module / "__init__.py": MODULE,
        root / module / "workflows" / f"{name}-example.yaml": WORKFLOW,
        root / "tests" / f"test_{module}.py": TESTS,
    }
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(values), encoding="utf-8")
    return root


@cli.group()
def plugin() -> None:
    """Write Chief plugins."""


@plugin.command("new")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder in which to create chief-NAME/.")
def new(name: str, parent: Path) -> None:
    """Scaffold chief-NAME/: a plugin package with an agent, a provider, an extractor, a workflow and tests."""
    try:
        root = scaffold(name, parent)
    except ChiefError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(EXIT_USAGE) from None
    console.print(f"created {root}")
    console.print(f"next: cd {root} && pip install -e '.[test]' && pytest && chief plugins", markup=False)
    raise SystemExit(EXIT_OK)
