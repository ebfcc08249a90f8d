"""Context management: prompts kept within the model's window by the stated policy, never cut mid-file."""

from __future__ import annotations

import json

import pytest

from chief.core.accounting import estimate_tokens, execution_usage
from chief.core.agents import AgentContext, Completion, ExtractedFile
from chief.core.chief import ChiefOfStaff
from chief.core.config import Settings
from chief.core.context import (
    DEFAULT_WINDOW,
    Part,
    Window,
    fit_prompt,
    known_window,
    policy_from_env,
    window_for,
)
from chief.core.engine import Engine
from chief.core.errors import ContextConfigError, ContextTooLarge, ProviderError
from chief.core.messages import StepTask
from chief.core.personas import PersonaAgent
from chief.core.plugins import register_temporary
from chief.core.workflows import parse_workflow
from tests.fakes import ScriptedProvider, TestPlugin


def words(n: int, word: str = "word") -> str:
    return " ".join([word] * n)


def window(tokens: int, reserve: int = 0, model: str = "tiny-1") -> Window:
    return Window(model=model, tokens=tokens, reserve=reserve, source="test")


class WindowedProvider(ScriptedProvider):
    """A scripted provider that says how large its model's window is."""

    def __init__(self, name: str = "windowed", replies=(), tokens: int = 4000) -> None:
        super().__init__(name, replies)
        self.tokens = tokens

    def context_window(self, model: str) -> int:
        return self.tokens


# -- the window -----------------------------------------------------------------------------------------
def test_context_window_comes_from_provider_then_table_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHIEF_CONTEXT_TOKENS", raising=False)
    w = window_for(WindowedProvider(tokens=1000), "anything")
    assert (w.tokens, w.reserve, w.source, w.budget) == (1000, 125, "provider", 875)
    assert window_for(None, "gpt-4o-mini").tokens == 128_000 and known_window("gpt-4-0613") == 8_192
    assert known_window("claude-3-5-haiku-latest") == 200_000 and known_window("ollama/llama3.1:8b") == 131_072
    unknown = window_for(ScriptedProvider(), None)  # no context_window, "scripted-1" is not in the table
    assert (unknown.tokens, unknown.source, unknown.model) == (DEFAULT_WINDOW, "default", "scripted-1")
    monkeypatch.setenv("CHIEF_CONTEXT_TOKENS", "2048")
    assert window_for(None, "my-local-model").tokens == 2048
    assert window_for(None, "my-local-model", max_tokens=500).reserve == 500  # the answer's room
    monkeypatch.setenv("CHIEF_CONTEXT_TOKENS", "lots")
    with pytest.raises(ContextConfigError, match="CHIEF_CONTEXT_TOKENS must be a positive whole number"):
        window_for(None, "my-local-model")


def test_context_policy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHIEF_CONTEXT_POLICY", raising=False)
    assert policy_from_env() == "truncate_oldest"
    monkeypatch.setenv("CHIEF_CONTEXT_POLICY", "summarize")
    assert policy_from_env() == "summarise"
    monkeypatch.setenv("CHIEF_CONTEXT_POLICY", "forget")
    with pytest.raises(ContextConfigError, match="truncate_oldest, summarise"):
        policy_from_env()


def test_context_token_estimate_counts_text_without_spaces() -> None:
    assert estimate_tokens("one two three") == 4
    assert estimate_tokens("x" * 4000) == 1000  # one "word" of code/JSON is still many tokens


# -- trimming -------------------------------------------------------------------------------------------
async def test_context_history_is_dropped_oldest_first() -> None:
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn{i} " + words(60)} for i in range(10)]
    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "the question"}]
    fitted = await fit_prompt(prompt, window=window(400), where="test", history=history, policy="truncate_oldest")
    kept = [m["content"].split()[0] for m in fitted.messages[1:-1]]
    assert kept == ["turn6", "turn7", "turn8", "turn9"]  # the newest that fit, in order
    assert fitted.messages[0]["content"] == "be brief" and fitted.messages[-1]["content"] == "the question"
    assert fitted.dropped_turns == 6 and fitted.tokens <= 400
    assert fitted.notes == ["the 6 oldest turn(s) of the conversation were left out (truncate_oldest): "
                            "the window of model tiny-1 is 400 tokens"]


