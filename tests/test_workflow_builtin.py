"""The built-in workflows: each validates against the built-in agents, and its compiled graph is drawn
exactly as the snapshot in tests/snapshots/ (regenerate with CHIEF_UPDATE_SNAPSHOTS=1)."""

import os
from pathlib import Path

import pytest

from chief.core.plugins import get_registry
from chief.core.workflows import graph_mermaid, load_workflow, validate_workflow

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = sorted((ROOT / "workflows").glob("*.yaml"))
SNAPSHOTS = ROOT / "tests" / "snapshots"


def test_builtin_workflows_are_the_six_of_the_design():
    assert [p.stem for p in BUILT_IN] == ["answer", "code-review", "data-insights", "document-digest",
                                          "release-notes", "research-report"]


@pytest.mark.parametrize("path", BUILT_IN, ids=lambda p: p.stem)
def test_builtin_workflow_validates_against_the_builtin_agents(path):
    registry = get_registry()
    capabilities = {c for a in registry.agents.values() for c in a.capabilities}
    spec = load_workflow(path)
    assert validate_workflow(spec, agents=set(registry.agents), capabilities=capabilities) == []
    assert spec.description and spec.tags, "the planner picks workflows by description and tags"


@pytest.mark.parametrize("path", BUILT_IN, ids=lambda p: p.stem)
def test_builtin_workflow_compiled_graph_matches_its_mermaid_snapshot(path):
    drawing = graph_mermaid(load_workflow(path))
    snapshot = SNAPSHOTS / f"{path.stem}.mmd"
    if os.environ.get("CHIEF_UPDATE_SNAPSHOTS") == "1":
        snapshot.write_text(drawing)
    assert drawing == snapshot.read_text()


def test_seed_format_workflow_runs_unchanged_through_the_cli(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIEF_")} | {"CHIEF_HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "chief.cli", "run", "tests/data/workflows/code-review-seed.yaml",
                           "--json", "-i", "git_diff=@examples/changes.diff"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    import json

    result = json.loads(done.stdout)
    assert result["status"] == "succeeded"
    steps = {s["task_key"]: s for s in result["steps"] if s["status"] == "succeeded"}
    assert set(steps) == {"parse-changes", "security-audit", "quality-check", "aggregate-results"}
    assert "app/auth.py" in steps["parse-changes"]["result"]  # the implicit {{git_diff}} input reached the step
