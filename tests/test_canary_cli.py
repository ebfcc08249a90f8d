"""`chief canary start|status|promote|rollback`, in process (click's CliRunner), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from chief.cli import canary as _canary  # noqa: F401 - registers the command group
from chief.cli.main import cli
from chief.core.canary import Thresholds
from chief.core.store import Store, migrate
from chief.core.store.canary import CanaryStore
from tests.fakes import fresh_plugins  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
ANSWER = (ROOT / "workflows" / "answer.yaml").read_text()

pytestmark = pytest.mark.usefixtures("fresh_plugins")  # built-in plugins only


@pytest.fixture
def chief(tmp_path, db_url, monkeypatch):
    """Run `chief ARGS...` against a fresh database; returns (exit code, stdout + stderr)."""
    migrate.upgrade(db_url)
    for name in ("CHIEF_PROVIDER", "CHIEF_MODEL", "CHIEF_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHIEF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHIEF_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "200")

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(cli, ["canary", *args])
        return result.exit_code, result.output

    run.db_url = db_url
    return run


@pytest.fixture
def candidate(tmp_path) -> Path:
    path = tmp_path / "answer-v2.yaml"
    path.write_text(ANSWER.replace("version: 1", "version: 2").replace('prompt: "{{inputs.request}}"',
                                                                       'prompt: "Briefly: {{inputs.request}}"'))
    return path


def status_json(chief, *args: str) -> list[dict]:
    code, out = chief("status", "--json", *args)
    assert code == 0, out
    return json.loads(out)


def test_canary_cli_help_names_every_command():
    result = CliRunner().invoke(cli, ["canary", "--help"])
    assert result.exit_code == 0
    for word in ("start", "status", "promote", "rollback", "10% -> 25% -> 50% -> 100%", "rolled back"):
        assert word in result.output
    result = CliRunner().invoke(cli, ["canary", "start", "workflow", "--help"])
    for option in ("--candidate", "--stages", "--min-runs", "--max-error-increase", "--max-latency-ratio"):
        assert option in result.output


def test_canary_cli_workflow_canary_from_start_to_rollback(chief, candidate):
    code, out = chief("start", "workflow", "answer", "--candidate", str(candidate), "--min-runs", "3")
    assert code == 0, out
    assert "workflow answer v2 takes 10% of runs (stages 10%, 25%, 50%, 100%)" in out
    [shown] = status_json(chief)
    assert (shown["kind"], shown["subject"], shown["status"], shown["share"]) == ("workflow", "answer", "running", 10)
    assert shown["thresholds"]["min_runs"] == 3 and shown["decision"] == "hold"
    canary_id = shown["id"]

    code, out = chief("start", "workflow", "answer", "--candidate", str(candidate))
    assert code == 1 and f"canary {canary_id} is already running for workflow 'answer'" in out

    code, out = chief("status")
    assert code == 0 and canary_id in out and "running" in out and "10% (1/4)" in out
    assert "waiting for runs at 10%: candidate has 0 of 3" in out

    code, out = chief("promote", canary_id[:6])
    assert code == 0 and "candidate takes 25% of runs" in out, out
    code, out = chief("rollback", canary_id, "--reason", "users complained")
    assert code == 0 and "rolled back" in out
    code, out = chief("status")
    assert code == 0 and "no active canaries" in out
    [shown] = status_json(chief, "--all")
    assert (shown["status"], shown["share"], shown["reason"]) == ("rolled_back", 0, "users complained")
    code, out = chief("promote", canary_id)
    assert code == 1 and "only a running canary can be promoted" in out
    code, out = chief("rollback", "ffffff")
    assert code == 1 and "no canary 'ffffff'" in out


def test_canary_cli_promote_by_hand_through_the_last_stage(chief, candidate):
    chief("start", "workflow", "answer", "--candidate", str(candidate), "--stages", "50,100")
    [shown] = status_json(chief)
    assert shown["stages"] == [50, 100]
    assert chief("promote", shown["id"])[0] == 0
    code, out = chief("promote", shown["id"])
    assert code == 0 and "promoted, candidate takes 100% of runs" in out
    # a new canary on top of the promoted version: its stable arm is the promoted candidate
    newer = candidate.with_name("answer-v3.yaml")
    newer.write_text(candidate.read_text().replace("version: 2", "version: 3"))
    assert chief("start", "workflow", "answer", "--candidate", str(newer))[0] == 0
    shown_all = status_json(chief, "--all")
    assert [c["status"] for c in shown_all] == ["running", "promoted"]
    assert shown_all[0]["stable"] == shown_all[1]["candidate"]


@pytest.mark.parametrize("args, problem", [
    (["--candidate", "nope.yaml"], "no such file"),
    (["--candidate", "{candidate}", "--stages", "10,5,100"], "larger than the one before"),
    (["--candidate", "{candidate}", "--min-runs", "0"], "min runs per stage must be at least 1"),
    (["--candidate", "{answer}"], "is the same as the stable version of 'answer'"),
    (["--candidate", "{renamed}"], "is workflow 'other', not 'answer'"),
    (["--candidate", "{no_request}"], "does not take input(s) request"),
])
def test_canary_cli_refuses_a_bad_workflow_candidate(chief, candidate, tmp_path, args, problem):
    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(ANSWER.replace("name: answer", "name: other"))
    no_request = tmp_path / "no-request.yaml"
    no_request.write_text(ANSWER.replace("request:", "question:").replace("inputs.request", "inputs.question"))
    paths = {"candidate": candidate, "answer": ROOT / "workflows" / "answer.yaml", "renamed": renamed,
             "no_request": no_request}
    code, out = chief("start", "workflow", "answer", *[a.format(**paths) for a in args])
    assert code != 0 and problem in out, out
    assert status_json(chief, "--all") == []


def test_canary_cli_model_canary_is_checked_and_judged_by_status(chief):
    code, out = chief("start", "model", "--candidate", "nosuch:model")
    assert code == 1 and "No provider named 'nosuch'" in out
    code, out = chief("start", "model", "asistant", "--candidate", "offline:other")
    assert code == 1 and "No agent named 'asistant'" in out and "assistant" in out
    code, out = chief("start", "model", "assistant", "--candidate", "offline:offline-2", "--min-runs", "2")
    assert code == 0 and "offline:offline-2 (stable offline:" in out and "agent assistant" in out, out
    [shown] = status_json(chief)
    # two candidate runs that failed, recorded as an engine would: `status` judges and rolls back
    asyncio.run(finished_runs(chief.db_url, shown["id"], [("candidate", "failed"), ("candidate", "failed"),
                                                          ("stable", "succeeded")]))
    code, out = chief("status", "--all")
    assert code == 0 and "rolled_back" in out and "candidate failed 2 of 2 runs at 10%" in out, out


async def finished_runs(db_url: str, canary_id: str, runs: list[tuple[str, str]]) -> None:
    store = await Store.open(db_url)
    try:
        workflow = await store.save_workflow("answer", "1", {"steps": []})
        start = datetime.now(UTC) - timedelta(seconds=1)
        for i, (arm, status) in enumerate(runs):
            execution_id = f"run{i:04d}{canary_id}"
            await store.create_execution(execution_id, workflow, {})
            await store.record(execution={"id": execution_id, "status": status, "started_at": start,
                                          "finished_at": start + timedelta(milliseconds=20)})
            await CanaryStore(store).join(execution_id, canary_id, 0, arm)
    finally:
        await store.close()


async def test_canary_store_refuses_a_second_running_canary_and_decides_once(store):
    canaries = CanaryStore(store)
    first = await canaries.create("model", "*", "a:1", "b:1", [10, 100], Thresholds())
    with pytest.raises(Exception, match="already running"):
        await canaries.create("model", "*", "a:1", "c:1", [10, 100], Thresholds())
    assert await canaries.create("model", "writer", "a:1", "c:1", [100], Thresholds())  # another subject
    # two orchestrators promote at once: one wins
    assert await canaries.advance(first.id, 0, 1, "held") is True
    assert await canaries.advance(first.id, 0, 1, "held") is False
    assert await canaries.finish(first.id, "rolled_back", "slow") is True
    assert await canaries.finish(first.id, "promoted", "late") is False
    assert [c.subject for c in await canaries.active()] == ["writer"]
