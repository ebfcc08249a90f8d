"""Recovery: find executions left unfinished by an orchestrator that died, and continue them.

An execution is continued from its last LangGraph checkpoint (one thread per execution). The node that
was running when the process died runs again, but looks in the ledger first: a step whose result was
recorded (by this process before it died, or by a worker meanwhile) is never dispatched again.

Two orchestrators never drive one execution: continuing takes the execution's lease (an atomic
conditional UPDATE). A lease whose holder is gone is taken over once it expires — or at once when the
holder was a process on this machine that no longer exists.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ExecutionNotFound, InvalidTransition
from ..messages import Event, EventType
from ..store import ExecutionRecord

if TYPE_CHECKING:
    from .engine import Engine

log = logging.getLogger(__name__)

# What an orchestrator leaves behind when it dies: it was driving these.
UNFINISHED_STATUSES = ("pending", "running", "pausing")


@dataclass(frozen=True)
class Recovery:
    """What recovery did with one execution: `outcome` is resumed, started, paused or skipped."""

    execution_id: str
    workflow: str
    outcome: str
    detail: str = ""


def _now() -> datetime:
    return datetime.now(UTC)


def owner_is_gone(owner: str | None) -> bool:
    """True if `owner` (an engine id `engine-<host>-<pid>-<suffix>`) names a process of this machine that is gone.

    Only a local process can be checked; for another machine's the lease has to expire.
    """
    if not owner or not owner.startswith("engine-"):
        return False
    rest = owner[len("engine-"):]
    host = socket.gethostname()
    if not rest.startswith(host + "-"):
        return False
    pid_text = rest[len(host) + 1:].split("-", 1)[0]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's live process
        return False
    try:  # a zombie (killed, not yet reaped by its parent) is gone too
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


async def find_unfinished(engine: Engine, execution_ids: Sequence[str] | None = None) -> list[ExecutionRecord]:
    """Executions that were being driven and did not finish (oldest first), or the named ones."""
    store = engine.store
    if execution_ids is None:
        rows = await store.list_executions(status=list(UNFINISHED_STATUSES), limit=100_000)
        return sorted(rows, key=lambda r: (r.created_at, r.id))
    found = []
    for ref in execution_ids:
        record = await store.get_execution(ref)
        if record is None:
            raise ExecutionNotFound(f"no execution '{ref}'")
        found.append(record)
    return found


async def recover(engine: Engine, execution_ids: Sequence[str] | None = None) -> list[Recovery]:
    """Continue every unfinished execution (or the named ones) that no live process drives."""
    out = []
    for record in await find_unfinished(engine, execution_ids):
        try:
            out.append(await _recover_one(engine, record, named=execution_ids is not None))
        except InvalidTransition as exc:  # another process took it first
            out.append(Recovery(record.id, record.workflow_name, "skipped", str(exc)))
    return out


async def _recover_one(engine: Engine, record: ExecutionRecord, *, named: bool) -> Recovery:
    name = record.workflow_name
    if record.id in engine._runs:
        return Recovery(record.id, name, "skipped", "already driven by this process")
    if record.status not in UNFINISHED_STATUSES:
        if named and record.status == "paused":
            return Recovery(record.id, name, "skipped", f"paused: continue with `chief workflow resume {record.id}`")
        return Recovery(record.id, name, "skipped", f"{record.status}: nothing to recover")
    held = bool(record.owner and record.owner != engine.owner and record.lease_until and record.lease_until > _now())
    if held:
        if not owner_is_gone(record.owner):
            return Recovery(record.id, name, "skipped", f"driven by {record.owner} (lease until "
                                                         f"{record.lease_until:%H:%M:%S} UTC)")
        from .engine import LEASE_TTL_S

        if not await engine.store.take_over_lease(record.id, record.owner or "", engine.owner, LEASE_TTL_S):
            return Recovery(record.id, name, "skipped", "another process took it over first")
    spec = await engine._spec_of(record)
    if record.status == "pausing":
        # It was asked to pause when its orchestrator died: finish the pause rather than run on.
        if not await engine.store.acquire_lease(record.id, engine.owner, 1.0):
            return Recovery(record.id, name, "skipped", "another process took it over first")
        await engine.sink.emit([Event(execution_id=record.id, type=EventType.EXECUTION_PAUSED,
                                      data={"reason": "its orchestrator stopped while pausing"})],
                               execution={"id": record.id, "status": "paused", "control": None})
        await engine.store.release_lease(record.id, engine.owner)
        return Recovery(record.id, name, "paused", f"was pausing; continue with `chief workflow resume {record.id}`")
    config = {"configurable": {"thread_id": record.id, "checkpoint_ns": ""}}
    if await engine.checkpointer.aget_tuple(config) is None:
        # Died before the first checkpoint: start from the recorded inputs (the ledger still applies).
        graph_input: Any = {"inputs": dict(record.inputs), "results": {}, "statuses": {}}
        await engine._launch(record.id, spec, graph_input, resumed=False, settings=record.settings)
        return Recovery(record.id, name, "started", "no checkpoint yet: started from its inputs")
    await engine._launch(record.id, spec, None, resumed=True, settings=record.settings)
    return Recovery(record.id, name, "resumed", f"from its last checkpoint (was {record.status}, "
                                                 f"owner {record.owner or 'none'})")


def describe(recoveries: Sequence[Recovery]) -> str:
    """One line per recovery, for logs and the CLI."""
    if not recoveries:
        return "no unfinished executions"
    return "\n".join(f"{r.execution_id} {r.workflow}: {r.outcome}" + (f" ({r.detail})" if r.detail else "")
                     for r in recoveries)


__all__ = ["UNFINISHED_STATUSES", "Recovery", "describe", "find_unfinished", "owner_is_gone",
           "recover"]
