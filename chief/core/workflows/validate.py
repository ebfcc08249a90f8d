"""Cross-step checks of a workflow, collecting every problem rather than stopping at the first."""

from __future__ import annotations

import difflib
import re
from collections import deque
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from ..errors import Problem, TemplateError
from .conditions import check_condition, condition_refs
from .graph import find_cycle
from .spec import RESERVED_NAMES, StepSpec, WorkflowSpec
from .templates import Ref, is_single_ref, template_refs

_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_BARE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def did_you_mean(name: str, candidates: Collection[str]) -> str:
    """` (did you mean 'x'?)` for the closest candidate, or "" if none is close."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _field_path(field: str) -> tuple[str | int, ...]:
    return tuple(int(p) if p.isdigit() else p for p in field.split("."))


def _is_path(ref: str) -> bool:
    return "/" in ref or "\\" in ref or ref.endswith((".yaml", ".yml", ".json"))


class _Validator:
    def __init__(
        self,
        spec: WorkflowSpec,
        agents: Collection[str] | None,
        capabilities: Collection[str] | None,
        workflows: Collection[str] | Mapping[str, Any] | None,
        ignore: Collection[str],
    ):
        self.spec = spec
        self.agents = agents
        self.capabilities = capabilities
        self.workflows = workflows
        self.ignore = set(ignore)  # steps that exist but failed to load: refs to them are fine
        self.source = spec.source or ""
        self.problems: list[Problem] = []
        self.pos: dict[str, int] = {}
        for i, step in enumerate(spec.steps):
            self.pos.setdefault(step.key, i)
        self.upstream: list[int | None] = []

    def add(
        self,
        message: str,
        step: int | None = None,
        field: str | None = None,
        at: tuple[str | int, ...] | None = None,
    ) -> None:
        """Record a problem; `at` is the path below the step (or the top) whose line to report."""
        sub = at if at is not None else (_field_path(field) if field else ())
        if step is None:
            path: tuple[str | int, ...] = sub
            key = None
        else:
            path = ("steps", step, *sub)
            key = self.spec.steps[step].key
        line = self.spec.line_of(*path) if path else None
        self.problems.append(Problem(message, self.source, line, key, field))

    def run(self) -> list[Problem]:
        self.check_inputs()
        self.check_keys()
        self.check_dependencies()
        self.compute_upstream()
        for i, step in enumerate(self.spec.steps):
            self.check_step(i, step)
        if self.spec.output:
            self.check_template(None, "output", self.spec.output, allow_item=False)
        return self.problems

    # --- structure ---------------------------------------------------------------------
    def check_inputs(self) -> None:
        for name in self.spec.inputs:
            if not _INPUT_NAME.match(name):
                self.add(
                    f"input name '{name}' must start with a letter or '_' and hold only letters, "
                    "digits, '_' and '-'",
                    field=f"inputs.{name}",
                )
            elif name in RESERVED_NAMES:
                self.add(
                    f"'{name}' is a reserved name; call the input something else", field=f"inputs.{name}"
                )

    def check_keys(self) -> None:
        for i, step in enumerate(self.spec.steps):
            first = self.pos[step.key]
            if first != i:
                line = self.spec.line_of("steps", first)
                where = f"line {line}" if line else f"step #{first + 1}"
                self.add(f"duplicate step key '{step.key}' (first used at {where})", i, "key")
            if step.key in RESERVED_NAMES:
                self.add(f"'{step.key}' is a reserved name; choose another step key", i, "key")

    def check_dependencies(self) -> None:
        known = self.pos.keys() | self.ignore
        for i, step in enumerate(self.spec.steps):
            for j, dep in enumerate(step.depends_on):
                if dep not in known:
                    hint = did_you_mean(dep, self.pos)
                    self.add(f"unknown step '{dep}'{hint}", i, "depends_on", at=("depends_on", j))
        cycle = find_cycle(self.spec)
        if cycle:
            i = self.pos[cycle[0]]
            self.add(f"cycle: {' -> '.join(cycle)}", i, "depends_on")

    def compute_upstream(self) -> None:
        """Per step, a bitset of the (first-occurrence) indexes of all its transitive dependencies."""
        steps = self.spec.steps
        deps = [[self.pos[d] for d in s.depends_on if d in self.pos] for s in steps]
        children: list[list[int]] = [[] for _ in steps]
        for i, ds in enumerate(deps):
            for d in ds:
                children[d].append(i)
        missing = [len(ds) for ds in deps]
        upstream: list[int | None] = [None] * len(steps)  # None: in or behind a cycle, not checked
        ready = deque(i for i, m in enumerate(missing) if m == 0)
        # A step whose wiring is incomplete (an unknown or unloadable dependency) is not checked for
        # upstream use, nor is anything after it: the missing edge is already reported.
        known = self.pos.keys()
        unsure = [s.key in self.ignore or any(d not in known for d in s.depends_on) for s in steps]
        while ready:
            i = ready.popleft()
            bits = 0
            for d in deps[i]:
                bits |= (1 << d) | (upstream[d] or 0)
                unsure[i] = unsure[i] or unsure[d]
            upstream[i] = None if unsure[i] else bits
            for c in children[i]:
                missing[c] -= 1
                if missing[c] == 0:
                    ready.append(c)
        self.upstream = upstream

    # --- one step ----------------------------------------------------------------------
    def check_step(self, i: int, step: StepSpec) -> None:
        for field, text in step.template_fields():
            if field == "for_each":
                self.check_for_each(i, text)
            # `when` and the list itself are evaluated once, before the fan-out: no item there
            per_item = bool(step.for_each) and field not in ("for_each", "when")
            self.check_template(i, field, text, allow_item=per_item)
        if step.inputs and not step.workflow:
            self.add(
                "only a workflow: step takes inputs (use the prompt to pass values to an agent)", i, "inputs"
            )
        self.check_target(i, step)

    def check_for_each(self, i: int, text: str) -> None:
        try:
            if is_single_ref(text) is not None:
                return
        except TemplateError:
            return  # reported with the template
        hint = f" (did you mean '{{{{{text.strip()}}}}}'?)" if _BARE_NAME.match(text.strip()) else ""
        self.add(
            f"for_each must be one {{{{ref}}}} naming a list, e.g. '{{{{inputs.files}}}}'{hint}",
            i,
            "for_each",
        )

    def check_template(self, i: int | None, field: str, text: str, *, allow_item: bool) -> None:
        if field == "when":
            error = check_condition(text)
            if error:
                self.add(f"invalid condition {text!r}: {error}", i, field)
                return
            refs = condition_refs(text)
        else:
            try:
                refs = template_refs(text)
            except TemplateError as e:
                self.add(str(e), i, field)
                return
        for ref in refs:
            self.check_ref(ref, i, field, allow_item)

    def check_ref(self, ref: Ref, i: int | None, field: str, allow_item: bool) -> None:
        kind, name = ref.kind, ref.name
        if ref.bare:
            in_steps = name in self.pos or name in self.ignore
            in_inputs = name in self.spec.inputs
            if in_steps and in_inputs:
                self.add(
                    f"ambiguous: '{name}' is both an input and a step; write inputs.{name} or {name}.result",
                    i,
                    field,
                )
                return
            if in_inputs:
                return
            if not in_steps:
                names = [*self.spec.inputs, *self.pos]
                self.add(f"{ref}: unknown input or step '{name}'{did_you_mean(name, names)}", i, field)
                return
            kind = "step"
        if kind == "input":
            if name not in self.spec.inputs:
                self.add(f"{ref}: unknown input '{name}'{did_you_mean(name, self.spec.inputs)}", i, field)
        elif kind in ("item", "index"):
            if not allow_item and i is not None and self.spec.steps[i].for_each:
                self.add(
                    f"{ref}: '{kind}' is not available in {field}: it is evaluated once, before the fan-out",
                    i,
                    field,
                )
            elif not allow_item:
                self.add(f"{ref}: '{kind}' is only available inside a for_each step", i, field)
        elif name not in self.pos and name in self.ignore:
            return  # a step that could not be loaded at all: nothing to say about it
        elif name not in self.pos:
            self.add(f"{ref}: unknown step '{name}'{did_you_mean(name, self.pos)}", i, field)
        elif i is not None:
            j = self.pos[name]
            if self.spec.steps[i].key == name:
                self.add(f"{ref}: a step cannot use its own result", i, field)
            elif self.upstream[i] is not None and not (self.upstream[i] >> j) & 1:  # type: ignore[operator]
                self.add(
                    f"{ref}: step '{name}' is not upstream of this step (add it to depends_on)", i, field
                )

    def check_target(self, i: int, step: StepSpec) -> None:
        if step.agent and self.agents is not None and step.agent not in self.agents:
            self.add(f"unknown agent '{step.agent}'{did_you_mean(step.agent, self.agents)}", i, "agent")
        if step.capability and self.capabilities is not None and step.capability not in self.capabilities:
            hint = did_you_mean(step.capability, self.capabilities)
            self.add(f"no agent has the capability '{step.capability}'{hint}", i, "capability")
        if step.workflow:
            self.check_workflow(i, step, step.workflow)

    def check_workflow(self, i: int, step: StepSpec, ref: str) -> None:
        if ref == self.spec.name:
            self.add("a workflow cannot run itself", i, "workflow")
            return
        if self.workflows is None:
            return
        if ref not in self.workflows and _is_path(ref):
            base = Path(self.spec.source).parent if self.spec.source else Path.cwd()
            if not (base / ref).is_file():
                self.add(f"no workflow file '{ref}' (looked in {base})", i, "workflow")
            return
        if ref not in self.workflows:
            self.add(f"unknown workflow '{ref}'{did_you_mean(ref, self.workflows)}", i, "workflow")
            return
        sub = self.workflows[ref] if isinstance(self.workflows, Mapping) else None
        if isinstance(sub, WorkflowSpec):
            for name in step.inputs:
                if name not in sub.inputs:
                    hint = did_you_mean(name, sub.inputs)
                    self.add(f"workflow '{ref}' has no input '{name}'{hint}", i, f"inputs.{name}")
            for name, spec in sub.inputs.items():
                if spec.required and spec.default is None and name not in step.inputs:
                    self.add(f"workflow '{ref}' needs the input '{name}'", i, "inputs")


def validate_workflow(
    spec: WorkflowSpec,
    *,
    agents: Collection[str] | None = None,
    capabilities: Collection[str] | None = None,
    workflows: Collection[str] | Mapping[str, Any] | None = None,
    ignore_steps: Collection[str] = (),
) -> list[Problem]:
    """Every problem of the workflow's structure and templates (empty list: valid).

    `agents` (names), `capabilities` and `workflows` (names, or name -> WorkflowSpec to also check a
    sub-workflow's inputs) are checked only when given. `ignore_steps` are keys of steps that exist
    but could not be loaded whole: references to them are not reported, and whether a step
    downstream of them uses only upstream results is not checked (its wiring is not known).
    """
    return _Validator(spec, agents, capabilities, workflows, ignore_steps).run()
