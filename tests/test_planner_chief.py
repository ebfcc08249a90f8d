"""The Chief-of-Staff: the catalog planner (offline), the model planner (validated JSON, bounded retries), fallback."""

from __future__ import annotations

import json

import pytest

from chief.core.agents import ExtractedFile
from chief.core.chief import ChiefOfStaff, Plan, fill_inputs, parse_pairs
from chief.core.errors import ProviderError
from chief.core.plugins import get_registry, register_temporary
from chief.plugins.planners import CatalogPlanner, ModelPlanner
from tests.fakes import ScriptedProvider, TestPlugin

DIFF = ExtractedFile("changes.diff", "text/x-diff", "diff --git a/app.py b/app.py\n+os.system(input())\n")


@pytest.fixture
def chief() -> ChiefOfStaff:
    return ChiefOfStaff(get_registry())


@pytest.mark.parametrize(
    ("request_text", "files", "workflow"),
    [
        ("Review this change for security and quality", [DIFF], "code-review"),
        ("please check this diff", [DIFF], "code-review"),
        ("Summarise these documents", [ExtractedFile("a.pdf", "application/pdf", "hello")], "document-digest"),
        ("what is notable here?", [ExtractedFile("a.csv", "text/csv", "a,b\n1,2")], "data-insights"),
        ("write release notes for 2.0 from this changelog",
         [ExtractedFile("CHANGES.md", "text/markdown", "- fixed x")], "release-notes"),
        ("research the history of the transistor", [], "research-report"),
        ("what is the capital of France?", [], "answer"),
    ],
)
async def test_planner_catalog_picks_the_workflow_that_fits(chief, request_text, files, workflow) -> None:
    plan = await chief.plan(request_text, files)
    assert plan.spec.name == workflow
    plan.spec.bind_inputs(plan.inputs)  # the inputs it filled are complete


async def test_planner_catalog_fills_inputs_from_message_and_files(chief) -> None:
    plan = await chief.plan("Review this change for security and quality", [DIFF])
    assert plan.inputs == {"git_diff": DIFF.text}
    assert plan.planner == "catalog"
    assert plan.order() == [["parse-changes"], ["security-audit", "quality-check"], ["aggregate"]]
    digest = await chief.plan("Summarise these documents for risks",
                              [ExtractedFile("a.txt", "text/plain", "A"), ExtractedFile("b.txt", "text/plain", "B")])
    assert [f["name"] for f in digest.inputs["files"]] == ["a.txt", "b.txt"]
    assert digest.inputs["focus"] == "Summarise these documents for risks"


async def test_planner_explicit_pairs_win(chief) -> None:
    plan = await chief.plan("write release notes audience=operators version=2.1", [])
    assert plan.spec.name == "release-notes"
    assert plan.inputs["audience"] == "operators" and plan.inputs["version"] == "2.1"
    assert parse_pairs('x="a b" rest') == ({"x": "a b"}, "rest")


async def test_planner_fallback_is_the_answer_workflow(chief) -> None:
    plan = await chief.plan("hi there", [])
    assert (plan.spec.name, plan.planner, plan.inputs) == ("answer", "fallback", {"request": "hi there"})


async def test_planner_model_is_skipped_with_the_offline_provider() -> None:
    assert await ModelPlanner().plan("anything", [], {"provider": "offline", "complete": None}) is None


GOOD = {
    "workflow": {
        "name": "triage", "description": "triage a bug",
        "inputs": {"report": {"required": True}},
        "steps": [
            {"key": "reproduce", "agent": "backend", "prompt": "Reproduce: {{inputs.report}}"},
            {"key": "fix", "agent": "backend", "prompt": "Fix {{reproduce.result}}", "depends_on": ["reproduce"]},
        ],
    },
    "inputs": {"report": "crash on start"},
}


async def test_planner_model_feeds_validation_errors_back_and_retries() -> None:
    bad = {"workflow": {"name": "triage", "steps": [
        {"key": "fix", "agent": "backend", "prompt": "Fix {{reproduce.result}}", "depends_on": ["reproduce"]}]}}
    provider = ScriptedProvider("scripted", ["not json at all", json.dumps(bad), "```json\n" + json.dumps(GOOD) + "\n```"])
    with register_temporary(TestPlugin(providers=[provider])) as registry:
        chief = ChiefOfStaff(registry, provider="scripted")
        plan = await chief.plan("triage this crash", [])
    assert plan.planner == "model" and plan.spec.name == "triage"
    assert plan.inputs == {"report": "crash on start"}
    assert len(provider.asked) == 3
    assert "no JSON object" in provider.asked[1][-1]["content"]
    assert "reproduce" in provider.asked[2][-1]["content"]  # the missing dependency was named


async def test_planner_model_gives_up_after_bounded_tries_and_falls_back() -> None:
    provider = ScriptedProvider("scripted", ["nope"] * 10)
    with register_temporary(TestPlugin(providers=[provider])) as registry:
        chief = ChiefOfStaff(registry, provider="scripted")
        plan = await chief.plan("Review this change for security and quality", [DIFF])
    assert len(provider.asked) == 3  # ModelPlanner.max_attempts
    assert plan.planner == "catalog" and plan.spec.name == "code-review"


async def test_planner_model_can_reuse_a_registered_workflow() -> None:
    reply = json.dumps({"workflow": {"use": "research-report"}, "inputs": {"topic": "tides"}})
    provider = ScriptedProvider("scripted", [reply])
    with register_temporary(TestPlugin(providers=[provider])) as registry:
        plan = await ChiefOfStaff(registry, provider="scripted").plan("tell me about tides", [])
    assert (plan.spec.name, plan.inputs["topic"], plan.planner) == ("research-report", "tides", "model")


async def test_planner_a_failing_planner_does_not_break_the_chat() -> None:
    provider = ScriptedProvider("scripted", [ProviderError("down", retryable=True)])
    with register_temporary(TestPlugin(providers=[provider])) as registry:
        plan = await ChiefOfStaff(registry, provider="scripted").plan("hello", [])
    assert plan.spec.name == "answer"
    assert any("down" in p for p in plan.problems)


async def test_planner_third_party_planner_goes_first_by_priority(chief) -> None:
    class Fixed:  # no priority: the default (100) goes before the built-in planners
        name = "fixed"

        async def plan(self, request, files, context):
            return context["catalog"]["research-report"]

    class P:
        from chief.core.hookspecs import hookimpl

        @hookimpl
        def register_planners(self, register):
            register(Fixed())

    with register_temporary(P()) as registry:
        plan = await ChiefOfStaff(registry).plan("Review this change", [DIFF])
    assert (plan.planner, plan.spec.name) == ("fixed", "research-report")
    assert isinstance(plan, Plan)


def test_planner_fill_inputs_gives_files_to_file_inputs(chief) -> None:
    spec = chief.catalog()["code-review"]
    assert fill_inputs(spec, "review", []) == {"git_diff": "review"}
    assert CatalogPlanner.priority > ModelPlanner.priority
