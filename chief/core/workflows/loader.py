"""Read workflow files (YAML or JSON) into `WorkflowSpec`s, reporting every problem with its line.

YAML is read with a SafeLoader subclass that records the line of every mapping key and list
item, so a pydantic error at `("steps", 2, "depends_on")` or a validation problem of step 2 can
say where it is. When the document does not validate, the steps that do are still checked
against each other, so one run shows all problems.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import Problem, WorkflowError, WorkflowNotFound
from .spec import (
    CONFIG_ALIASES,
    RETRY_ALIASES,
    STEP_ALIASES,
    InputSpec,
    RetrySpec,
    StepSpec,
    WorkflowConfig,
    WorkflowSpec,
    implicit_input_names,
    normalise_step,
)
from .validate import validate_workflow

WORKFLOW_SUFFIXES = (".yaml", ".yml", ".json")

_ALIASES: dict[str, tuple[str, ...]] = {}
for _table in (STEP_ALIASES, CONFIG_ALIASES, RETRY_ALIASES):
    for _canonical, _names in _table.items():
        _ALIASES[_canonical] = tuple(dict.fromkeys(_ALIASES.get(_canonical, ()) + _names))

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader that records, per mapping/list (by id), its line and the line of each key/item."""

    marks: dict[int, tuple[int, Any]]
    duplicates: list[tuple[Any, int, int]]  # (key, line, first line)


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
    data: dict[Any, Any] = {}
    yield data
    originals = {id(k) for k, _ in node.value}
    loader.flatten_mapping(node)
    key_lines: dict[Any, int] = {}
    first: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=False)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
            ) from None
        line = key_node.start_mark.line + 1
        if id(key_node) in originals:
            if key in first:
                loader.duplicates.append((key, line, first[key]))
            first[key] = line
        data[key] = loader.construct_object(value_node, deep=False)
        key_lines[key] = line
    loader.marks[id(data)] = (node.start_mark.line + 1, key_lines)


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> Iterator[list[Any]]:
    data: list[Any] = []
    yield data
    data.extend(loader.construct_object(child, deep=False) for child in node.value)
    loader.marks[id(data)] = (node.start_mark.line + 1, [c.start_mark.line + 1 for c in node.value])


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _key_in(mapping: dict[Any, Any], seg: Any) -> Any:
    """The key `seg` is written under in a mapping: itself, or an older name of it."""
    if seg in mapping:
        return seg
    for alias in _ALIASES.get(seg, ()) if isinstance(seg, str) else ():
        if alias in mapping:
            return alias
    return None


def _display(data: Any, path: tuple[Any, ...]) -> list[str]:
    """The path as the author wrote it (older field names kept), walking the raw data."""
    out: list[str] = []
    node = data
    for seg in path:
        key = _key_in(node, seg) if isinstance(node, dict) else None
        out.append(str(key if key is not None else seg))
        node = (
            node.get(key)
            if key is not None
            else (node[seg] if isinstance(node, list) and isinstance(seg, int) and seg < len(node) else None)
        )
    return out


class _Lines:
    """Line numbers of the parts of one parsed document."""

    def __init__(self, data: Any, marks: dict[int, tuple[int, Any]]):
        self.data = data
        self.marks = marks

    def line(self, path: tuple[str | int, ...]) -> int | None:
        node, best = self.data, None
        for seg in path:
            info = self.marks.get(id(node))
            if info is None:
                break
            start, inner = info
            best = best or start
            if isinstance(node, dict):
                key = _key_in(node, seg)
                if key is None:
                    break
                best, node = inner[key], node[key]
            elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
                best, node = inner[seg], node[seg]
            else:
                break
        if best is None and self.marks.get(id(self.data)):
            best = self.marks[id(self.data)][0]
        return best


class _LazyLines:
    """Lines of a JSON document, found (by reading it as YAML) only when a problem needs one."""

    def __init__(self, text: str):
        self.text = text
        self._lines: _Lines | None = None
        self._failed = False

    def line(self, path: tuple[str | int, ...]) -> int | None:
        if self._lines is None and not self._failed:
            try:
                data, marks, _ = _read_yaml(self.text)
                self._lines = _Lines(data, marks)
            except yaml.YAMLError:
                self._failed = True
        return self._lines.line(path) if self._lines else None


