"""Workflows: the file format, templates, `when:` conditions, the step graph, validation and loading."""

from .compiler import RunState, compile_workflow, graph_mermaid
from .conditions import check_condition, condition_refs, evaluate_condition
from .graph import (
    critical_path,
    downstream_length,
    find_cycle,
    levels,
    priorities,
    to_mermaid,
    topological_order,
)
from .loader import load_workflow, load_workflows_dir, parse_workflow, spec_from_data
from .spec import InputSpec, RetrySpec, StepSpec, WorkflowConfig, WorkflowSpec
from .templates import NO_ITEM, Ref, render, resolve, template_refs
from .validate import validate_workflow

__all__ = [
    "NO_ITEM",
    "RunState",
    "InputSpec",
    "Ref",
    "RetrySpec",
    "StepSpec",
    "WorkflowConfig",
    "WorkflowSpec",
    "check_condition",
    "compile_workflow",
    "condition_refs",
    "critical_path",
    "downstream_length",
    "evaluate_condition",
    "find_cycle",
    "graph_mermaid",
    "levels",
    "load_workflow",
    "load_workflows_dir",
    "parse_workflow",
    "priorities",
    "render",
    "resolve",
    "spec_from_data",
    "template_refs",
    "to_mermaid",
    "topological_order",
    "validate_workflow",
]
