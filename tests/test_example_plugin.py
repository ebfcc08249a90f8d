"""examples/chief-example-plugin installed with pip (as a user would) and used by the `chief` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "chief-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example built and installed by pip into a folder of its own (offline: no index, no downloads)."""
    base = tmp_path_factory.mktemp("example-plugin")
    source = base / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    target = base / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (target / "chief_example_plugin" / "workflows" / "haiku.yaml").is_file()
    return target


@pytest.fixture
def env(installed: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIEF_")}
    env["PYTHONPATH"] = os.pathsep.join([str(installed), str(ROOT)])
    env["CHIEF_HOME"] = str(tmp_path / "home")
    env["COLUMNS"] = "200"
    return env


def chief(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chief.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_example_plugin_appears_in_plugins_agents_and_providers(env: dict[str, str]) -> None:
    plugins = chief(env, "plugins", "--json")
    assert plugins.returncode == 0, plugins.stderr
    [info] = [p for p in json.loads(plugins.stdout) if p["name"] == "example"]
    assert info["version"] == "0.1.0" and not info["error"]
    assert info["registered"] == {"agents": ["haiku"], "providers": ["reverse"], "extractors": ["todo"],
                                  "workflow_dirs": [str(Path(env["PYTHONPATH"].split(os.pathsep)[0])
                                                        / "chief_example_plugin" / "workflows")]}
    agents = chief(env, "agents", "--json")
    assert "haiku" in [a["name"] for a in json.loads(agents.stdout)]
    providers = chief(env, "providers", "--json")
    [reverse] = [p for p in json.loads(providers.stdout)["providers"] if p["name"] == "reverse"]
    assert reverse["plugin"] == "example" and reverse["models"] == ["reverse-1"]


def test_example_plugin_workflow_runs_by_name(env: dict[str, str]) -> None:
    done = chief(env, "run", "haiku", "--input", "topic=autumn leaves", "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    assert result["output"].splitlines() == ["leaves autumn", "about haiku", "a Write"]
    [step] = [s for s in result["steps"] if s["status"] == "succeeded"]
    assert (step["agent"], step["provider"], step["model"]) == ("haiku", "reverse", "reverse-1")


def test_example_plugin_left_out_by_chief_load_plugins(env: dict[str, str]) -> None:
    env["CHIEF_LOAD_PLUGINS"] = ""
    agents = chief(env, "agents", "--json")
    assert "haiku" not in [a["name"] for a in json.loads(agents.stdout)]


def test_example_plugin_own_tests_pass_against_the_installed_package(installed: Path, env: dict[str, str]) -> None:
    tests = installed.parent / "src" / "tests"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
                           str(tests.parent), str(tests)],
                          cwd=tests.parent, env={**env, "PYTHONPATH": str(installed)}, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 passed" in done.stdout
