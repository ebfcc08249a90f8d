"""Durable execution on PostgreSQL: Chief's per-step cost next to a bare LangGraph chain with
`AsyncPostgresSaver`, and checkpoint write / read / restore times, in the same run on a fresh database.

- bare: a chain of no-op nodes, LangGraph's own `AsyncPostgresSaver` on a psycopg pool, durability "sync".
- Chief end to end: a chain of `echo` (no-op) steps through `Engine` on the Redis bus, run by a separate
  `chief worker` process: ledger rows, events, agent messages and checkpoints in PostgreSQL.
- Chief in-process (for reference): the same chain on the in-process bus with an embedded worker.
- Per step = a chain's wall time / its steps, median over interleaved rounds (drift hits all three alike).
- checkpoint write: `aput` of an execution's real checkpoint; read: `aget_tuple` at an id; restore: the whole
  fork (`fork_checkpoint`: read + write into a new thread).

`python -m bench.durable [--quick]`
"""

from __future__ import annotations

import asyncio
import operator
import secrets
import statistics
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from chief.core.config import Settings
from chief.core.engine import Engine
from chief.core.engine.checkpoints import fork_checkpoint
from chief.core.store import checkpointer_conn_string
from chief.core.workflows import parse_workflow

from .common import (
    REDIS_URL,
    close_within,
    database,
    delete_keys,
    new_prefix,
    ratio,
    run_async,
    start_workers,
    stop,
    wait_for_workers,
    workdir,
)


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
    """LangGraph's own AsyncPostgresSaver, set up as its docs do (no retries of ours)."""
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


def chain_yaml(n: int, name: str = "bench-chain") -> str:
    """A workflow of `n` chained echo steps."""
    lines = [f"name: {name}", "steps:"]
    for i in range(n):
        dep = f", depends_on: [s{i - 1}]" if i else ""
        lines.append(f"  - {{key: s{i}, agent: echo, prompt: \"step {i} {{{{inputs.tag}}}}\"{dep}}}")
    lines += ["inputs:", "  tag: {type: string, default: x}"]
    return "\n".join(lines)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


async def _timed_bare(bare: Any, steps: int) -> float:
    t0 = time.perf_counter()
    await bare.ainvoke({"results": {}, "log": []}, {"configurable": {"thread_id": secrets.token_hex(8)}},
                       durability="sync")
    return (time.perf_counter() - t0) * 1000 / steps


async def _timed_chief(engine: Engine, spec: Any, steps: int) -> tuple[float, Any]:
    t0 = time.perf_counter()
    record = await engine.run(spec, {"tag": secrets.token_hex(4)})
    elapsed = (time.perf_counter() - t0) * 1000 / steps
    if record.status != "succeeded":
        raise RuntimeError(f"bench chain {record.id} ended {record.status}: {record.error}")
    return elapsed, record


