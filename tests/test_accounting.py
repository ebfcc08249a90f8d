"""Token and cost totals per execution and per conversation; the price table; `chief workflow status`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from chief.core.accounting import (
    PriceTable,
    Usage,
    conversation_usage,
    estimate_tokens,
    execution_usage,
    usage_of_steps,
)
from chief.core.errors import PriceTableError
from chief.core.store import StepRecord
from tests.http_stub import Reply, StubServer

ROOT = Path(__file__).resolve().parents[1]
PRICES = PriceTable.from_mapping({
    "gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.60},
    "openai:special": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
    "special": {"input_per_mtok": 100.0, "output_per_mtok": 100.0},
})


def step(task_key: str, attempt: int, status: str, tokens: tuple[int, int] | None, *, provider: str = "openai",
         model: str = "gpt-4o-mini", estimated: bool = False, execution_id: str = "e1") -> StepRecord:
    return StepRecord(execution_id=execution_id, task_key=task_key, step_key=task_key, attempt=attempt, status=status,
                      agent="a", provider=provider, model=model, tokens_in=tokens[0] if tokens else None,
                      tokens_out=tokens[1] if tokens else None, tokens_estimated=estimated)


def test_accounting_counts_every_attempt_that_spent_tokens() -> None:
    rows = [step("a", 1, "queued", None), step("a", 1, "failed", (100, 10)),  # a failed attempt was paid for
            step("a", 2, "succeeded", (100, 20)), step("b", 1, "succeeded", (50, 5))]
    usage = usage_of_steps(rows)
    assert (usage.tokens_in, usage.tokens_out, usage.calls, usage.tokens) == (250, 35, 3, 285)
    assert usage.cost is None and not usage.estimated
    assert usage.summary() == "250 in / 35 out tokens"


def test_accounting_estimated_counts_are_marked() -> None:
    usage = usage_of_steps([step("a", 1, "succeeded", (10, 2)), step("b", 1, "succeeded", (4, 4), estimated=True)])
    assert usage.estimated and usage.summary().startswith("~14 in / ~6 out tokens (~ estimated)")
    assert estimate_tokens("one two three") == 4


def test_accounting_cost_from_the_price_table() -> None:
    rows = [step("a", 1, "succeeded", (1_000_000, 100_000)),
            step("b", 1, "succeeded", (1000, 1000), model="special"),  # provider:model beats the bare name
            step("c", 1, "succeeded", (5, 5), provider="anthropic", model="claude-x")]
    usage = usage_of_steps(rows, PRICES)
    assert usage.cost == pytest.approx(0.15 + 0.06 + 0.001 + 0.002)
    assert usage.unpriced_models == ["anthropic/claude-x"]
    assert "cost 0.2130 (partial: no price for anthropic/claude-x)" in usage.summary()
    assert usage.by_model["openai/special"] == {"tokens_in": 1000, "tokens_out": 1000}


def test_accounting_usage_adds_up() -> None:
    total = Usage(cost=0.0)
    total.add(usage_of_steps([step("a", 1, "succeeded", (10, 1))], PRICES))
    total.add(usage_of_steps([step("b", 1, "succeeded", (20, 2), estimated=True)], PRICES))
    assert (total.tokens_in, total.tokens_out, total.calls, total.estimated) == (30, 3, 2, True)
    assert total.as_dict()["by_model"] == {"openai/gpt-4o-mini": {"tokens_in": 30, "tokens_out": 3}}


def test_accounting_price_table_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "prices.yaml").write_text("gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.6}\n")
    (tmp_path / "prices.json").write_text(json.dumps({"m": {"input_per_mtok": 1, "output_per_mtok": 2}}))
    assert PriceTable.load(tmp_path / "prices.yaml").price("openai", "gpt-4o-mini").output_per_mtok == 0.6
    assert PriceTable.load(tmp_path / "prices.json").price(None, "m").input_per_mtok == 1.0
    monkeypatch.delenv("CHIEF_PRICES", raising=False)
    assert PriceTable.from_env() is None
    monkeypatch.setenv("CHIEF_PRICES", str(tmp_path / "prices.yaml"))
    assert PriceTable.from_env().price(None, "gpt-4o-mini") is not None


@pytest.mark.parametrize("content, match", [
    ("gpt: {input_per_mtok: cheap}\n", "not a number"),
    ("gpt: {input_per_token: 1}\n", "must be {input_per_mtok"),
    ("- a list\n", "expected a mapping"),
    ("gpt: [unclosed\n", "not valid YAML"),
])
def test_accounting_price_table_errors(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(content)
    with pytest.raises(PriceTableError, match=match):
        PriceTable.load(path)
    with pytest.raises(PriceTableError, match="cannot read"):
        PriceTable.load(tmp_path / "missing.yaml")


async def test_accounting_totals_per_execution_and_conversation(store) -> None:
    workflow = await store.save_workflow("wf", "1", {"name": "wf", "steps": []})
    for execution_id, conversation in (("x1", "conv-1"), ("x2", "conv-1"), ("x3", "conv-2")):
        await store.create_execution(execution_id, workflow, {}, conversation_id=conversation)
    await store.record(steps=[step("a", 1, "failed", (100, 10), execution_id="x1"),
                              step("a", 2, "succeeded", (100, 20), execution_id="x1"),
                              step("b", 1, "succeeded", (7, 3), execution_id="x2", estimated=True),
                              step("c", 1, "succeeded", (1000, 1000), execution_id="x3")])
    first = await execution_usage(store, "x1", PRICES)
    assert (first.tokens_in, first.tokens_out, first.calls) == (200, 30, 2)
    assert first.cost == pytest.approx((200 * 0.15 + 30 * 0.60) / 1e6)
    conversation = await conversation_usage(store, "conv-1")
    assert (conversation.tokens_in, conversation.tokens_out, conversation.calls) == (207, 33, 3)
    assert conversation.estimated and conversation.cost is None
    assert (await conversation_usage(store, "nobody")).calls == 0


# -- the commands of the issue, end to end, with a local OpenAI-compatible server -------------------


@pytest.fixture
def openai_server() -> Iterator[StubServer]:
    reply = Reply(json={"model": "gpt-4o-mini", "usage": {"prompt_tokens": 12, "completion_tokens": 3},
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Looks fine."}}]})
    with StubServer(default=reply) as server:
        yield server


def test_accounting_chief_run_with_openai_then_status_shows_totals(openai_server: StubServer,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "prices.yaml").write_text("gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.60}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHIEF_", "OPENAI_"))}
    env.update(CHIEF_HOME=str(tmp_path / "home"), COLUMNS="200", OPENAI_API_KEY="sk-local-test",
               CHIEF_OPENAI_BASE_URL=openai_server.url + "/v1", CHIEF_PRICES=str(tmp_path / "prices.yaml"))

    def chief(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "chief.cli", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)

    run = chief("run", "workflows/code-review.yaml", "--input", "git_diff=@examples/changes.diff",
                "--provider", "openai", "--model", "gpt-4o-mini", "--json")
    assert run.returncode == 0, run.stderr + run.stdout
    result = json.loads(run.stdout)
    assert result["status"] == "succeeded" and result["output"] == "Looks fine."
    assert {(s["provider"], s["model"]) for s in result["steps"] if s["status"] == "succeeded"} == \
        {("openai", "gpt-4o-mini")}
    assert len(openai_server.seen) == 4
    assert all(s.headers["authorization"] == "Bearer sk-local-test" for s in openai_server.seen)
    status = chief("workflow", "status", result["execution_id"])
    assert status.returncode == 0, status.stderr
    assert "total: 48 in / 12 out tokens, cost 0.0000" in status.stdout
    usage = json.loads(chief("workflow", "status", result["execution_id"], "--json").stdout)["usage"]
    assert (usage["tokens_in"], usage["tokens_out"]) == (48, 12)
    assert usage["cost"] == pytest.approx((48 * 0.15 + 12 * 0.60) / 1e6)