async def test_context_a_file_goes_in_whole_or_is_left_out_with_a_marker() -> None:
    big = Part("big.csv", "row," * 2000)  # ~2,000 tokens
    small = Part("notes.txt", "the small file " + words(20))
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": "summarise the files"}]
    fitted = await fit_prompt(prompt, window=window(600, model="gpt-test"), where="test", parts=[big, small])
    user = fitted.messages[-1]["content"]
    assert "row,row," not in user  # nothing of the big file, not even its start
    marker = ("[file 'big.csv' left out: 2,000 tokens do not fit; the window of model gpt-test is 600 tokens]")
    assert marker in user.splitlines()
    assert f"### file notes.txt\n\n{small.text}" in user  # the small one, whole
    assert user.endswith("summarise the files")
    assert fitted.left_out == ["big.csv"] and fitted.tokens <= 600
    assert any("big.csv" in n for n in fitted.notes)


async def test_context_prompt_alone_too_big_fails_with_a_clear_error() -> None:
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": words(900)}]
    with pytest.raises(ContextTooLarge) as caught:
        await fit_prompt(prompt, window=window(1024, reserve=128, model="tiny-1"), where="step 'review'")
    text = str(caught.value)
    assert "step 'review'" in text and "~1,210 tokens" in text and "the window of model tiny-1 is 1,024 tokens" in text
    assert "896 for the prompt" in text and not caught.value.retryable
    assert (caught.value.needed, caught.value.window) == (1210, 1024)


async def test_context_summarise_replaces_the_oldest_turns_with_one_summary() -> None:
    history = [{"role": "user", "content": f"turn{i} " + words(80)} for i in range(8)]
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": "now what?"}]
    asked: list[tuple[list[dict[str, str]], int]] = []

    async def summarise(turns, limit):
        asked.append((turns, limit))
        return "the user talked about turns zero to five"

    fitted = await fit_prompt(prompt, window=window(700), where="test", history=history, policy="summarise",
                              summarise=summarise)
    contents = [m["content"] for m in fitted.messages]
    assert contents[1].startswith("(Summary of the 3 earlier turn(s) of this conversation: the user talked")
    assert contents[2].startswith("turn3") and contents[-1] == "now what?"
    assert [t["content"].split()[0] for t in asked[0][0]] == ["turn0", "turn1", "turn2"]  # the dropped turns
    assert fitted.summarised_turns == 3 and fitted.dropped_turns == 3 and fitted.tokens <= 700
    assert "replaced by a summary (summarise)" in fitted.notes[0]


async def test_context_summarise_falls_back_to_truncation_and_says_so() -> None:
    history = [{"role": "user", "content": f"turn{i} " + words(80)} for i in range(8)]
    prompt = [{"role": "system", "content": "s"}, {"role": "user", "content": "now what?"}]

    async def broken(turns, limit):
        raise ProviderError("the summary model is down")

    fitted = await fit_prompt(prompt, window=window(400), where="test", history=history, policy="summarise",
                              summarise=broken)
    assert not any(m["content"].startswith("(Summary") for m in fitted.messages)
    assert [m["content"].split()[0] for m in fitted.messages[1:-1]] == ["turn5", "turn6", "turn7"]
    assert fitted.notes == ["summarising the 5 oldest turn(s) failed (ProviderError: the summary model is down); "
                            "they were left out instead (truncate_oldest)"]


# -- where prompts are built ------------------------------------------------------------------------------
async def test_context_persona_fails_a_prompt_too_big_for_its_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHIEF_CONTEXT_TOKENS", "1000")
    agent = PersonaAgent(name="p", description="d", capabilities=["x"], system_prompt="You are terse.")
    asked = []

    async def complete(messages, **options):
        asked.append(messages)
        return Completion(text="ok", model="m")

    task = StepTask(execution_id="e", task_key="review", step_key="review", agent="p", prompt=words(800))
    with pytest.raises(ContextTooLarge, match="step 'review': the prompt alone needs"):
        await agent.run(task, AgentContext(task, complete))
    assert not asked  # nothing was sent
    small = task.model_copy(update={"prompt": "short"})
    assert await agent.run(small, AgentContext(small, complete)) == "ok"


async def test_context_too_big_step_fails_once_naming_step_and_window(tmp_path, monkeypatch) -> None:
    """Through the engine and worker: the routed model's window is used, and the step is not retried."""
    provider = WindowedProvider("windowed", tokens=500)
    agent = PersonaAgent(name="terse", description="d", capabilities=["terse"], system_prompt="You are terse.",
                         provider="windowed")
    with register_temporary(TestPlugin(agents=[agent], providers=[provider])) as registry:
        engine = await Engine.open(Settings(home=tmp_path), registry=registry)
        try:
            spec = parse_workflow("name: big\ninputs: {text: {type: string}}\nsteps:\n"
                                  "  - {key: digest, agent: terse, prompt: 'Digest: {{inputs.text}}'}\n")
            record = await engine.run(spec, {"text": words(600)})
            steps = await engine.store.list_steps(record.id)
        finally:
            await engine.close()
    assert record.status == "failed"
    assert "step 'digest': the prompt alone needs" in (record.error or "")
    assert "the window of model scripted-1 is 500 tokens" in (record.error or "")
    assert [s.attempt for s in steps if s.status == "failed"] == [1] and not provider.asked