async def _measure(url: str, prefix: str, home: Path, sizes: tuple[int, ...], rounds: int,
                   local: bool) -> dict[str, Any]:
    chains: list[dict[str, Any]] = []
    async with AsyncExitStack() as stack:
        saver = await _stock_saver(url, stack)
        e2e = await Engine.open(Settings(home=home / "e2e", database_url=url, redis_url=REDIS_URL,
                                         redis_prefix=prefix, embedded_workers=0, cache_ttl_s=0), workers=0)
        stack.push_async_callback(close_within, e2e.close(), "the end-to-end engine")
        inproc = None
        if local:
            inproc = await Engine.open(Settings(home=home / "local", database_url=url, redis_url=None,
                                                cache_ttl_s=0))
            stack.push_async_callback(close_within, inproc.close(), "the in-process engine")
        last = None
        for steps in sizes:
            bare = _bare_graph(steps, saver)
            spec = parse_workflow(chain_yaml(steps))
            await _timed_bare(bare, steps)  # warm up (connections, compiled graphs, caches)
            await _timed_chief(e2e, spec, steps)
            if inproc is not None:
                await _timed_chief(inproc, spec, steps)
            bare_ms: list[float] = []
            e2e_ms: list[float] = []
            local_ms: list[float] = []
            for _ in range(rounds):  # interleaved, so drift on the machine hits all alike
                bare_ms.append(await _timed_bare(bare, steps))
                ms, last = await _timed_chief(e2e, spec, steps)
                e2e_ms.append(ms)
                if inproc is not None:
                    local_ms.append((await _timed_chief(inproc, spec, steps))[0])
            row = {"steps": steps, "rounds": rounds, "bare_ms": _median(bare_ms), "chief_e2e_ms": _median(e2e_ms)}
            row["ratio_e2e"] = ratio(row["chief_e2e_ms"], row["bare_ms"])
            if local_ms:
                row["chief_inprocess_ms"] = _median(local_ms)
                row["ratio_inprocess"] = ratio(row["chief_inprocess_ms"], row["bare_ms"])
            chains.append(row)
        assert last is not None
        checkpoints = await e2e.checkpoints(last.id)
        head = await saver.aget_tuple({"configurable": {"thread_id": last.id, "checkpoint_ns": ""}})
        middle = checkpoints[len(checkpoints) // 2].id
        ours = e2e.checkpointer  # Chief's own (with its retries) for the checkpoint timings
        write_ms: list[float] = []
        read_ms: list[float] = []
        fork_ms: list[float] = []
        for i in range(max(rounds * 10, 30)):
            config = {"configurable": {"thread_id": f"bench-write-{i}", "checkpoint_ns": ""}}
            t0 = time.perf_counter()
            await ours.aput(config, head.checkpoint, head.metadata, head.checkpoint["channel_versions"])
            write_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await ours.aget_tuple({"configurable": {"thread_id": last.id, "checkpoint_ns": "",
                                                    "checkpoint_id": middle}})
            read_ms.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            await fork_checkpoint(ours, last.id, middle, f"bench-fork-{i}")
            fork_ms.append((time.perf_counter() - t0) * 1000)
    return {"chains": chains, "checkpoint_write_ms": _median(write_ms), "checkpoint_read_ms": _median(read_ms),
            "restore_fork_ms": _median(fork_ms), "checkpoint_steps": sizes[-1]}


def run(*, quick: bool = False, sizes: tuple[int, ...] = (10, 50), rounds: int | None = None,
        local: bool = True) -> dict[str, Any]:
    """Measure on a fresh database and Redis prefix (both removed afterwards); medians in milliseconds."""
    rounds = rounds or (3 if quick else 15)
    prefix = new_prefix("durable")
    with workdir("durable") as home, database() as url:
        workers = start_workers(1, db_url=url, prefix=prefix, home=home)
        try:
            async def go() -> dict[str, Any]:
                await wait_for_workers(workers, prefix)
                return await _measure(url, prefix, home, sizes, rounds, local)

            return run_async(go())
        finally:
            for proc, _ in workers:
                stop(proc)
            asyncio.run(delete_keys(prefix))


def report(results: dict[str, Any]) -> None:
    """Print the section."""
    print("durable step on PostgreSQL (chain of no-op steps, per step = chain time / steps, median)")
    for row in results["chains"]:
        print(f"  {row['steps']:>3} steps  bare LangGraph + AsyncPostgresSaver {row['bare_ms']:7.2f} ms/step   "
              f"Chief end to end (Redis, worker process) {row['chief_e2e_ms']:7.2f} ms/step (x{row['ratio_e2e']})")
        if "chief_inprocess_ms" in row:
            print(f"{'':14}Chief in-process bus + embedded worker {row['chief_inprocess_ms']:7.2f} ms/step "
                  f"(x{row['ratio_inprocess']})")
    print(f"  checkpoint write {results['checkpoint_write_ms']:.2f} ms, read at an id "
          f"{results['checkpoint_read_ms']:.2f} ms, restore (fork) {results['restore_fork_ms']:.2f} ms "
          f"({results['checkpoint_steps']}-step execution)")


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
