"""Agent metrics from the ledger: what the `Assigner` starts from when an orchestrator opens."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, select

from .models import step_executions
from .store import Store


async def recent_outcomes(store: Store, agents: Sequence[str], per_agent: int) -> list[tuple[str, bool, float | None]]:
    """The last `per_agent` finished steps of each of `agents`, as `(agent, ok, duration_ms)`, oldest first.

    One query for all the agents (a window function numbers each agent's rows, newest first).
    """
    if not agents:
        return []
    t = step_executions
    numbered = (
        select(t.c.agent, t.c.status, t.c.duration_ms, t.c.cached, t.c.id,
               func.row_number().over(partition_by=t.c.agent, order_by=t.c.id.desc()).label("n"))
        .where(t.c.agent.in_(list(agents)), t.c.status.in_(("succeeded", "failed")))
        .subquery()
    )
    stmt = (select(numbered.c.agent, numbered.c.status, numbered.c.duration_ms, numbered.c.cached)
            .where(numbered.c.n <= per_agent).order_by(numbered.c.id))

    def run(conn: Connection) -> list[Any]:
        return list(conn.execute(stmt))

    rows = await store._call("reading recent agent outcomes", run, write=False)
    return [(r.agent, r.status == "succeeded", None if r.cached else r.duration_ms) for r in rows]
