"""`{{ ref }}` templates in prompts, `for_each`, `when`, `output` and sub-workflow inputs.

Templates are substitution only: nothing inside `{{ }}` is evaluated. A reference is one of

- `inputs.x` (or `inputs.x.field`) — a workflow input; a bare `x` is an input too, unless a step
  has the key `x`, then it is that step's result (a name that is both is a validation error);
- `step.result`, or bare `step` — a step's result; `step.field`, `step.result.field` and nested
  `step.a.b.c` — a field of a JSON result (a dict, or a string holding a JSON object/array;
  digits index lists); `steps.<key>.result` is the same, spelled out;
- `steps.<key>.status` — a step's status (`succeeded`, `failed`, `skipped`, ...);
- `item`, `item.field`, `index` — the current element and its position inside a `for_each` step.

`\\{{` writes a literal `{{` (the backslash is dropped). Values render as: strings as they are,
None (a skipped step) as "", dicts and lists as JSON, except a list of strings, which renders as
the strings separated by a blank line, and numbers/booleans with `str()`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import TemplateError

RefKind = Literal["input", "step", "item", "index", "status"]

_TOKEN = re.compile(r"\\\{\{|\{\{(?P<inner>.*?)\}\}|\{\{")
_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$")
_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(?P<body>.*?)\n?```\s*$", re.DOTALL)


class _NoItem:
    """The `item` of a step that is not a `for_each` step."""

    def __repr__(self) -> str:
        return "NO_ITEM"


NO_ITEM: Any = _NoItem()


@dataclass(frozen=True)
class Ref:
    """One `{{ ref }}` of a template.

    `kind` is what it names; `name` the input, step (for "step"/"status") or "item"/"index";
    `path` the fields below it (`("a", "b")` for `step.a.b`); `raw` the text between the braces.
    `bare` marks an unqualified `{{ x }}`, which is an input unless a step has the key `x`.
    """

    kind: RefKind
    name: str
    path: tuple[str, ...] = ()
    raw: str = ""
    bare: bool = False

    def __str__(self) -> str:
        return "{{" + self.raw + "}}"


Segment = tuple[str, Ref | None]


def _parse_ref(inner: str) -> Ref:
    raw = inner.strip()
    if not _REF.match(raw):
        raise TemplateError(
            f"invalid reference '{{{{{inner}}}}}': write a name such as inputs.x, step.result or "
            "item.field (templates substitute values, they do not evaluate expressions)"
        )
    head, *rest = raw.split(".")
    if head == "inputs":
        if not rest:
            raise TemplateError("invalid reference '{{inputs}}': name the input, e.g. {{inputs.topic}}")
        return Ref("input", rest[0], tuple(rest[1:]), raw)
    if head == "steps":
        if len(rest) == 2 and rest[1] == "status":
            return Ref("status", rest[0], (), raw)
        if len(rest) >= 2 and rest[1] == "result":
            return Ref("step", rest[0], tuple(rest[2:]), raw)
        raise TemplateError(
            f"invalid reference '{{{{{raw}}}}}': write steps.<key>.status or steps.<key>.result"
        )
    if head == "item":
        return Ref("item", "item", tuple(rest), raw)
    if head == "index":
        if rest:
            raise TemplateError(f"invalid reference '{{{{{raw}}}}}': index is a number and has no fields")
        return Ref("index", "index", (), raw)
    if not rest:
        return Ref("input", head, (), raw, bare=True)
    if rest[0] == "result":
        rest = rest[1:]
    return Ref("step", head, tuple(rest), raw)


@functools.lru_cache(maxsize=8192)
def compile_template(text: str) -> tuple[Segment, ...]:
    """Split `text` into (literal, ref-or-None) segments; cached per string. Raises TemplateError."""
    segments: list[Segment] = []
    pos = 0
    literal: list[str] = []
    for m in _TOKEN.finditer(text):
        literal.append(text[pos : m.start()])
        pos = m.end()
        token = m.group(0)
        if token == "\\{{":
            literal.append("{{")
            continue
        inner = m.group("inner")
        if inner is None:
            line_end = text.find("\n", m.start())
            snippet = text[m.start() : line_end if line_end >= 0 else None][:40]
            raise TemplateError(f"unclosed '{{{{' in '{snippet}' (write \\{{{{ for a literal '{{{{')")
        segments.append(("".join(literal), _parse_ref(inner)))
        literal = []
    literal.append(text[pos:])
    segments.append(("".join(literal), None))
    return tuple(segments)


def template_refs(text: str, *, steps: Collection[str] | None = None) -> list[Ref]:
    """The references in `text`, in order. Raises TemplateError if one is malformed.

    With `steps` (the workflow's step keys), a bare `{{ x }}` naming a step comes back as kind "step".
    """
    if not text or "{{" not in text:
        return []
    refs = [ref for _, ref in compile_template(text) if ref is not None]
    if steps:
        refs = [Ref("step", r.name, (), r.raw, bare=True) if r.bare and r.name in steps else r for r in refs]
    return refs


def is_single_ref(text: str) -> Ref | None:
    """The ref if `text` is exactly one `{{ ref }}` (surrounding whitespace allowed), else None."""
    if not text or "{{" not in text:
        return None
    segments = compile_template(text)
    if len(segments) == 2 and not segments[0][0].strip() and not segments[1][0].strip():
        return segments[0][1]
    return None


def parse_json_text(value: str) -> Any:
    """The JSON value in a string (an object or array, optionally in a ``` fence), or raise ValueError."""
    text = value.strip()
    fence = _FENCE.match(text)
    if fence:
        text = fence.group("body").strip()
    if not text or text[0] not in "[{":
        raise ValueError("not a JSON object or array")
    return json.loads(text)


def _walk(value: Any, path: tuple[str, ...], ref: Ref, what: str) -> Any:
    for depth, key in enumerate(path):
        if isinstance(value, str):
            try:
                value = parse_json_text(value)
            except ValueError:
                raise TemplateError(
                    f"cannot resolve {ref}: {what} is text, not JSON, so it has no field '{key}'"
                ) from None
        if isinstance(value, Mapping):
            if key not in value:
                where = ".".join(path[:depth]) or what
                fields = ", ".join(sorted(str(k) for k in value)[:10])
                raise TemplateError(f"cannot resolve {ref}: {where} has no field '{key}' (fields: {fields})")
            value = value[key]
        elif isinstance(value, list | tuple) and key.isdigit():
            if int(key) >= len(value):
                raise TemplateError(f"cannot resolve {ref}: index {key} is past the end ({len(value)} items)")
            value = value[int(key)]
        else:
            raise TemplateError(f"cannot resolve {ref}: {type(value).__name__} value has no field '{key}'")
    return value


def _infer_status(name: str, results: Mapping[str, Any]) -> str | None:
    if name not in results:
        return None
    return "skipped" if results[name] is None else "succeeded"


def resolve_ref(
    ref: Ref,
    *,
    inputs: Mapping[str, Any],
    results: Mapping[str, Any],
    statuses: Mapping[str, str] | None = None,
    item: Any = NO_ITEM,
    index: int | None = None,
) -> Any:
    """The value a ref names (not rendered). None for a skipped step. Raises TemplateError."""
    kind = ref.kind
    if ref.bare:
        kind = "step" if ref.name in results else "input"
    if kind == "input":
        if ref.name not in inputs:
            raise TemplateError(f"cannot resolve {ref}: no input '{ref.name}' was given")
        return _walk(inputs[ref.name], ref.path, ref, f"input '{ref.name}'")
    if kind == "step":
        if ref.name not in results:
            raise TemplateError(f"cannot resolve {ref}: step '{ref.name}' has no result (has it run?)")
        value = results[ref.name]
        if value is None:  # skipped: every field of it is empty too
            return None
        return _walk(value, ref.path, ref, f"the result of '{ref.name}'")
    if kind == "status":
        status = (statuses or {}).get(ref.name) or _infer_status(ref.name, results)
        if status is None:
            raise TemplateError(f"cannot resolve {ref}: step '{ref.name}' has no status yet")
        return status
    if kind == "item":
        if item is NO_ITEM:
            raise TemplateError(f"cannot resolve {ref}: 'item' exists only inside a for_each step")
        return _walk(item, ref.path, ref, "the item")
    if index is None:
        raise TemplateError(f"cannot resolve {ref}: 'index' exists only inside a for_each step")
    return index


def format_value(value: Any) -> str:
    """How a value is written into a prompt (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n\n".join(value)
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def render(
    text: str,
    *,
    inputs: Mapping[str, Any],
    results: Mapping[str, Any],
    statuses: Mapping[str, str] | None = None,
    item: Any = NO_ITEM,
    index: int | None = None,
) -> str:
    """Substitute every `{{ ref }}` in `text`. `results` maps step key -> output (None if skipped).

    Raises TemplateError naming the ref when one cannot be resolved.
    """
    if not text or "{{" not in text:
        return text
    parts: list[str] = []
    for literal, ref in compile_template(text):
        parts.append(literal)
        if ref is not None:
            value = resolve_ref(
                ref, inputs=inputs, results=results, statuses=statuses, item=item, index=index
            )
            parts.append(format_value(value))
    return "".join(parts)


def resolve(
    text: str,
    *,
    inputs: Mapping[str, Any],
    results: Mapping[str, Any],
    statuses: Mapping[str, str] | None = None,
    item: Any = NO_ITEM,
    index: int | None = None,
) -> Any:
    """The value of `text` when it is exactly one `{{ ref }}` (e.g. a `for_each` list), else `render()`."""
    ref = is_single_ref(text)
    if ref is None:
        return render(text, inputs=inputs, results=results, statuses=statuses, item=item, index=index)
    return resolve_ref(ref, inputs=inputs, results=results, statuses=statuses, item=item, index=index)
