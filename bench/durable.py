"""Durable execution on PostgreSQL: checkpoint write / restore times, and Chief's per-step cost next to a
bare LangGraph node with `AsyncPostgresSaver`, measured in the same run on the same (fresh) database.

- bare node: a chain of no-op nodes, `AsyncPostgresSaver` on a psycopg pool, durability "sync".
- Chief step: a chain of `echo` steps through `Engine` (in-process bus and worker): ledger rows, events,
  agent messages and the checkpoint, each step's writes in one transaction.
- checkpoint write: `aput` of an execution's real checkpoint; restore: `aget_tuple` of a given checkpoint
  (what a restore reads) and the whole fork (`fork_checkpoint`: read + write into a new thread).

`python -m bench.durable [--quick]`
"""

from __future__ import annotations

import asyncio
import operator
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any, TypedDict

import psycopg
from langgraph.graph import END, START, StateGraph

from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.engine.checkpoints import fork_checkpoint
from chief.core.store import Store, checkpointer_conn_string
from chief.core.workflows import parse_workflow

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class _State(TypedDict):
    results: Annotated[dict, operator.or_]
    log: Annotated[list, operator.add]


def _bare_graph(n: int, saver: Any) -> Any:
    graph = StateGraph(_State)
    for i in range(n):
        def node(state: _State, _i: int = i) -> dict[str, Any]:
            return {"results": {f"s{_i}": f"echo {_i}"}, "log": [_i]}

        graph.add_node(f"s{i}", node)
        graph.add_edge(START if i == 0 else f"s{i - 1}", f"s{i}")
    graph.add_edge(f"s{n - 1}", END)
    return graph.compile(checkpointer=saver)


async def _stock_saver(url: str, stack: AsyncExitStack) -> Any:
    """LangGraph's own AsyncPostgresSaver, as its docs set it up (no retries of ours)."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(checkpointer_conn_string(url), min_size=1, max_size=10, open=False,
                               kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row})
    await pool.open()
    stack.push_async_callback(pool.close)
    saver = AsyncPostgresSaver(pool)
    await saver.setup()
    return saver


def _chain(n: int) -> str:
    lines = ["name: bench-chain", "steps:"]
    for i in range(n):
        dep = f", depends_on: [s{i - 1}]" if i else ""
        lines.append(f"  - {{key: s{i}, agent: echo, prompt: \"step {i}\"{dep}}}")
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


async def _measure(url: str, steps: int, rounds: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="chief-bench-"))
    await (await Store.open(url, migrate=True)).close()
    bare_ms: list[float] = []
    chief_ms: list[float] = []
    write_ms: list[float] = []
    read_ms: list[float] = []
    fork_ms: list[float] = []
    async with AsyncExitStack() as stack:
        saver = await _stock_saver(url, stack)
        bare = _bare_graph(steps, saver)
        engine = await Engine.open(Settings(home=home, database_url=url))
        stack.push_async_callback(engine.close)
        spec = parse_workflow(_chain(steps))
        # warm up both (connections, compiled graphs, caches)
        await bare.ainvoke({"results": {}, "log": []}, {"configurable": {"thread_id": secrets.token_hex(8)}},
                           durability="sync")
        last = await engine.run(spec, {})
        for _ in range(rounds):  # interleaved, so drift on the machine hits both alike
            t0 = time.perf_counter()
            await bare.ainvoke({"results": {}, "log": []}, {"configurable": {"thread_id": secrets.token_hex(8)}},
                               durability="sync")
            bare_ms.append((time.perf_counter() - t0) * 1000 / steps)
            t0 = time.perf_counter()
            last = await engine.run(spec, {})
            chief_ms.append((time.perf_counter() - t0) * 1000 / steps)
            assert last.status == "succeeded", last.error
        checkpoints = await engine.checkpoints(last.id)
        head = await saver.aget_tuple({"configurable": {"thread_id": last.id, "checkpoint_ns": ""}})
        middle = checkpoints[len(checkpoints) // 2].id
        saver = engine.checkpointer  # Chief's own (with its retries) for the checkpoint timings
        for i in range(max(rounds * 10, 30)):
            config = {"configurable": {"thread_id": f"bench-write-{i}", "checkpoint_ns": ""}}
            t0 = time.perf_counter()
            await saver.aput(config, head.checkpoint, head.metadata, head.checkpoint["channel_versions"])
            write_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await saver.aget_tuple({"configurable": {"thread_id": last.id, "checkpoint_ns": "",
                                                     "checkpoint_id": middle}})
            read_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await fork_checkpoint(saver, last.id, middle, f"bench-fork-{i}")
            fork_ms.append((time.perf_counter() - t0) * 1000)
    bare_p50, chief_p50 = _median(bare_ms), _median(chief_ms)
    return {
        "steps": steps, "rounds": rounds,
        "bare_langgraph_node_ms": bare_p50,
        "chief_durable_step_ms": chief_p50,
        "overhead_ms": round(chief_p50 - bare_p50, 3),
        "ratio": round(chief_p50 / bare_p50, 2) if bare_p50 else None,
        "checkpoint_write_ms": _median(write_ms),
        "checkpoint_read_ms": _median(read_ms),
        "restore_fork_ms": _median(fork_ms),
        "checkpoint_values": len(head.checkpoint.get("channel_values", {})),
    }


def run(*, quick: bool = False, admin_url: str = PG_ADMIN) -> dict[str, Any]:
    """Measure on a fresh database (created and dropped here); medians in milliseconds."""
    name = f"chief_bench_{secrets.token_hex(5)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        return asyncio.run(_measure(f"{base}/{name}", steps=30 if quick else 60, rounds=3 if quick else 7))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def report(row: dict[str, Any]) -> None:
    """Print the section."""
    print(f"durable execution on PostgreSQL ({row['steps']}-step chain, median of {row['rounds']} runs)")
    print(f"  bare LangGraph node + AsyncPostgresSaver  {row['bare_langgraph_node_ms']:8.2f} ms/step")
    print(f"  Chief durable step (ledger, events, ckpt) {row['chief_durable_step_ms']:8.2f} ms/step "
          f"(+{row['overhead_ms']:.2f} ms, x{row['ratio']})")
    print(f"  checkpoint write {row['checkpoint_write_ms']:.2f} ms, read at an id {row['checkpoint_read_ms']:.2f} ms, "
          f"restore (fork) {row['restore_fork_ms']:.2f} ms")


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
