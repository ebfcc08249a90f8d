"""Chat latency: from a step's event (its `created_at` in the store) to the socket.io message that shows the
step's new status, measured with the python-socketio client against a real `chief chat` server (embedded
SQLite and worker, the offline provider) started on a free port with its own CHIEF_HOME.

`python -m bench.chat [--quick]`
"""

from __future__ import annotations

import asyncio
import re
import socket
import sqlite3
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import base_env, log_tail, pct, python_args, spawn, stop, workdir

WORKFLOW = "research-report"
STATUS_WORDS = {"step.started": "running", "step.succeeded": "succeeded"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _start_server(home: Path, latency_ms: int, timeout_s: float = 90) -> tuple[Any, str, Path]:
    """`chief chat` on a free port; returns (process, url, log) once /health answers."""
    import httpx

    port = _free_port()
    log = home / "server.log"
    env = base_env(CHIEF_HOME=str(home), CHAINLIT_APP_ROOT=str(home / "chat"),
                   CHIEF_OFFLINE_LATENCY_MS=str(latency_ms))
    proc = spawn(python_args("-m", "chief.cli", "chat", "--port", str(port), "--no-auth"), env=env, log=log,
                 cwd=home)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"chief chat exited with {proc.returncode}:\n{log_tail(log)}")
            try:
                if (await http.get(f"{url}/health", timeout=1)).status_code == 200:
                    return proc, url, log
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)  # polling a starting process: there is no event to wait on
    stop(proc)
    raise RuntimeError(f"chief chat did not answer /health in {timeout_s} s:\n{log_tail(log)}")


class _Client:
    """A socket.io client speaking Chainlit's protocol that records each server event and when it came."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[tuple[float, str, Any]] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Condition()
        self.sio: Any = None

    async def connect(self) -> None:
        import socketio

        self.sio = socketio.AsyncClient()

        async def record(event: str, data: Any = None) -> None:
            self.events.append((time.time(), event, data))
            if event in ("new_message", "update_message") and isinstance(data, dict) and "id" in data:
                self.messages[data["id"]] = {**self.messages.get(data["id"], {}), **data}
            async with self.changed:
                self.changed.notify_all()

        self.sio.on("*", record)
        await self.sio.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"],
                               auth={"clientType": "webapp", "sessionId": str(uuid.uuid4()), "threadId": "",
                                     "userEnv": "{}", "chatProfile": ""})
        await self.sio.emit("connection_successful")

    async def send(self, text: str) -> None:
        message = {"id": str(uuid.uuid4()), "threadId": "", "name": "User", "type": "user_message",
                   "output": text, "createdAt": datetime.now(UTC).isoformat(), "metadata": {}}
        await self.sio.emit("client_message", {"message": message, "fileReferences": []})

    async def wait_for(self, predicate: Any, timeout: float = 60.0) -> None:
        async def check() -> None:
            async with self.changed:
                while not predicate():
                    await self.changed.wait()

        try:
            await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            tail = "\n".join(str(m.get("output"))[:200] for m in list(self.messages.values())[-6:])
            raise RuntimeError(f"the chat did not answer in {timeout} s; last messages:\n{tail}") from None

    def finished_runs(self) -> int:
        pattern = re.compile(rf"Run `\w+` of \*\*{WORKFLOW}\*\* — succeeded")
        return sum(bool(pattern.search(str(m.get("output") or ""))) for m in self.messages.values())


def _delays(db: Path, events: list[tuple[float, str, Any]]) -> tuple[list[float], int]:
    """Seconds from each step event to the first socket message after it showing that step's status."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "select e.type, e.step_key, e.created_at from events e join executions x on x.id = e.execution_id "
            "where x.workflow_name = ? and e.type in ('step.started', 'step.succeeded') order by e.id",
            (WORKFLOW,)).fetchall()
    finally:
        conn.close()
    delays: list[float] = []
    for type_, key, created in rows:
        at = datetime.fromisoformat(created)
        at_s = (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()  # stored as UTC without a zone
        shown = next((t for t, _, data in events
                      if t >= at_s - 0.001 and isinstance(data, dict) and data.get("name") == key
                      and data.get("type") == "tool" and STATUS_WORDS[type_] in str(data.get("output"))[:20]),
                     None)
        if shown is not None:
            delays.append(shown - at_s)
    return delays, len(rows)


async def measure(runs: int, latency_ms: int) -> dict[str, Any]:
    """`runs` runs of the research-report workflow (5 steps, 10 status events each) one after another."""
    with workdir("chat") as home:
        proc, url, log = await _start_server(home, latency_ms)
        client = _Client(url)
        try:
            await client.connect()
            await client.wait_for(lambda: any("I am the Chief" in str(m.get("output")) for m in
                                              client.messages.values()))
            for i in range(runs):
                await client.send(f"/run {WORKFLOW} topic=tides-{i} audience=sailors")
                await client.wait_for(lambda n=i + 1: client.finished_runs() >= n)
            await client.sio.disconnect()
            delays, expected = _delays(home / "chief.db", client.events)
        finally:
            stop(proc)
    if not delays:
        raise RuntimeError(f"no step status was matched to its event:\n{log_tail(log)}")
    ms = [d * 1000 for d in delays]
    return {"runs": runs, "events": expected, "shown": len(delays), "offline_latency_ms": latency_ms,
            "p50_ms": round(statistics.median(ms), 1), "p95_ms": round(pct(ms, 0.95), 1),
            "max_ms": round(max(ms), 1)}


def run(*, quick: bool = False, runs: int | None = None, latency_ms: int = 50) -> dict[str, Any]:
    """The section's results."""
    return asyncio.run(measure(runs or (2 if quick else 10), latency_ms))


def report(results: dict[str, Any]) -> None:
    """Print the section."""
    print(f"chat: step event -> socket.io message showing its status ({results['shown']}/{results['events']} "
          f"status changes over {results['runs']} runs of {WORKFLOW})")
    print(f"  p50 {results['p50_ms']:.1f} ms   p95 {results['p95_ms']:.1f} ms   max {results['max_ms']:.1f} ms")


if __name__ == "__main__":
    report(run(quick="--quick" in sys.argv))
