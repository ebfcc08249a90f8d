"""`chief plugin new NAME`: the scaffolded package registers cleanly and its own tests pass."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from chief.cli import plugin_new  # noqa: F401 - registers the command
from chief.cli.main import cli
from chief.core import plugins
from chief.core.plugins import register_temporary

ROOT = Path(__file__).resolve().parents[1]


def test_plugin_scaffold_creates_a_package(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plugin", "new", "weather-bot", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    root = tmp_path / "chief-weather-bot"
    assert "created" in result.output and sorted(p.relative_to(root).as_posix() for p in root.rglob("*.*")) == [
        "README.md", "chief_weather_bot/__init__.py", "chief_weather_bot/workflows/weather-bot-example.yaml",
        "pyproject.toml", "tests/test_chief_weather_bot.py",
    ]
    assert 'weather-bot = "chief_weather_bot"' in (root / "pyproject.toml").read_text()


def test_plugin_scaffold_registers_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plugin_new.scaffold("notes", tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "chief-notes"))
    monkeypatch.setenv("CHIEF_LOAD_PLUGINS", "")
    module = importlib.import_module("chief_notes")
    plugins.reset_plugin_manager()
    try:
        with register_temporary(module, name="notes") as registry:
            assert [e for e in registry.errors if e.plugin == "notes"] == []
            assert registry.owner_of("agent", "notes") == "notes"
            assert registry.owner_of("provider", "notes-echo") == "notes"
            assert [e.name for e in registry.extractors if e.name == "notes"] == ["notes"]
    finally:
        plugins.reset_plugin_manager()
        sys.modules.pop("chief_notes", None)


def test_plugin_scaffold_own_tests_pass(tmp_path: Path) -> None:
    root = plugin_new.scaffold("todo-list", tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIEF_")}
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(ROOT)])
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(root),
                           str(root / "tests")], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout


@pytest.mark.parametrize("bad", ["we@ther", "9lives", "two--dashes", "a_b", "x" * 41, "../evil", "a b"])
def test_plugin_scaffold_refuses_bad_names(tmp_path: Path, bad: str) -> None:
    result = CliRunner().invoke(cli, ["plugin", "new", bad, "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "lowercase letters" in result.output
    assert list(tmp_path.iterdir()) == []


def test_plugin_scaffold_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "chief-mine").mkdir()
    (tmp_path / "chief-mine" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["plugin", "new", "mine", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "already exists" in result.output
    assert (tmp_path / "chief-mine" / "keep.txt").read_text() == "mine"
