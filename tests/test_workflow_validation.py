"""Loading and validation: every kind of problem, in YAML and JSON, with lines and suggestions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from chief.core.errors import Problem, WorkflowError, WorkflowNotFound
from chief.core.workflows import (
    StepSpec,
    WorkflowSpec,
    load_workflow,
    load_workflows_dir,
    parse_workflow,
    spec_from_data,
    validate_workflow,
)
from tests.workflow_gen import generate

DATA = Path(__file__).parent / "data" / "workflows"

CODE_REVIEW_WITH_TYPO = """\
name: code-review
inputs:
  git_diff: {description: The change, required: true}
steps:
  - key: parse-changes
    agent: backend
    prompt: "List the changes: {{inputs.git_diff}}"

  - key: audit
    agent: security
    prompt: "Audit: {{parse-changes.result}}"
    depends_on:
      - parse-change
"""


def _step(key: str, prompt: str = "do it", **fields: Any) -> dict[str, Any]:
    return {"key": key, "agent": fields.pop("agent", "writer"), "prompt": prompt, **fields}


def _workflow(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"name": "w", "inputs": top.pop("inputs", {"topic": "The topic"}), "steps": list(steps), **top}


def _problems(data: dict[str, Any], fmt: str) -> list[Problem]:
    text = json.dumps(data, indent=2) if fmt == "json" else yaml.safe_dump(data, sort_keys=False)
    with pytest.raises(WorkflowError) as err:
        parse_workflow(text, source=f"w.{fmt}", fmt=fmt)
    return err.value.problems


def _line_of(data: dict[str, Any], fmt: str, needle: str) -> int:
    text = json.dumps(data, indent=2) if fmt == "json" else yaml.safe_dump(data, sort_keys=False)
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


FORMATS = ["yaml", "json"]


def test_validation_message_is_one_readable_line() -> None:
    with pytest.raises(WorkflowError) as err:
        parse_workflow(CODE_REVIEW_WITH_TYPO, source="code-review.yaml")
    assert str(err.value) == (
        "code-review.yaml:13: step 'audit': depends_on: unknown step 'parse-change' (did you mean 'parse-changes'?)"
    )


def test_validation_valid_files_have_no_problems() -> None:
    for name in ("code-review.yaml", "code-review.json", "code-review-seed.yaml", "document-digest.yaml"):
        assert validate_workflow(load_workflow(DATA / name)) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_unknown_field_suggests_the_right_name(fmt: str) -> None:
    data = _workflow(_step("a"), _step("b", dependncies=["a"]))
    [problem] = _problems(data, fmt)
    assert problem.step == "b"
    assert problem.field == "dependncies"
    assert problem.message == "unknown field (did you mean 'depends_on'?)"
    assert problem.line == _line_of(data, fmt, "dependncies")
    assert problem.source == f"w.{fmt}"


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_unknown_field_near_an_old_name_suggests_the_new_name(fmt: str) -> None:
    [problem] = _problems(_workflow(_step("a", timeoutMS=100)), fmt)
    assert problem.message == "unknown field (did you mean 'timeout_s'?)"


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_unknown_field_in_nested_models(fmt: str) -> None:
    data = _workflow(
        _step("a", retry={"attempt": 2}), config={"max_paralel": 2}, inputs={"topic": {"reqired": True}}
    )
    problems = _problems(data, fmt)
    by_field = {p.field: p for p in problems}
    assert by_field["retry.attempt"].message == "unknown field (did you mean 'attempts'?)"
    assert by_field["retry.attempt"].step == "a"
    assert by_field["config.max_paralel"].message == "unknown field (did you mean 'max_parallel'?)"
    assert by_field["inputs.topic.reqired"].message == "unknown field (did you mean 'required'?)"
    assert all(p.line for p in problems)


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_bad_values_name_step_field_and_line(fmt: str) -> None:
    data = _workflow(_step("a", timeout_s=-1), _step("b", priority="urgent"), _step("bad key"))
    problems = _problems(data, fmt)
    assert [(p.step, p.field) for p in problems] == [
        ("a", "timeout_s"),
        ("b", "priority"),
        ("bad key", "key"),
    ]
    assert "greater than 0" in problems[0].message
    assert "'low', 'normal', 'high' or 'critical'" in problems[1].message
    assert "must start with a letter" in problems[2].message
    assert problems[0].line == _line_of(data, fmt, "timeout_s")


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_duplicate_step_key(fmt: str) -> None:
    data = _workflow(_step("a"), _step("b"), _step("a"))
    [problem] = _problems(data, fmt)
    assert problem.step == "a" and problem.field == "key"
    assert problem.message.startswith("duplicate step key 'a' (first used at line ")


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_unknown_dependency_with_suggestion_and_line(fmt: str) -> None:
    data = _workflow(_step("parse-changes"), _step("audit", depends_on=["parse-change"]))
    [problem] = _problems(data, fmt)
    assert problem.message == "unknown step 'parse-change' (did you mean 'parse-changes'?)"
    assert (problem.step, problem.field) == ("audit", "depends_on")
    assert problem.line == _line_of(data, fmt, '"parse-change"' if fmt == "json" else "- parse-change")


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_cycle_is_named(fmt: str) -> None:
    data = _workflow(_step("a", depends_on=["b"]), _step("b", depends_on=["a"]), _step("c", depends_on=["c"]))
    problems = _problems(data, fmt)
    assert [p.message for p in problems] == ["cycle: a -> b -> a"]
    assert problems[0].step == "a"


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_template_naming_a_step_that_is_not_upstream(fmt: str) -> None:
    data = _workflow(
        _step("a"),
        _step("b", "uses {{a.result}}", depends_on=["a"]),
        _step("c", "uses {{b.result}} and {{steps.a.status}}"),
    )
    problems = _problems(data, fmt)
    assert [p.message for p in problems] == [
        "{{b.result}}: step 'b' is not upstream of this step (add it to depends_on)",
        "{{steps.a.status}}: step 'a' is not upstream of this step (add it to depends_on)",
    ]
    assert all((p.step, p.field) == ("c", "prompt") for p in problems)
    assert problems[0].line == _line_of(data, fmt, "uses {{b.result}}")


def test_validation_transitive_dependencies_are_upstream() -> None:
    spec = spec_from_data(
        _workflow(
            _step("a"), _step("b", depends_on=["a"]), _step("c", "{{a.result}} {{a}}", depends_on=["b"])
        )
    )
    assert validate_workflow(spec) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_unknown_step_or_input_in_every_template_field(fmt: str) -> None:
    data = _workflow(
        _step("parse", "{{inputs.tpoic}}"),
        _step(
            "sub",
            workflow="other",
            agent=None,
            prompt="",
            inputs={"text": "{{prase.result}}"},
            depends_on=["parse"],
            when="{{parse.ok}} and {{missing.x}}",
        ),
        output="{{nothing}}",
    )
    problems = _problems(data, fmt)
    assert [(p.step, p.field, p.message) for p in problems] == [
        ("parse", "prompt", "{{inputs.tpoic}}: unknown input 'tpoic' (did you mean 'topic'?)"),
        ("sub", "inputs.text", "{{prase.result}}: unknown step 'prase' (did you mean 'parse'?)"),
        ("sub", "when", "{{missing.x}}: unknown step 'missing'"),
        (None, "output", "{{nothing}}: unknown input or step 'nothing'"),
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_item_outside_for_each(fmt: str) -> None:
    data = _workflow(
        _step("a", "{{item.name}} #{{index}}"),
        _step("b", "{{item}}", for_each="{{inputs.topic}}"),
        _step("c", "x", for_each="{{item}}"),
        _step("d", "{{item}}", for_each="{{inputs.topic}}", when="{{index}} > 0"),
    )
    problems = _problems(data, fmt)
    assert [(p.step, p.field, p.message) for p in problems] == [
        ("a", "prompt", "{{item.name}}: 'item' is only available inside a for_each step"),
        ("a", "prompt", "{{index}}: 'index' is only available inside a for_each step"),
        (
            "c",
            "for_each",
            "{{item}}: 'item' is not available in for_each: it is evaluated once, before the fan-out",
        ),
        (
            "d",
            "when",
            "{{index}}: 'index' is not available in when: it is evaluated once, before the fan-out",
        ),
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_for_each_must_be_one_ref(fmt: str) -> None:
    [problem] = _problems(_workflow(_step("a", for_each="inputs.topic")), fmt)
    assert problem.field == "for_each"
    assert "did you mean '{{inputs.topic}}'?" in problem.message


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_ambiguous_bare_name(fmt: str) -> None:
    data = _workflow(_step("topic"), _step("b", "{{topic}}", depends_on=["topic"]))
    [problem] = _problems(data, fmt)
    assert (
        problem.message
        == "ambiguous: 'topic' is both an input and a step; write inputs.topic or topic.result"
    )
    assert problem.step == "b"


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_when_syntax_error(fmt: str) -> None:
    data = _workflow(_step("a"), _step("b", when="{{a.result}} ==", depends_on=["a"]))
    [problem] = _problems(data, fmt)
    assert (problem.step, problem.field) == ("b", "when")
    assert problem.message.startswith("invalid condition '{{a.result}} ==': syntax error")
    assert problem.line == _line_of(data, fmt, "when")


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_malformed_template(fmt: str) -> None:
    problems = _problems(_workflow(_step("a", "{{ a + 1 }}"), _step("b", "{{ unclosed")), fmt)
    assert [p.step for p in problems] == ["a", "b"]
    assert "invalid reference" in problems[0].message
    assert "unclosed '{{'" in problems[1].message


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_reserved_names(fmt: str) -> None:
    problems = _problems(_workflow(_step("item"), inputs={"steps": "x"}), fmt)
    assert sorted(p.message for p in problems) == [
        "'item' is a reserved name; choose another step key",
        "'steps' is a reserved name; call the input something else",
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_inputs_only_on_a_workflow_step(fmt: str) -> None:
    [problem] = _problems(_workflow(_step("a", inputs={"x": 1})), fmt)
    assert (problem.field, problem.message) == ("inputs", problem.message)
    assert problem.message.startswith("only a workflow: step takes inputs")


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_collects_every_problem(fmt: str) -> None:
    data = _workflow(
        _step("a", "{{inputs.nope}}"),
        _step("b", depends_on=["zz"], colour="red"),
        _step("c", "{{b.result}}"),
        _step("a"),
    )
    problems = _problems(data, fmt)
    assert [(p.step, p.field, p.message) for p in problems] == [
        ("a", "prompt", "{{inputs.nope}}: unknown input 'nope'"),
        ("b", "depends_on", "unknown step 'zz'"),
        ("b", "colour", "unknown field (known fields: " + ", ".join(StepSpec.model_fields) + ")"),
        ("c", "prompt", "{{b.result}}: step 'b' is not upstream of this step (add it to depends_on)"),
        ("a", "key", problems[-1].message),
    ]
    assert problems[-1].message.startswith("duplicate step key 'a'")
    assert [p.line for p in problems] == sorted(p.line for p in problems)


def test_validation_invalid_step_does_not_hide_others_or_invent_problems() -> None:
    data = _workflow(
        _step("a"),
        _step("b", "{{a.result}}", dependencies=["a"], depends_on=["a"]),  # both names: invalid
        _step("c", "{{b.result}} {{a.result}}", depends_on=["b"]),
        _step("d", "{{c.result}}"),  # not upstream: still reported
    )
    with pytest.raises(WorkflowError) as err:
        spec_from_data(data)
    messages = [p.message for p in err.value.problems]
    assert messages == [
        "give 'depends_on' or its older name 'dependencies', not both",
        "{{c.result}}: step 'c' is not upstream of this step (add it to depends_on)",
    ]


def test_validation_yaml_syntax_error_has_its_line() -> None:
    text = "name: w\nsteps:\n  - key: a\n    prompt: [unclosed\n  - key: b\n"
    with pytest.raises(WorkflowError) as err:
        parse_workflow(text, source="broken.yaml")
    [problem] = err.value.problems
    assert problem.source == "broken.yaml"
    assert problem.line == 5
    assert problem.message.startswith("YAML syntax error:")
    assert str(problem).startswith("broken.yaml:5: YAML syntax error")


def test_validation_json_syntax_error_has_its_line() -> None:
    text = '{\n  "name": "w",\n  "steps": [\n    {"key": "a",}\n  ]\n}\n'
    with pytest.raises(WorkflowError) as err:
        parse_workflow(text, source="broken.json")
    [problem] = err.value.problems
    assert problem.line == 4
    assert problem.message.startswith("JSON syntax error:")


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("- a\n- b\n", "yaml", "the top level must be a mapping (name:, steps:, ...), not list"),
        ("[1, 2]", "json", "the top level must be a mapping (name:, steps:, ...), not list"),
        ("", "yaml", "the workflow is empty"),
        ("name: w\nsteps: []\n", "yaml", "a workflow needs at least one step"),
    ],
)
def test_validation_document_shape(text: str, fmt: str, message: str) -> None:
    with pytest.raises(WorkflowError) as err:
        parse_workflow(text, fmt=fmt)
    assert err.value.problems[0].message == message


@pytest.mark.parametrize("fmt", FORMATS)
def test_validation_duplicate_mapping_keys(fmt: str) -> None:
    if fmt == "yaml":
        text = "name: w\nname: v\nsteps:\n  - {key: a, agent: x, prompt: p}\n"
    else:
        text = '{"name": "w",\n "name": "v",\n "steps": [{"key": "a", "agent": "x", "prompt": "p"}]}'
    with pytest.raises(WorkflowError) as err:
        parse_workflow(text, fmt=fmt)
    [problem] = err.value.problems
    assert problem.line == 2
    assert "'name' is given twice" in problem.message


def test_validation_format_is_guessed() -> None:
    text = (DATA / "code-review.json").read_text()
    assert parse_workflow(text) == parse_workflow(text, fmt="json")
    flow_yaml = "{name: w, steps: [{key: a, agent: x, prompt: p}]}"
    assert parse_workflow(flow_yaml).name == "w"


def test_validation_agents_capabilities_and_workflows_only_when_given() -> None:
    spec = spec_from_data(
        _workflow(
            _step("a", agent="securty"),
            _step("b", agent=None, capability="code-qualty"),
            _step("c", agent=None, workflow="code-reveiw", prompt=""),
        )
    )
    assert validate_workflow(spec) == []
    problems = validate_workflow(
        spec,
        agents=["security", "backend"],
        capabilities={"code-quality"},
        workflows={"code-review", "document-digest"},
    )
    assert [(p.step, p.field, p.message) for p in problems] == [
        ("a", "agent", "unknown agent 'securty' (did you mean 'security'?)"),
        ("b", "capability", "no agent has the capability 'code-qualty' (did you mean 'code-quality'?)"),
        ("c", "workflow", "unknown workflow 'code-reveiw' (did you mean 'code-review'?)"),
    ]
    assert validate_workflow(spec, agents=["securty"], capabilities=["code-qualty"]) == []


def test_validation_sub_workflow_inputs_are_checked_against_its_spec() -> None:
    review = load_workflow(DATA / "code-review.yaml")
    spec = spec_from_data(
        _workflow(_step("r", agent=None, workflow="code-review", prompt="", inputs={"diff": "{{topic}}"}))
    )
    problems = validate_workflow(spec, workflows={"code-review": review})
    assert [p.message for p in problems] == [
        "workflow 'code-review' has no input 'diff' (did you mean 'git_diff'?)",
        "workflow 'code-review' needs the input 'git_diff'",
    ]


def test_validation_sub_workflow_by_path(tmp_path: Path) -> None:
    (tmp_path / "child.yaml").write_text((DATA / "code-review.yaml").read_text())
    parent = _workflow(
        _step("a", agent=None, workflow="child.yaml", prompt=""),
        _step("b", agent=None, workflow="./none.yaml", prompt=""),
    )
    (tmp_path / "parent.yaml").write_text(yaml.safe_dump(parent))
    spec = load_workflow(tmp_path / "parent.yaml")
    [problem] = validate_workflow(spec, workflows=set())
    assert problem.step == "b" and problem.message.startswith("no workflow file './none.yaml'")


def test_validation_a_workflow_cannot_run_itself() -> None:
    with pytest.raises(WorkflowError, match="a workflow cannot run itself"):
        spec_from_data(_workflow(_step("a", agent=None, workflow="w", prompt="")))


def test_validation_validate_workflow_reports_lines_of_a_loaded_spec() -> None:
    spec = load_workflow(DATA / "code-review.yaml")
    [problem] = validate_workflow(spec, agents=["backend", "security"], capabilities=["code-quality"])
    assert problem.step == "aggregate" and problem.line == 20
    assert str(problem).endswith("step 'aggregate': agent: unknown agent 'product'")


def test_validation_load_workflow_missing_file() -> None:
    with pytest.raises(WorkflowNotFound, match="no workflow file"):
        load_workflow(DATA / "nope.yaml")


def test_validation_load_workflows_dir(tmp_path: Path) -> None:
    for name in ("code-review.yaml", "document-digest.yaml", "code-review-seed.yaml"):
        (tmp_path / name).write_text((DATA / name).read_text())
    (tmp_path / "notes.txt").write_text("not a workflow")
    specs = load_workflows_dir(tmp_path)
    assert sorted(specs) == ["code-review", "code-review-workflow", "document-digest"]
    assert specs["code-review"].source == str(tmp_path / "code-review.yaml")


def test_validation_load_workflows_dir_reports_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text((DATA / "code-review.yaml").read_text())
    (tmp_path / "b.json").write_text((DATA / "code-review.json").read_text())
    (tmp_path / "c.yml").write_text("name: c\nsteps: [\n")
    with pytest.raises(WorkflowError) as err:
        load_workflows_dir(tmp_path)
    messages = [str(p) for p in err.value.problems]
    assert len(messages) == 2
    assert "workflow 'code-review' is also defined in" in messages[0] and "b.json" in messages[0]
    assert "c.yml" in messages[1] and "YAML syntax error" in messages[1]
    with pytest.raises(WorkflowNotFound):
        load_workflows_dir(tmp_path / "missing")


def test_validation_of_a_generated_1000_step_workflow() -> None:
    spec = spec_from_data(generate(1000))
    assert isinstance(spec, WorkflowSpec) and len(spec.steps) == 1000
    assert validate_workflow(spec) == []
    with pytest.raises(WorkflowError) as err:
        parse_workflow(json.dumps(generate(1000, break_at=500), indent=1), source="gen.json")
    [problem] = err.value.problems
    assert problem.step == "s500"
    assert (
        problem.message == "{{s999.result}}: step 's999' is not upstream of this step (add it to depends_on)"
    )
    assert problem.line is not None


def test_validation_loading_can_check_agents_with_everything_else(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nsteps:\n  - key: a\n    agent: backend\n    prompt: x\n    depends_on: [b]\n"
        "  - key: b\n    agent: securty\n    prompt: y\n    depends_on: [a]\n"
    )
    with pytest.raises(WorkflowError) as err:
        load_workflow(bad, agents={"backend", "security"})
    assert [str(p) for p in err.value.problems] == [
        f"{bad}:6: step 'a': depends_on: cycle: a -> b -> a",
        f"{bad}:8: step 'b': agent: unknown agent 'securty' (did you mean 'security'?)",
    ]
    with pytest.raises(WorkflowError, match="unknown agent 'nobody'"):
        parse_workflow("name: w\nsteps:\n  - {key: a, agent: nobody, prompt: p, colour: red}\n", agents=["x"])


def test_validation_errors_in_old_names_show_what_was_written() -> None:
    text = "name: w\nsteps:\n  - key: a\n    agent: x\n    prompt: p\n    retryPolicy: {maxRetries: -1}\n"
    with pytest.raises(WorkflowError) as err:
        parse_workflow(text, source="w.yaml")
    assert str(err.value) == (
        "w.yaml:6: step 'a': retryPolicy.maxRetries: should be greater than or equal to 1 (got -1, which is attempts=0)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: w\nsteps: abc\n", "w.yaml:2: steps: should be a valid list (got 'abc')"),
        ("name: w\nsteps: [1]\n", "w.yaml:2: step '#1': should be a mapping (got 1)"),
        (
            "name: w\ninputs: [a]\nsteps: [{key: a, agent: x, prompt: p}]\n",
            "w.yaml:2: inputs: should be a mapping",
        ),
        (
            "name: w\nsteps:\n  - {key: 5, agent: x, prompt: p}\n",
            "w.yaml:3: step '#1': key: should be a valid string",
        ),
        ("name: w\nsteps:\n  - {agent: x, prompt: p}\n", "w.yaml:3: step '#1': key: required field missing"),
    ],
)
def test_validation_wrong_types(text: str, expected: str) -> None:
    with pytest.raises(WorkflowError) as err:
        parse_workflow(text, source="w.yaml")
    assert str(err.value).startswith(expected)
