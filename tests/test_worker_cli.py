"""`chief dlq retry`, `chief worker`, `chief workers` and `chief run` over Redis, in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

pytest_plugins = ["tests.test_redis_support"]  # Redis fixtures: prefix, private server, workers


ROOT = Path(__file__).resolve().parents[1]


def chief(env, *args, timeout=90):
    return subprocess.run([sys.executable, "-m", "chief.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def base_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHIEF_")}
    env.update({"CHIEF_HOME": str(tmp_path / "home"), "COLUMNS": "200", "CHIEF_LOAD_PLUGINS": ""}, **extra)
    return env


def one_step_workflow(tmp_path) -> str:
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump({"name": "one", "steps": [
        {"key": "first", "agent": "echo", "prompt": "first"},
        {"key": "ask", "agent": "backend", "prompt": "about {{first.result}}", "depends_on": ["first"],
         "retry": {"attempts": 2, "backoff_s": 0.01, "max_backoff_s": 0.02}}]}))
    return str(path)


def test_dlq_retry_runs_the_dead_lettered_step_again_and_drops_it_on_success(tmp_path):
    wf = one_step_workflow(tmp_path)
    failed = chief(base_env(tmp_path, CHIEF_OFFLINE_FAILURE_RATE="1"), "run", wf)
    assert failed.returncode == 1
    listed = chief(base_env(tmp_path), "dlq", "list")
    assert "ask" in listed.stdout, listed.stdout + listed.stderr
    retried = chief(base_env(tmp_path), "dlq", "retry", "1")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "retrying step ask" in retried.stdout and "dropped dead letter 1" in retried.stdout
    assert "no dead letters" in chief(base_env(tmp_path), "dlq", "list").stdout


def test_dlq_retry_of_an_unknown_dead_letter_says_so(tmp_path):
    done = chief(base_env(tmp_path), "dlq", "retry", "42")
    assert done.returncode == 1 and "no dead letter 42" in done.stdout


def test_chief_run_over_redis_with_two_workers_and_chief_workers_lists_them(
        tmp_path, migrated_pg, shared_redis_url, redis_prefix, worker_procs_factory):
    import asyncio

    procs = worker_procs_factory(migrated_pg, shared_redis_url, redis_prefix)
    procs.start("alpha", "--agents", "echo,backend", "--concurrency", "2..10")
    procs.start("beta", "--concurrency", "2..10")
    asyncio.run(procs.wait_live("alpha", "beta"))
    env = base_env(tmp_path, CHIEF_DATABASE_URL=migrated_pg, CHIEF_REDIS_URL=shared_redis_url,
                   CHIEF_REDIS_PREFIX=redis_prefix, CHIEF_EMBEDDED_WORKERS="0")
    listed = chief(env, "workers", "--json")
    assert listed.returncode == 0, listed.stderr
    workers = {w["name"]: w for w in json.loads(listed.stdout)}
    assert workers["alpha"]["agents"] == ["backend", "echo"] and workers["beta"]["agents"][0] == "assistant"
    assert (workers["alpha"]["minimum"], workers["alpha"]["maximum"]) == (2, 10)
    done = chief(env, "run", "workflows/code-review.yaml", "--input", "git_diff=@examples/changes.diff", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "succeeded" and len(result["steps"]) == 4


def test_chief_worker_without_redis_says_what_to_set(tmp_path):
    done = chief(base_env(tmp_path), "worker")
    assert done.returncode == 1 and "CHIEF_REDIS_URL is not set" in done.stderr


def test_chief_worker_refuses_an_unknown_agent(tmp_path, shared_redis_url):
    done = chief(base_env(tmp_path, CHIEF_REDIS_URL=shared_redis_url), "worker", "--agents", "nobody")
    assert done.returncode == 1 and "no agent 'nobody'" in done.stderr