class _Reindexed:
    """Lines of a salvaged spec whose steps are a subset of the document's steps."""

    def __init__(self, lines: Any, index: list[int]):
        self.lines, self.index = lines, index

    def line(self, path: tuple[str | int, ...]) -> int | None:
        if self.lines is None:
            return None
        if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int) and path[1] < len(self.index):
            path = ("steps", self.index[path[1]], *path[2:])
        return self.lines.line(path)


def _read_yaml(text: str) -> tuple[Any, dict[int, tuple[int, Any]], list[tuple[Any, int, int]]]:
    loader = _LineLoader(text)
    loader.marks, loader.duplicates = {}, []
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return data, loader.marks, loader.duplicates


def _yaml_problem(e: yaml.YAMLError, source: str) -> Problem:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    return Problem(message, source, mark.line + 1 if mark is not None else None)


def _duplicate_problems(duplicates: list[tuple[Any, int, int]], source: str) -> list[Problem]:
    return [
        Problem(f"'{key}' is given twice in the same mapping (first at line {first})", source, line)
        for key, line, first in duplicates
    ]


def _guess_format(text: str, source: str) -> str:
    if source.lower().endswith(".json"):
        return "json"
    return "json" if text.lstrip().startswith(("{", "[")) else "yaml"


def _parse_text(text: str, source: str, fmt: str | None) -> tuple[Any, Any, list[Problem]]:
    """(data, line index, problems so far); raises WorkflowError when the text cannot be read."""
    chosen = fmt or _guess_format(text, source)
    if chosen not in ("json", "yaml"):
        raise ValueError(f"unknown workflow format {fmt!r} (use 'yaml' or 'json')")
    if chosen == "json":
        seen_twice: list[str] = []

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k, v in items:
                if k in out:
                    seen_twice.append(k)
                out[k] = v
            return out

        try:
            data = json.loads(text, object_pairs_hook=pairs)
        except json.JSONDecodeError as e:
            if fmt is None and not source.lower().endswith(".json"):  # a guess: may be YAML flow style
                try:
                    return _parse_text(text, source, "yaml")
                except WorkflowError:
                    pass
            problem = Problem(f"JSON syntax error: {e.msg} (column {e.colno})", source, e.lineno)
            raise WorkflowError([problem]) from None
        lines = _LazyLines(text)
        problems: list[Problem] = []
        if seen_twice:
            try:
                problems = _duplicate_problems(_read_yaml(text)[2], source)
            except yaml.YAMLError:
                problems = []
            problems = problems or [
                Problem(f"'{k}' is given twice in the same object", source) for k in seen_twice
            ]
        return data, lines, problems
    try:
        data, marks, duplicates = _read_yaml(text)
    except yaml.YAMLError as e:
        raise WorkflowError([_yaml_problem(e, source)]) from None
    return data, _Lines(data, marks), _duplicate_problems(duplicates, source)


# --- pydantic errors as problems -----------------------------------------------------------

_FIELDS: dict[str, tuple[type[BaseModel], dict[str, tuple[str, ...]]]] = {
    "workflow": (WorkflowSpec, {}),
    "step": (StepSpec, STEP_ALIASES),
    "config": (WorkflowConfig, CONFIG_ALIASES),
    "input": (InputSpec, {}),
    "retry": (RetrySpec, RETRY_ALIASES),
}


def _model_at(loc: tuple[Any, ...]) -> str:
    """Which model the last element of `loc` is a field of."""
    parent = loc[:-1]
    if not parent:
        return "workflow"
    if parent[-1] == "retry":
        return "retry"
    if len(parent) == 2 and parent[0] == "steps":
        return "step"
    if parent == ("config",):
        return "config"
    if len(parent) == 2 and parent[0] == "inputs":
        return "input"
    return "workflow"


def _unknown_field(name: str, loc: tuple[Any, ...]) -> str:
    model, aliases = _FIELDS[_model_at(loc)]
    canonical = {f: f for f in model.model_fields}
    canonical.update({a: c for c, names in aliases.items() for a in names})
    close = difflib.get_close_matches(name, list(canonical), n=1, cutoff=0.6)
    hint = f" (did you mean '{canonical[close[0]]}'?)" if close else ""
    known = ", ".join(model.model_fields)
    return f"unknown field{hint}" if hint else f"unknown field (known fields: {known})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: Any, loc: tuple[Any, ...]) -> str:
    kind, msg, value = err["type"], err["msg"], err.get("input")
    if kind == "extra_forbidden":
        return _unknown_field(str(loc[-1]), loc)
    if kind == "missing":
        return "required field missing"
    if kind == "string_pattern_mismatch":
        return f"must start with a letter and hold only letters, digits, '_' and '-' (got {_short(value)})"
    if kind == "too_short" and loc == ("steps",):
        return "a workflow needs at least one step"
    if kind in ("value_error", "assertion_error"):
        return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    msg = msg.replace("Input should be", "should be")
    if "a valid dictionary" in msg:
        msg = "should be a mapping"
    return f"{msg} (got {_short(value)})"