async def test_context_chief_planning_call_fits_history_and_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Chief sends history + whole files (or a marker) to the planning model; notes say what was left out."""
    plan_reply = json.dumps({"workflow": {"use": "research-report"}, "inputs": {"topic": "tides"}})
    provider = WindowedProvider("windowed", [plan_reply], tokens=3500)
    history = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn{i} " + words(150)}
               for i in range(12)]
    small = ExtractedFile("notes.txt", "text/plain", "notes about tides " + words(30))
    huge = ExtractedFile("dump.log", "text/plain", "x" * 40_000)
    monkeypatch.setenv("CHIEF_CONTEXT_POLICY", "truncate_oldest")
    with register_temporary(TestPlugin(providers=[provider])) as registry:
        plan = await ChiefOfStaff(registry, provider="windowed").plan("tell me about tides", [small, huge], history)
    assert (plan.planner, plan.spec.name, plan.model) == ("model", "research-report", "windowed/scripted-1")
    sent = provider.asked[0]
    text = "\n".join(m["content"] for m in sent)
    assert small.text in text and "x" * 100 not in text
    assert "[file 'dump.log' left out: 10,000 tokens do not fit; the window of model scripted-1 is 3,500 tokens]" \
        in text
    assert "turn11" in text and "turn0 " not in text  # newest history kept, oldest dropped
    assert sum(estimate_tokens(m["content"]) + 4 for m in sent) <= 3500 - 3500 // 8
    assert any("dump.log" in n for n in plan.notes) and any("oldest turn(s)" in n for n in plan.notes)


async def test_context_chief_summarises_history_with_the_same_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    plan_reply = json.dumps({"workflow": {"use": "research-report"}, "inputs": {"topic": "tides"}})
    provider = WindowedProvider("windowed", ["SUMMARY: we discussed tides and moons", plan_reply], tokens=3500)
    history = [{"role": "user", "content": f"turn{i} " + words(150)} for i in range(12)]
    monkeypatch.setenv("CHIEF_CONTEXT_POLICY", "summarise")
    with register_temporary(TestPlugin(providers=[provider])) as registry:
        plan = await ChiefOfStaff(registry, provider="windowed").plan("tell me about tides", [], history)
    summary_call, planning_call = provider.asked
    assert summary_call[0]["content"].startswith("Summarise the conversation below")
    assert "turn0" in summary_call[1]["content"]
    assert any(m["content"].startswith("(Summary of the") and "we discussed tides" in m["content"]
               for m in planning_call)
    assert plan.spec.name == "research-report"
    assert any("replaced by a summary" in n for n in plan.notes)


async def test_context_failed_attempts_tokens_are_counted(tmp_path) -> None:
    """A provider that reports usage, an attempt that fails after its completion: both attempts' tokens count."""

    class PickyAgent:
        name, description, capabilities, provider, model = "picky", "rejects its first answer", ("p",), "scripted", None
        tries = 0

        async def run(self, task, ctx):
            answer = await ctx.complete([{"role": "user", "content": task.prompt}])
            PickyAgent.tries += 1
            if PickyAgent.tries == 1:
                raise ProviderError("the answer was not JSON", retryable=True)
            return answer.text

    provider = ScriptedProvider(replies=["not json", "{}"])  # 3 in / 5 out per call
    with register_temporary(TestPlugin(agents=[PickyAgent()], providers=[provider])) as registry:
        engine = await Engine.open(Settings(home=tmp_path), registry=registry)
        try:
            spec = parse_workflow("name: picky\nsteps:\n"
                                  "  - {key: ask, agent: picky, prompt: p, retry: {attempts: 2, backoff_s: 0.01}}\n")
            record = await engine.run(spec)
            steps = await engine.store.list_steps(record.id)
            usage = await execution_usage(engine.store, record.id)
        finally:
            await engine.close()
    assert record.status == "succeeded"
    rows = {(s.attempt, s.status): (s.tokens_in, s.tokens_out) for s in steps}
    assert rows[(1, "retrying")] == (3, 5) and rows[(2, "succeeded")] == (3, 5)
    assert (usage.tokens_in, usage.tokens_out, usage.calls) == (6, 10, 2)
