"""`{{ ref }}` templates: parsing every ref form, rendering values, and errors."""

from __future__ import annotations

import json

import pytest

from chief.core.errors import TemplateError
from chief.core.workflows import Ref, render, resolve, template_refs

INPUTS = {"topic": "tides", "n": 3, "cfg": {"depth": {"max": 7}}}
RESULTS = {
    "outline": {"title": "Tides", "sections": ["Moon", "Sun"], "meta": {"words": 1200}},
    "raw": '{"verdict": "approve", "score": 0.9, "tags": ["a", "b"]}',
    "fenced": '```json\n{"ok": true}\n```',
    "text": "plain words",
    "skipped": None,
    "parts": ["first part", "second part"],
    "numbers": [1, 2],
    "flag": True,
}


def _render(text: str, **kw: object) -> str:
    return render(text, inputs=INPUTS, results=RESULTS, **kw)  # type: ignore[arg-type]


def test_templates_refs_of_every_form() -> None:
    text = (
        "{{inputs.topic}} {{ topic }} {{outline.result}} {{outline}} {{outline.title}} "
        "{{outline.result.meta.words}} {{steps.outline.status}} {{steps.outline.result.title}} "
        "{{item}} {{item.name}} {{index}} {{inputs.cfg.depth}}"
    )
    assert template_refs(text) == [
        Ref("input", "topic", (), "inputs.topic"),
        Ref("input", "topic", (), "topic", bare=True),
        Ref("step", "outline", (), "outline.result"),
        Ref("input", "outline", (), "outline", bare=True),
        Ref("step", "outline", ("title",), "outline.title"),
        Ref("step", "outline", ("meta", "words"), "outline.result.meta.words"),
        Ref("status", "outline", (), "steps.outline.status"),
        Ref("step", "outline", ("title",), "steps.outline.result.title"),
        Ref("item", "item", (), "item"),
        Ref("item", "item", ("name",), "item.name"),
        Ref("index", "index", (), "index"),
        Ref("input", "cfg", ("depth",), "inputs.cfg.depth"),
    ]


def test_templates_bare_step_names_resolve_with_the_step_keys() -> None:
    refs = template_refs("{{outline}} {{topic}}", steps={"outline"})
    assert [(r.kind, r.name, r.bare) for r in refs] == [("step", "outline", True), ("input", "topic", True)]


def test_templates_text_without_refs() -> None:
    assert template_refs("") == []
    assert template_refs("no braces } here {") == []
    assert _render("plain } text {") == "plain } text {"


def test_templates_render_inputs_bare_and_qualified() -> None:
    assert _render("About {{inputs.topic}} / {{ topic }} x{{n}}") == "About tides / tides x3"
    assert _render("{{inputs.cfg.depth.max}}") == "7"


def test_templates_render_step_results() -> None:
    assert _render("{{text}}|{{text.result}}|{{steps.text.result}}") == "plain words|plain words|plain words"


def test_templates_render_fields_of_json_results() -> None:
    assert (
        _render("{{outline.title}} {{outline.result.meta.words}} {{outline.sections.1}}") == "Tides 1200 Sun"
    )
    assert _render("{{raw.verdict}} {{raw.score}} {{raw.tags.0}}") == "approve 0.9 a"
    assert _render("{{fenced.ok}}") == "True"


def test_templates_render_dicts_and_lists_as_json_and_string_lists_as_paragraphs() -> None:
    assert json.loads(_render("{{outline.meta}}")) == {"words": 1200}
    assert _render("{{numbers}}") == "[1, 2]"
    assert _render("{{parts}}") == "first part\n\nsecond part"
    assert _render("{{outline.sections}}") == "Moon\n\nSun"
    non_ascii = render("{{x}}", inputs={"x": {"name": "Zoë"}}, results={})
    assert non_ascii == '{"name": "Zoë"}'


def test_templates_render_numbers_and_booleans_with_str() -> None:
    assert _render("{{n}} {{flag}} {{raw.score}}") == "3 True 0.9"


def test_templates_skipped_step_renders_empty() -> None:
    assert _render("[{{skipped}}][{{skipped.result}}][{{skipped.any.field}}]") == "[][][]"


def test_templates_item_and_index() -> None:
    text = "#{{index}}: {{item.name}} ({{item}})"
    assert _render(text, item={"name": "a.txt"}, index=2) == '#2: a.txt ({"name": "a.txt"})'
    assert _render("{{item}}", item="just text", index=0) == "just text"


def test_templates_status() -> None:
    assert _render("{{steps.text.status}}", statuses={"text": "failed"}) == "failed"
    assert _render("{{steps.text.status}} {{steps.skipped.status}}") == "succeeded skipped"


@pytest.mark.parametrize(
    ("text", "kwargs", "names"),
    [
        ("{{inputs.nope}}", {}, "{{inputs.nope}}"),
        ("{{nope}}", {}, "{{nope}}"),
        ("{{later.result}}", {}, "{{later.result}}"),
        ("{{text.field}}", {}, "{{text.field}}"),
        ("{{outline.missing}}", {}, "{{outline.missing}}"),
        ("{{outline.sections.5}}", {}, "{{outline.sections.5}}"),
        ("{{n.x}}", {}, "{{n.x}}"),
        ("{{item}}", {}, "{{item}}"),
        ("{{index}}", {}, "{{index}}"),
        ("{{steps.later.status}}", {}, "{{steps.later.status}}"),
    ],
)
def test_templates_unresolvable_ref_raises_naming_it(text: str, kwargs: dict, names: str) -> None:
    with pytest.raises(TemplateError) as err:
        _render("before " + text + " after", **kwargs)
    assert names in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ a + b }}", "invalid reference"),
        ("{{ }}", "invalid reference"),
        ("{{inputs}}", "name the input"),
        ("{{steps.a}}", "steps.<key>.status"),
        ("{{index.x}}", "index is a number"),
        ("open {{ topic", "unclosed '{{'"),
    ],
)
def test_templates_malformed_refs(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        template_refs(text)
    with pytest.raises(TemplateError, match=message):
        _render(text)


def test_templates_backslash_escapes_braces() -> None:
    assert template_refs(r"\{{ not a ref }}") == []
    assert _render(r"literal \{{topic}} and {{topic}}") == "literal {{topic}} and tides"


def test_templates_values_are_not_rescanned() -> None:
    out = render("{{x}}", inputs={"x": "{{topic}} {{ nope"}, results={})
    assert out == "{{topic}} {{ nope"


def test_templates_resolve_returns_raw_values() -> None:
    assert resolve("{{outline.sections}}", inputs=INPUTS, results=RESULTS) == ["Moon", "Sun"]
    assert resolve("  {{ n }} ", inputs=INPUTS, results=RESULTS) == 3
    assert resolve("{{skipped}}", inputs=INPUTS, results=RESULTS) is None
    assert resolve("{{item}}", inputs={}, results={}, item=[1], index=0) == [1]
    assert resolve("n={{n}}", inputs=INPUTS, results=RESULTS) == "n=3"


def test_templates_bare_name_prefers_a_step_result() -> None:
    assert render("{{x}}", inputs={"x": "input"}, results={"x": "step"}) == "step"