_MISSING = object()


def _raw_value(data: Any, path: list[str]) -> Any:
    node = data
    for seg in path:
        if isinstance(node, dict) and seg in node:
            node = node[seg]
        elif isinstance(node, list) and seg.isdigit() and int(seg) < len(node):
            node = node[int(seg)]
        else:
            return _MISSING
    return node


def _problems_from(exc: ValidationError, data: dict[str, Any], lines: Any, source: str) -> list[Problem]:
    problems: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        step: str | None = None
        field_loc = loc
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            raw = data.get("steps")
            raw_step = raw[loc[1]] if isinstance(raw, list) and loc[1] < len(raw) else None
            key = raw_step.get("key") if isinstance(raw_step, dict) else None
            step = key if isinstance(key, str) and key else f"#{loc[1] + 1}"
            field_loc = loc[2:]
        if loc and loc[-1] == "[key]":  # a mapping key of the wrong type
            loc, field_loc = loc[:-1], field_loc[:-1]
            err = {**err, "type": "key_type", "msg": "names must be text"}
        written = _display(data, loc)
        shown = written[len(loc) - len(field_loc) :]
        field = ".".join(shown) or None
        line = lines.line(loc) if lines is not None else None
        message = _message(err, loc)
        if written and written[-1] != str(loc[-1]) and err["type"] not in ("extra_forbidden", "missing"):
            # an older field name whose value was converted: show what the author wrote
            raw = _raw_value(data, written)
            if raw is not _MISSING and raw != err.get("input"):
                message = (
                    message.rsplit(" (got ", 1)[0]
                    + f" (got {_short(raw)}, which is {loc[-1]}={_short(err.get('input'))})"
                )
        problems.append(Problem(message, source, line, step, field))
    return problems


def _salvage_step(raw: Any) -> tuple[StepSpec | None, bool]:
    """The step without its invalid fields (None if nothing usable is left), and whether it was whole."""
    try:
        return StepSpec.model_validate(raw), True
    except ValidationError as exc:
        if not isinstance(raw, dict) or not isinstance(raw.get("key"), str):
            return None, False
        errors = exc.errors(include_url=False)
    try:
        fields = normalise_step(raw)
    except ValueError:
        fields = dict(raw)
    bad = {e["loc"][0] for e in errors if e["loc"]}
    if "key" in bad:
        return None, False
    fields = {k: v for k, v in fields.items() if k not in bad and k in StepSpec.model_fields}
    try:
        return StepSpec.model_validate(fields), False
    except ValidationError:  # only step-level rules fail now (e.g. no agent): keep what was given
        return StepSpec.model_construct(**fields), False


def _salvage(data: dict[str, Any]) -> tuple[WorkflowSpec, set[str], list[int]]:
    """A spec of the parts that did validate, the keys of steps that did not, and step positions."""
    raw_steps = data.get("steps") if isinstance(data.get("steps"), list) else []
    steps: list[StepSpec] = []
    positions: list[int] = []
    bad: set[str] = set()
    for i, raw in enumerate(raw_steps or []):
        step, whole = _salvage_step(raw)
        if step is not None:
            steps.append(step)
            positions.append(i)
        if not whole and isinstance(raw, dict) and isinstance(raw.get("key"), str):
            bad.add(raw["key"])
    raw_inputs = data.get("inputs") if isinstance(data.get("inputs"), dict) else {}
    inputs: dict[str, InputSpec] = {}
    for name, raw in (raw_inputs or {}).items():
        try:
            inputs[str(name)] = InputSpec.model_validate(raw)
        except ValidationError:
            inputs[str(name)] = InputSpec()
    output = data.get("output") if isinstance(data.get("output"), str) else None
    name = data.get("name") if isinstance(data.get("name"), str) else "workflow"
    if not inputs:
        inputs = {n: InputSpec(required=True) for n in implicit_input_names(steps, output)}
    spec = WorkflowSpec.model_construct(
        name=name,
        description="",
        version="1",
        author=None,
        tags=[],
        inputs=inputs,
        steps=steps,
        output=output,
        config=WorkflowConfig(),
    )
    return spec, bad, positions


