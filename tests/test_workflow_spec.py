"""The workflow file format: models, the older seed format, defaults, hashing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from chief.core.errors import WorkflowError
from chief.core.workflows import (
    InputSpec,
    RetrySpec,
    StepSpec,
    WorkflowConfig,
    WorkflowSpec,
    load_workflow,
    parse_workflow,
    spec_from_data,
)

DATA = Path(__file__).parent / "data" / "workflows"

SEED_WITH_POLICIES = """
name: seed-policies
version: 1.0.0
author: ops
tags: [seed]
config:
  timeoutMs: 60000
  maxParallelSteps: 3
  retryPolicy: {maxRetries: 2, retryDelayMs: 500, retryBackoffMultiplier: 3}
  provider: offline
steps:
  - key: fetch
    agent: backend
    prompt: "Fetch {{url}}"
    timeoutMs: 1500
    retryPolicy: {maxRetries: 0, retryDelayMs: 250, retryBackoffMultiplier: 1.5}
    optional: true
    parallel: false
  - key: report
    agent: product
    prompt: "Report on {{fetch.result}}"
    dependencies: [fetch]
"""

NEW_WITH_POLICIES = """
name: seed-policies
version: 1.0.0
author: ops
tags: [seed]
inputs:
  url: {required: true}
config:
  timeout_s: 60
  max_parallel: 3
  retry: {attempts: 3, backoff_s: 0.5, multiplier: 3}
  provider: offline
steps:
  - key: fetch
    agent: backend
    prompt: "Fetch {{url}}"
    timeout_s: 1.5
    retry: {attempts: 1, backoff_s: 0.25, multiplier: 1.5}
    optional: true
    parallel: false
  - key: report
    agent: product
    prompt: "Report on {{fetch.result}}"
    depends_on: [fetch]
"""


@pytest.fixture
def code_review() -> WorkflowSpec:
    return load_workflow(DATA / "code-review.yaml")


def _meaning(spec: WorkflowSpec) -> dict:
    """The spec without the informational `parallel` flag."""
    return spec.model_dump(exclude={"steps": {"__all__": {"parallel"}}})


def test_spec_loads_the_design_example(code_review: WorkflowSpec) -> None:
    assert code_review.name == "code-review"
    assert code_review.version == "1"
    assert code_review.tags == ["review", "security"]
    assert code_review.inputs["git_diff"] == InputSpec(description="The change to review", required=True)
    assert [s.key for s in code_review.steps] == [
        "parse-changes",
        "security-audit",
        "quality-check",
        "aggregate",
    ]
    assert code_review.step("quality-check").capability == "code-quality"
    assert code_review.step("quality-check").kind == "capability"
    assert code_review.step("aggregate").target == "product"
    assert code_review.output == "{{aggregate.result}}"
    assert code_review.source == str(DATA / "code-review.yaml")


def test_spec_step_lookup_and_dependents(code_review: WorkflowSpec) -> None:
    assert list(code_review.steps_by_key) == ["parse-changes", "security-audit", "quality-check", "aggregate"]
    assert code_review.dependents("parse-changes") == ["security-audit", "quality-check"]
    assert code_review.dependents("aggregate") == []
    assert code_review.sinks() == ["aggregate"]
    with pytest.raises(KeyError, match="no step 'nope'"):
        code_review.step("nope")


def test_spec_json_and_yaml_load_equal(code_review: WorkflowSpec) -> None:
    from_json = load_workflow(DATA / "code-review.json")
    assert from_json == code_review
    assert from_json.content_hash() == code_review.content_hash()
    assert from_json.source != code_review.source


def test_spec_seed_format_means_the_same_as_the_new_format() -> None:
    seed = load_workflow(DATA / "code-review-seed.yaml")
    new = parse_workflow(
        """
name: code-review-workflow
description: Multi-agent code review with security and quality checks
version: "1.0.0"
inputs:
  git_diff: {required: true, type: string}
steps:
  - key: parse-changes
    agent: backend
    prompt: "Parse git diff and extract changed files: {{git_diff}}"
  - key: security-audit
    agent: security
    prompt: "Audit these changes for vulnerabilities: {{parse-changes.result}}"
    depends_on: [parse-changes]
  - key: quality-check
    agent: quality
    prompt: "Run tests and check code quality: {{parse-changes.result}}"
    depends_on: [parse-changes]
  - key: aggregate-results
    agent: product
    prompt: "Aggregate: security={{security-audit.result}}, quality={{quality-check.result}}"
    depends_on: [security-audit, quality-check]
