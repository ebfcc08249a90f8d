"""A scripted local HTTP server (stdlib, in a thread) that stands in for a provider's API in tests.

Each request takes the next scripted `Reply` (or, with a `responder`, the reply it computes from the
request; else the default one) and is recorded with its method, path, headers and JSON body. A reply can be JSON, raw text, a list of server-sent
events, or a hang (the handler waits until the test ends, so the client's timeout fires).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    json: Any = None
    text: str | None = None
    events: list[str] | None = None  # SSE: each item is one event block ("data: {...}" or "event: x\ndata: ...")
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # alone: never answer; with `events`: send them, then stall mid-stream


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class StubServer:
    """`with StubServer() as server:` -> `server.url`; script with `server.replies.append(Reply(...))`."""

    def __init__(self, default: Reply | None = None, responder: Callable[[Seen], Reply] | None = None) -> None:
        self.replies: deque[Reply] = deque()
        self.responder = responder  # answers by what was asked (a planner call vs an agent's), when no reply is queued
        self.default = default or Reply(status=500, json={"error": {"message": "no scripted reply"}})
        self.seen: list[Seen] = []
        self.release = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                stub.seen.append(seen)
                if stub.replies:
                    reply = stub.replies.popleft()
                else:
                    reply = stub.responder(seen) if stub.responder is not None else stub.default
                if reply.hang and reply.events is None:  # never answer
                    stub.release.wait(30)
                    return
                if reply.events is not None:
                    payload = "".join(f"{e}\n\n" for e in reply.events).encode()
                    ctype = "text/event-stream"
                elif reply.text is not None:
                    payload, ctype = reply.text.encode(), "application/json"
                else:
                    payload, ctype = json.dumps(reply.json).encode(), "application/json"
                self.send_response(reply.status)
                self.send_header("content-type", ctype)
                # events + hang: promise more than is sent, so the client waits mid-stream
                self.send_header("content-length", str(len(payload) + (1000 if reply.hang else 0)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
                if reply.hang:
                    self.wfile.flush()
                    stub.release.wait(30)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def openai_chunk(text: str | None = None, *, usage: dict[str, int] | None = None, model: str = "stub") -> str:
    """One server-sent event of an OpenAI chat completions stream."""
    data: dict[str, Any] = {"object": "chat.completion.chunk", "model": model,
                            "choices": [] if text is None else [{"index": 0, "delta": {"content": text}}]}
    if usage is not None:
        data["usage"] = usage
    return "data: " + json.dumps(data)


def openai_reply(text: str, *, model: str = "stub", stream: bool = False, pieces: int = 4,
                 usage: tuple[int, int] = (20, 10)) -> Reply:
    """An OpenAI-style answer with `text`: one JSON body, or (stream) the text in `pieces` SSE chunks + usage."""
    counts = {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}
    if not stream:
        return Reply(json={"object": "chat.completion", "model": model, "usage": counts,
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}]})
    words = text.split(" ")
    size = max(len(words) // max(pieces, 1), 1)
    parts = [" ".join(words[i:i + size]) for i in range(0, len(words), size)]
    chunks = [openai_chunk(part if i == 0 else " " + part, model=model) for i, part in enumerate(parts)]
    return Reply(events=[*chunks, openai_chunk(usage=counts, model=model), "data: [DONE]"])