def _sorted(problems: list[Problem]) -> list[Problem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda p: (p.line is None, p.line or 0))


def _build(
    data: Any, *, source: str, lines: Any, problems: list[Problem], known: dict[str, Any]
) -> WorkflowSpec:
    if data is None:
        raise WorkflowError([Problem("the workflow is empty", source, 1 if lines is not None else None)])
    if not isinstance(data, dict):
        message = f"the top level must be a mapping (name:, steps:, ...), not {type(data).__name__}"
        raise WorkflowError([Problem(message, source, 1 if lines is not None else None)])
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        problems = problems + _problems_from(exc, data, lines, source)
        salvaged, bad, positions = _salvage(data)
        salvaged.source = source
        salvaged.set_line_index(_Reindexed(lines, positions))
        problems += validate_workflow(salvaged, ignore_steps=bad, **known)
        raise WorkflowError(_sorted(problems)) from None
    spec.source = source
    spec.set_line_index(lines)
    problems = problems + validate_workflow(spec, **known)
    if problems:
        raise WorkflowError(_sorted(problems))
    return spec


def parse_workflow(
    text: str,
    *,
    source: str = "<string>",
    fmt: str | None = None,
    agents: Collection[str] | None = None,
    capabilities: Collection[str] | None = None,
    workflows: Collection[str] | Mapping[str, Any] | None = None,
) -> WorkflowSpec:
    """Parse and check a workflow from YAML or JSON text (`fmt` "yaml", "json" or None to guess).

    Raises WorkflowError listing every problem, each with `source` and its line where known.
    `agents`, `capabilities` and `workflows` are checked too when given (see `validate_workflow`),
    so one call reports everything.
    """
    data, lines, problems = _parse_text(text, source, fmt)
    known = {"agents": agents, "capabilities": capabilities, "workflows": workflows}
    return _build(data, source=source, lines=lines, problems=problems, known=known)


def spec_from_data(
    data: Any,
    *,
    source: str = "<data>",
    agents: Collection[str] | None = None,
    capabilities: Collection[str] | None = None,
    workflows: Collection[str] | Mapping[str, Any] | None = None,
) -> WorkflowSpec:
    """Check an already-parsed workflow (e.g. a plan a model wrote as JSON); WorkflowError as above."""
    known = {"agents": agents, "capabilities": capabilities, "workflows": workflows}
    return _build(data, source=source, lines=None, problems=[], known=known)


def load_workflow(
    path: str | Path,
    *,
    agents: Collection[str] | None = None,
    capabilities: Collection[str] | None = None,
    workflows: Collection[str] | Mapping[str, Any] | None = None,
) -> WorkflowSpec:
    """Read and check one workflow file; `spec.source` is set to `path`. WorkflowError as above."""
    p = Path(path)
    if not p.is_file():
        raise WorkflowNotFound(f"no workflow file '{path}'")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise WorkflowError([Problem(f"not UTF-8 text: {e.reason}", str(path))]) from None
    suffix = p.suffix.lower()
    fmt = "json" if suffix == ".json" else "yaml" if suffix in (".yaml", ".yml") else None
    return parse_workflow(
        text, source=str(path), fmt=fmt, agents=agents, capabilities=capabilities, workflows=workflows
    )


def load_workflows_dir(path: str | Path) -> dict[str, WorkflowSpec]:
    """Every `*.yaml`, `*.yml` and `*.json` workflow in a directory (not recursive), by name.

    Raises WorkflowError with the problems of all files (and duplicate names) if any is invalid.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise WorkflowNotFound(f"no workflow directory '{path}'")
    specs: dict[str, WorkflowSpec] = {}
    problems: list[Problem] = []
    for file in sorted(folder.iterdir()):
        if not file.is_file() or file.suffix.lower() not in WORKFLOW_SUFFIXES:
            continue
        try:
            spec = load_workflow(file)
        except WorkflowError as e:
            problems.extend(e.problems)
            continue
        if spec.name in specs:
            first = specs[spec.name].source
            problems.append(
                Problem(f"workflow '{spec.name}' is also defined in {first}", str(file), spec.line_of("name"))
            )
            continue
        specs[spec.name] = spec
    if problems:
        raise WorkflowError(problems)
    return specs