"""
    )
    assert _meaning(seed) == _meaning(new)
    assert seed.step("security-audit").depends_on == ["parse-changes"]
    assert seed.step("quality-check").depends_on == ["parse-changes"]
    assert seed.step("security-audit").parallel is True
    assert seed.version == "1.0.0"
    assert seed.implicit_inputs == ("git_diff",)
    assert new.implicit_inputs == ()


def test_spec_seed_timeouts_retry_policy_and_config_mean_the_same() -> None:
    seed = parse_workflow(SEED_WITH_POLICIES)
    new = parse_workflow(NEW_WITH_POLICIES)
    assert seed == new
    assert seed.config == WorkflowConfig(
        timeout_s=60,
        max_parallel=3,
        retry=RetrySpec(attempts=3, backoff_s=0.5, multiplier=3),
        provider="offline",
    )
    assert seed.step("fetch").timeout_s == 1.5
    assert seed.step("fetch").retry == RetrySpec(attempts=1, backoff_s=0.25, multiplier=1.5)


@pytest.mark.parametrize(
    "config",
    [
        {"maxParallel": 2, "timeoutMs": 2000},
        {"max_parallel_steps": 2, "timeout_ms": 2000},
        {"max_parallel": 2, "timeout_s": 2},
    ],
)
def test_spec_config_accepts_camel_and_snake_case(config: dict) -> None:
    assert WorkflowConfig.model_validate(config) == WorkflowConfig(max_parallel=2, timeout_s=2)


def test_spec_old_and_new_name_together_is_an_error() -> None:
    with pytest.raises(WorkflowError) as err:
        parse_workflow(
            "name: w\nsteps:\n  - key: a\n    agent: x\n    prompt: p\n    depends_on: []\n    dependencies: []\n",
            source="w.yaml",
        )
    assert "give 'depends_on' or its older name 'dependencies', not both" in str(err.value)
    assert err.value.problems[0].line == 3


def test_spec_input_given_as_a_string_is_its_description() -> None:
    spec = spec_from_data(
        {
            "name": "w",
            "inputs": {"git_diff": "The change", "topic": None, "n": {"type": "integer", "default": 3}},
            "steps": [{"key": "a", "agent": "x", "prompt": "{{git_diff}} {{inputs.topic}} {{n}}"}],
        }
    )
    assert spec.inputs["git_diff"] == InputSpec(description="The change")
    assert spec.inputs["topic"] == InputSpec()
    assert spec.inputs["n"].type == "integer"
    assert spec.implicit_inputs == ()


@pytest.mark.parametrize(("raw", "text"), [(1, "1"), (2.5, "2.5"), ("1.0.0", "1.0.0"), ("3", "3")])
def test_spec_version_is_stored_as_text(raw: object, text: str) -> None:
    spec = spec_from_data({"name": "w", "version": raw, "steps": [{"key": "a", "agent": "x", "prompt": "p"}]})
    assert spec.version == text


def test_spec_step_needs_exactly_one_target() -> None:
    with pytest.raises(ValueError, match="exactly one of agent, capability or workflow"):
        StepSpec(key="a", agent="x", capability="y", prompt="p")
    with pytest.raises(ValueError, match=r"got none"):
        StepSpec(key="a", prompt="p")


def test_spec_prompt_is_required_unless_workflow() -> None:
    with pytest.raises(ValueError, match="prompt is required"):
        StepSpec(key="a", agent="x")
    assert StepSpec(key="a", workflow="code-review", inputs={"git_diff": "{{inputs.diff}}"}).prompt == ""


def test_spec_key_pattern_and_limits() -> None:
    with pytest.raises(ValueError):
        StepSpec(key="1st", agent="x", prompt="p")
    with pytest.raises(ValueError):
        StepSpec(key="a", agent="x", prompt="p", timeout_s=0)
    with pytest.raises(ValueError):
        RetrySpec(attempts=0)
    with pytest.raises(ValueError):
        StepSpec(key="a", agent="x", prompt="p", priority="urgent")


def test_spec_depends_on_accepts_a_single_name_and_drops_repeats() -> None:
    assert StepSpec(key="a", agent="x", prompt="p", depends_on="b").depends_on == ["b"]
    assert StepSpec(key="a", agent="x", prompt="p", depends_on=["b", "c", "b"]).depends_on == ["b", "c"]


def test_spec_effective_retry_and_timeout_apply_config_defaults() -> None:
    spec = load_workflow(DATA / "document-digest.yaml")
    assert spec.effective_retry("summarise") == RetrySpec(attempts=4)
    assert spec.effective_retry("digest") == RetrySpec(attempts=2, backoff_s=0.5)
    assert spec.effective_timeout("digest") == 120
    plain = spec_from_data(
        {"name": "w", "steps": [{"key": "a", "agent": "x", "prompt": "p", "timeout_s": 5}]}
    )
    assert plain.effective_retry(plain.steps[0]) == RetrySpec()
    assert plain.effective_timeout("a") == 5


def test_spec_retry_delay_grows_and_is_capped() -> None:
    retry = RetrySpec(backoff_s=1, multiplier=2, max_backoff_s=5)
    assert [retry.delay(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 5]


def test_spec_content_hash_is_stable_and_tracks_content(code_review: WorkflowSpec) -> None:
    again = load_workflow(DATA / "code-review.yaml")
    assert again.content_hash() == code_review.content_hash()
    assert len(code_review.content_hash()) == 64
    changed = code_review.model_copy(update={"description": "other"})
    assert changed.content_hash() != code_review.content_hash()


def test_spec_round_trips_through_model_dump(code_review: WorkflowSpec) -> None:
    seed = load_workflow(DATA / "code-review-seed.yaml")
    for spec in (code_review, seed, load_workflow(DATA / "document-digest.yaml")):
        again = WorkflowSpec.model_validate(spec.model_dump(mode="json"))
        assert again == spec
        assert again.content_hash() == spec.content_hash()


def test_spec_equality_ignores_source(code_review: WorkflowSpec) -> None:
    other = parse_workflow((DATA / "code-review.yaml").read_text(), source="elsewhere.yaml")
    assert other.source == "elsewhere.yaml"
    assert other == code_review
    code_review.source = "moved.yaml"
    assert code_review.source == "moved.yaml"


def test_spec_implicit_inputs_only_when_none_are_declared() -> None:
    data = {"name": "w", "steps": [{"key": "a", "agent": "x", "prompt": "{{topic}} {{inputs.extra}}"}]}
    with pytest.raises(WorkflowError, match="unknown input 'extra'"):
        spec_from_data(data)  # inputs.x is never implicit
    data["steps"][0]["prompt"] = "{{topic}} and {{audience}}"
    spec = spec_from_data(data)
    assert list(spec.inputs) == ["topic", "audience"]
    assert all(i.required and i.type == "string" for i in spec.inputs.values())
    data["inputs"] = {"topic": "The topic"}
    with pytest.raises(WorkflowError, match="unknown input or step 'audience'"):
        spec_from_data(data)


def test_spec_bind_inputs_applies_defaults_and_reports_missing() -> None:
    spec = spec_from_data(
        {
            "name": "w",
            "inputs": {"topic": {"required": True}, "tone": {"default": "plain"}, "n": {}},
            "steps": [{"key": "a", "agent": "x", "prompt": "{{topic}} {{tone}} {{n}}"}],
        }
    )
    assert spec.bind_inputs({"topic": "t"}) == {"topic": "t", "tone": "plain", "n": None}
    with pytest.raises(WorkflowError) as err:
        spec.bind_inputs({"tpoic": "t"})
    text = str(err.value)
    assert "unknown input 'tpoic'" in text and "missing required input 'topic'" in text


def test_spec_unknown_top_level_field_is_an_error() -> None:
    with pytest.raises(WorkflowError, match=r"stepz: unknown field \(did you mean 'steps'\?\)"):
        parse_workflow("name: w\nstepz: []\n")


def test_spec_yaml_dump_of_a_spec_loads_back(code_review: WorkflowSpec) -> None:
    text = yaml.safe_dump(code_review.model_dump(mode="json", exclude_none=True), sort_keys=False)
    assert parse_workflow(text) == code_review
