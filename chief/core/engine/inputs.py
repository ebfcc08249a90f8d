"""Check and complete the inputs given to a workflow: defaults, required ones, types, unknown names."""

from __future__ import annotations

import difflib
import json
from typing import Any

from ..errors import ChiefError
from ..workflows import WorkflowSpec


class InputError(ChiefError):
    """Inputs given to a workflow are missing, unknown or of the wrong type."""


def _coerce(name: str, kind: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "boolean":
            lowered = value.strip().lower()
            if lowered in ("true", "yes", "1", "on"):
                return True
            if lowered in ("false", "no", "0", "off"):
                return False
            raise ValueError(value)
        if kind in ("list", "object", "files") and value.strip()[:1] in ("[", "{"):
            return json.loads(value)
    except ValueError as exc:
        raise InputError(f"input '{name}' must be {kind}, got {value[:40]!r}") from exc
    return value


def prepare_inputs(spec: WorkflowSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The inputs a run starts with; raises `InputError` naming every problem."""
    problems = []
    values: dict[str, Any] = {}
    for name, value in given.items():
        if name not in spec.inputs and spec.inputs:
            hint = difflib.get_close_matches(name, list(spec.inputs), n=1)
            problems.append(f"unknown input '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else
                                                         f" (inputs: {', '.join(spec.inputs)})"))
            continue
        kind = spec.inputs[name].type if name in spec.inputs else "string"
        try:
            values[name] = _coerce(name, kind, value)
        except InputError as exc:
            problems.append(str(exc))
    for name, decl in spec.inputs.items():
        if name in values:
            continue
        if decl.default is not None:
            values[name] = decl.default
        elif decl.required:
            problems.append(f"missing required input '{name}'" + (f": {decl.description}" if decl.description else ""))
        else:
            values[name] = ""
    if problems:
        raise InputError(f"workflow '{spec.name}': " + "; ".join(problems))
    return values
