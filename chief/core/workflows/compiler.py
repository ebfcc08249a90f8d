"""Compile a `WorkflowSpec` into a LangGraph `StateGraph`: structure only.

One node per step; edges from `depends_on` (a step with several dependencies waits for all of them:
LangGraph's multi-source edge is the join). A `for_each` step becomes three nodes: `<key>` evaluates the
list, `<key>#each` runs once per item (fanned out with `Send`), `<key>#gather` collects the results in
order. What a node *does* (ledger, dispatch, approval, events) is the engine's: every node calls the
`StepHooks` found in the run's context, so the graph can be compiled once per workflow and reused.
"""

# No `from __future__ import annotations` here: LangGraph reads each node's type hints, and
# string annotations cost an eval per node (a third of compiling a 1,000-step workflow).

from typing import Annotated, Any, Protocol, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from .spec import WorkflowSpec

EACH = "#each"
GATHER = "#gather"


def merge_dicts(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: later keys win (steps write disjoint keys, so order never matters)."""
    if not left:
        return dict(right or {})
    if not right:
        return left
    return {**left, **right}


def merge_items(left: dict[str, dict[str, Any]] | None, right: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """Reducer for `for_each` partial results: {step: {index: output}} merged per step."""
    out = dict(left or {})
    for key, items in (right or {}).items():
        out[key] = {**out.get(key, {}), **items}
    return out


class RunState(TypedDict, total=False):
    """The graph state of one execution (or sub-workflow)."""

    inputs: dict[str, Any]
    results: Annotated[dict[str, Any], merge_dicts]  # step key -> output (None when skipped)
    statuses: Annotated[dict[str, str], merge_dicts]  # step key -> succeeded | failed | skipped | rejected
    fanout: Annotated[dict[str, list[Any]], merge_dicts]  # for_each step -> its items
    items: Annotated[dict[str, dict[str, Any]], merge_items]  # for_each step -> {index: output}


class StepHooks(Protocol):
    """What the nodes of a compiled workflow call; the engine implements it per run."""

    async def run_step(self, key: str, state: RunState, config: Any) -> dict[str, Any]:
        """Run a plain step (or a sub-workflow step); return the state update."""
        ...

    async def prepare_each(self, key: str, state: RunState) -> dict[str, Any]:
        """Evaluate a for_each step's `when` and list; return the update (with `fanout[key]`)."""
        ...

    async def run_item(self, key: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Run one item of a for_each step; return the update (with `items[key][index]`)."""
        ...

    async def gather_each(self, key: str, state: RunState) -> dict[str, Any]:
        """Collect the items of a for_each step in order; return the update."""
        ...


def entry_node(spec: WorkflowSpec, key: str) -> str:
    """The node where a step starts."""
    return key


def exit_node(spec: WorkflowSpec, key: str) -> str:
    """The node whose completion means the step is done (what dependents wait for)."""
    return key + GATHER if spec.step(key).for_each else key


def _step_node(key: str):
    async def node(state: RunState, runtime: Runtime[StepHooks], config: RunnableConfig) -> dict[str, Any]:
        return await runtime.context.run_step(key, state, config)

    node.__name__ = f"step_{key}"
    return node


def _prepare_node(key: str):
    async def node(state: RunState, runtime: Runtime[StepHooks]) -> dict[str, Any]:
        return await runtime.context.prepare_each(key, state)

    return node


def _item_node(key: str):
    async def node(payload: dict[str, Any], runtime: Runtime[StepHooks]) -> dict[str, Any]:
        return await runtime.context.run_item(key, payload)

    return node


def _gather_node(key: str):
    async def node(state: RunState, runtime: Runtime[StepHooks]) -> dict[str, Any]:
        return await runtime.context.gather_each(key, state)

    return node


def _fan_out(key: str):
    def route(state: RunState) -> list[Send] | str:
        items = (state.get("fanout") or {}).get(key) or []
        if not items:
            return key + GATHER  # nothing to fan out (empty list or skipped): go straight to the gather
        base = {"inputs": state.get("inputs", {}), "results": state.get("results", {}),
                "statuses": state.get("statuses", {})}
        return [Send(key + EACH, {**base, "item": item, "index": i}) for i, item in enumerate(items)]

    return route


def build_graph(spec: WorkflowSpec) -> StateGraph:
    """The (uncompiled) StateGraph of a workflow."""
    graph = StateGraph(RunState, context_schema=StepHooks)
    for step in spec.steps:
        key = step.key
        if step.for_each:
            graph.add_node(key, _prepare_node(key), input_schema=RunState)
            graph.add_node(key + EACH, _item_node(key))
            graph.add_node(key + GATHER, _gather_node(key), input_schema=RunState)
            graph.add_conditional_edges(key, _fan_out(key), [key + EACH, key + GATHER])
            graph.add_edge(key + EACH, key + GATHER)
        else:
            # an explicit input schema spares LangGraph re-reading RunState's hints for every node
            graph.add_node(key, _step_node(key), input_schema=RunState)
    has_dependents: set[str] = set()
    for step in spec.steps:
        sources = [exit_node(spec, dep) for dep in step.depends_on]
        has_dependents.update(step.depends_on)
        if not sources:
            graph.add_edge(START, entry_node(spec, step.key))
        elif len(sources) == 1:
            graph.add_edge(sources[0], entry_node(spec, step.key))
        else:
            graph.add_edge(sources, entry_node(spec, step.key))
    for step in spec.steps:
        if step.key not in has_dependents:
            graph.add_edge(exit_node(spec, step.key), END)
    return graph


def compile_workflow(spec: WorkflowSpec, checkpointer: Any = None) -> Any:
    """Compile a workflow to a runnable LangGraph graph (with `checkpointer`, or none for a sub-graph)."""
    return build_graph(spec).compile(checkpointer=checkpointer, name=spec.name)


def graph_mermaid(spec: WorkflowSpec) -> str:
    """The Mermaid drawing of the compiled graph, as LangGraph draws it."""
    return build_graph(spec).compile().get_graph().draw_mermaid()
