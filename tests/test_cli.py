"""The `chief` command end to end, in subprocesses, on the embedded defaults."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from queue import Empty, Queue

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIEF_")}
    env["CHIEF_HOME"] = str(tmp_path / "home")
    env["COLUMNS"] = "200"
    return env


def chief(env, *args, timeout=60, input=None):
    return subprocess.run([sys.executable, "-m", "chief.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, input=input)


def test_cli_runs_the_code_review_and_prints_progress_and_output(env):
    done = chief(env, "run", "workflows/code-review.yaml", "--input", "git_diff=@examples/changes.diff")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for key in ("parse-changes", "security-audit", "quality-check", "aggregate"):
        assert f"{key}" in out
    assert "running" in out and "succeeded" in out
    assert "offline" in out.lower()
    # the two middle steps were both queued before either finished: they ran in parallel
    lines = out.splitlines()
    first_done = min(i for i, line in enumerate(lines) if ("security-audit" in line or "quality-check" in line) and "succeeded" in line)
    assert any("quality-check" in line and "queued" in line for line in lines[:first_done])
    assert any("security-audit" in line and "queued" in line for line in lines[:first_done])


def test_cli_run_json_gives_a_machine_readable_result(env):
    done = chief(env, "run", "code-review", "--json", "-i", "git_diff=@examples/changes.diff")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and result["workflow"] == "code-review"
    assert {s["task_key"] for s in result["steps"]} == {"parse-changes", "security-audit", "quality-check", "aggregate"}
    status = chief(env, "workflow", "status", result["execution_id"])
    assert status.returncode == 0 and "aggregate" in status.stdout and "succeeded" in status.stdout


def test_cli_run_reports_a_missing_input_in_one_line(env):
    done = chief(env, "run", "workflows/code-review.yaml")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: workflows/code-review.yaml: missing required input 'git_diff' "
                                                "(The change to review (a unified diff, or the code files to review))"]


def test_cli_run_of_an_unknown_workflow_exits_2(env):
    done = chief(env, "run", "no-such-workflow")
    assert done.returncode == 2 and "no workflow 'no-such-workflow'" in done.stderr


def test_cli_validate_prints_every_problem_with_file_and_line(env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - key: a\n    agent: backend\n    prompt: x\n    depends_on: [b]\n"
                   "  - key: b\n    agent: securty\n    prompt: y\n    depends_on: [a]\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nsteps: [\n")
    done = chief(env, "workflow", "validate", str(bad), str(broken), "workflows/code-review.yaml")
    assert done.returncode == 2
    assert "cycle" in done.stderr and "a -> b -> a" in done.stderr
    assert "securty" in done.stderr and "security" in done.stderr  # did you mean
    assert "broken.yaml:" in done.stderr
    assert "ok workflows/code-review.yaml" in done.stdout


def test_cli_show_prints_levels_critical_path_and_mermaid(env):
    done = chief(env, "workflow", "show", "workflows/code-review.yaml")
    assert done.returncode == 0, done.stderr
    assert "level 1: security-audit" in done.stdout
    assert "critical path: parse-changes -> security-audit -> aggregate" in done.stdout
    assert "```mermaid" in done.stdout and "parse-changes --> security-audit" in done.stdout


def test_cli_lists_plugins_agents_and_an_empty_dlq(env):
    plugins = chief(env, "plugins")
    assert plugins.returncode == 0 and "chief.plugins.offline" in plugins.stdout
    agents = chief(env, "agents", "--json")
    names = {a["name"] for a in json.loads(agents.stdout)}
    assert {"backend", "security", "quality", "product", "researcher", "writer", "assistant"} <= names
    dlq = chief(env, "dlq")
    assert dlq.returncode == 0 and "no dead letters" in dlq.stdout
    upgrade = chief(env, "db", "upgrade")
    assert upgrade.returncode == 0 and "revision" in upgrade.stdout


def _reader(proc, lines: Queue):
    for line in proc.stdout:
        lines.put(line)
    lines.put(None)


def _wait_for(lines: Queue, needle: str, seen: list[str], timeout=60) -> str:
    while True:
        try:
            line = lines.get(timeout=timeout)
        except Empty:
            raise AssertionError(f"no line with {needle!r} within {timeout}s; saw:\n{''.join(seen)}") from None
        if line is None:
            raise AssertionError(f"process ended before {needle!r}; saw:\n{''.join(seen)}")
        seen.append(line)
        if needle in line:
            return line


def test_cli_pause_and_resume_from_a_second_terminal(env, tmp_path):
    flow = tmp_path / "slow.yaml"
    keys = ["one", "two", "three", "four", "five", "six", "seven", "eight"]
    steps = "".join(f"  - {{key: {k}, agent: assistant, prompt: {k}" + (f", depends_on: [{keys[i - 1]}]" if i else "") + "}\n"
                    for i, k in enumerate(keys))
    flow.write_text("name: slow\nsteps:\n" + steps)
    env = {**env, "CHIEF_OFFLINE_LATENCY_MS": "1000"}
    proc = subprocess.Popen([sys.executable, "-m", "chief.cli", "run", str(flow)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: Queue = Queue()
    threading.Thread(target=_reader, args=(proc, lines), daemon=True).start()
    seen: list[str] = []
    try:
        execution_id = _wait_for(lines, "execution ", seen).split("execution ")[1].split()[0]
        _wait_for(lines, "running", seen)
        pause = chief(env, "workflow", "pause", execution_id)
        assert pause.returncode == 0, pause.stderr
        assert "requested (pause)" in pause.stdout
        _wait_for(lines, "paused", seen)
        assert not any("eight" in line and "running" in line for line in seen)
        resume = chief(env, "workflow", "resume", execution_id)
        assert resume.returncode == 0, resume.stderr
        assert proc.wait(timeout=60) == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            proc.kill()
    status = json.loads(chief(env, "workflow", "status", execution_id, "--json").stdout)
    runs = [s for s in status["steps"] if s["status"] == "succeeded"]
    assert sorted(s["task_key"] for s in runs) == sorted(keys)  # each step ran exactly once
