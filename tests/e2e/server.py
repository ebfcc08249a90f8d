"""Start `chief chat` as a subprocess on a free port (own CHIEF_HOME), and a socket.io client for it."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import socketio

REPO = Path(__file__).resolve().parents[2]
# A workflow with one step that waits for a person (attached as a file in the chat tests).
APPROVAL_FLOW = """name: approve-demo
description: a draft a person approves before it is final
steps:
  - key: draft
    agent: assistant
    prompt: "Draft a short note"
  - key: publish
    agent: assistant
    approval: true
    prompt: "Publish: {{draft.result}}"
    depends_on: [draft]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ChatServer:
    """A running `chief chat` subprocess."""

    home: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_server(home: Path, *, auth: bool = False, env: dict[str, str] | None = None,
                 timeout_s: float = 60.0) -> ChatServer:
    """Start the chat on a free port and wait until /health answers."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in ("CI", "CHIEF_DATABASE_URL", "CHIEF_REDIS_URL")}
    full_env.update({"CHIEF_HOME": str(home), "CHAINLIT_APP_ROOT": str(home / "chat"),
                     "CHIEF_OFFLINE_LATENCY_MS": "0", "PYTHONUNBUFFERED": "1"})
    full_env.update(env or {})
    log = home / "server.log"
    args = [sys.executable, "-m", "chief.cli", "chat", "--port", str(port), "--auth" if auth else "--no-auth"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=str(home), env=full_env, stdout=out, stderr=subprocess.STDOUT)
    server = ChatServer(home=home, port=port, proc=proc, log=log)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chief chat exited with {proc.returncode}:\n{server.log_text()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling a starting process: there is no event to wait on
    server.stop()
    raise RuntimeError(f"chief chat did not answer /health in {timeout_s} s:\n{server.log_text()}")


def add_user(home: Path, name: str, password: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "CHIEF_DATABASE_URL")}
    env["CHIEF_HOME"] = str(home)
    subprocess.run([sys.executable, "-m", "chief.cli", "user", "add", name, "--password-stdin"], input=password.encode(),
                   cwd=str(home), env=env, check=True, capture_output=True)


@dataclass
class ChatClient:
    """A socket.io client speaking Chainlit's protocol; records every server event."""

    url: str
    cookie: str | None = None
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    thread_id: str = ""
    events: list[tuple[str, Any]] = field(default_factory=list)
    received: list[float] = field(default_factory=list)  # wall-clock time each event arrived
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    _changed: asyncio.Condition | None = None
    sio: socketio.AsyncClient | None = None
    by_type: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))

    async def connect(self) -> None:
        self._changed = asyncio.Condition()
        self.sio = socketio.AsyncClient()

        async def record(event: str, data: Any = None) -> None:
            self.events.append((event, data))
            self.received.append(time.time())
            self.by_type[event].append(data)
            if event in ("new_message", "update_message") and isinstance(data, dict) and "id" in data:
                self.steps[data["id"]] = {**self.steps.get(data["id"], {}), **data}
            assert self._changed is not None
            async with self._changed:
                self._changed.notify_all()

        self.sio.on("*", record)
        headers = {"Cookie": self.cookie} if self.cookie else {}
        await self.sio.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"], headers=headers,
                               auth={"clientType": "webapp", "sessionId": self.session_id, "threadId": self.thread_id,
                                     "userEnv": "{}", "chatProfile": ""})
        await self.sio.emit("connection_successful")

    async def close(self) -> None:
        if self.sio is not None:
            await self.sio.disconnect()

    async def upload(self, name: str, data: bytes, mime: str = "application/octet-stream") -> dict[str, Any]:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{self.url}/project/file", params={"session_id": self.session_id},
                                files={"file": (name, data, mime)}, headers=headers, timeout=30)
        r.raise_for_status()
        return r.json()

    async def send(self, text: str, files: list[dict[str, Any]] | None = None) -> None:
        assert self.sio is not None
        message = {"id": str(uuid.uuid4()), "threadId": self.thread_id, "name": "User", "type": "user_message",
                   "output": text, "createdAt": datetime.now(UTC).isoformat(), "metadata": {}}
        await self.sio.emit("client_message", {"message": message,
                                               "fileReferences": [{"id": f["id"]} for f in files or []]})

    async def action(self, action: dict[str, Any]) -> Any:
        """Click a button (Chainlit runs action callbacks over HTTP)."""
        headers = {"Cookie": self.cookie} if self.cookie else {}
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{self.url}/project/action", json={"sessionId": self.session_id, "action": action},
                                headers=headers, timeout=60)
        r.raise_for_status()
        return r.json()

    def texts(self) -> list[str]:
        return [str(s.get("output") or "") for s in self.steps.values()]

    def actions(self) -> list[dict[str, Any]]:
        removed = {a["id"] for a in self.by_type.get("remove_action", [])}
        return [a for a in self.by_type.get("action", []) if a["id"] not in removed]

    async def wait_for(self, predicate: Any, timeout: float = 30.0) -> Any:
        """Wait until `predicate(self)` is truthy (re-checked at each server event)."""
        assert self._changed is not None

        async def check() -> Any:
            async with self._changed:
                while not (result := predicate(self)):
                    await self._changed.wait()
                return result

        try:
            return await asyncio.wait_for(check(), timeout)
        except TimeoutError:
            tail = "\n".join(t[:200] for t in self.texts()[-8:])
            raise AssertionError(f"timed out waiting; last messages:\n{tail}") from None

    def has_text(self, needle: str) -> bool:
        return any(needle in t for t in self.texts())
