"""The chat process's shared parts: one Engine, the chat store, the file store, the Chief-of-Staff.

Opened once at app start-up (`open_runtime`), closed at shutdown. Runs belong to the engine, not to a
chat socket: a session only watches them. Also prepares Chainlit's app folder (config, custom elements)
outside the repository, under CHIEF_HOME, before Chainlit is imported.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.chief import ChiefOfStaff
from ..core.config import Settings
from ..core.engine import Engine
from ..core.errors import ChiefError
from ..core.files import FileStore, Ingestor, limits_from_env
from ..core.store.chat import ChatStore

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

_CONFIG = """# Written by Chief at every start (chief/chat_app/runtime.py); edits here are overwritten.
[project]
user_env = []
session_timeout = 3600
user_session_timeout = 1296000
cache = false
persist_user_env = false
mask_user_env = false
allow_origins = ["*"]

[features]
unsafe_allow_html = false
latex = false
user_message_markdown = true
user_message_autoscroll = true
assistant_message_autoscroll = true
auto_tag_thread = true
edit_message = false
allow_thread_sharing = false
favorites = false

[features.slack]
reaction_on_message_received = false

[features.spontaneous_file_upload]
    enabled = true
    # Every type reaches the server, which refuses what it cannot read with a message that says why.
    accept = ["*/*"]
    max_files = 20
    max_size_mb = {upload_mb}

[features.audio]
    enabled = false
    sample_rate = 24000

[features.mcp]
    enabled = false
    [features.mcp.user_servers]
        enabled = false
        allowed_urls = []

[UI]
name = "Chief"
confirm_new_chat = false
cot = "full"
alert_style = "classic"
logo_file_url = ""
default_avatar_file_url = ""

[meta]
generated_by = "2.12.0"
"""

WELCOME = """# Chief

Ask for something ("Review this change for security and quality") and attach files; the Chief plans a
workflow, shows it, runs it, and shows every step live. Type `/help` for the commands.
"""


def prepare_app_root(settings: Settings | None = None) -> Path:
    """Chainlit's app folder under CHIEF_HOME (config, custom elements); sets CHAINLIT_APP_ROOT.

    Must run before `chainlit` is imported: importing it writes into the app folder.
    """
    settings = settings or Settings()
    root = Path(os.environ.get("CHAINLIT_APP_ROOT") or (settings.home / "chat")).resolve()
    (root / ".chainlit").mkdir(parents=True, exist_ok=True)
    limit_mb = limits_from_env().max_mb
    # Chainlit's own cap sits above ours, so an oversized file reaches us and gets our clear message.
    upload_mb = int(max(limit_mb * 2, limit_mb + 5))
    (root / ".chainlit" / "config.toml").write_text(_CONFIG.replace("{upload_mb}", str(upload_mb)))
    target = root / "public" / "elements"
    target.mkdir(parents=True, exist_ok=True)
    for jsx in (HERE / "public" / "elements").glob("*.jsx"):
        shutil.copyfile(jsx, target / jsx.name)
    # The Readme page of the chat: the repository's chainlit.md when running from a checkout.
    readme = HERE.parents[1] / "chainlit.md"
    (root / "chainlit.md").write_text(readme.read_text() if readme.is_file() else WELCOME)
    os.environ["CHAINLIT_APP_ROOT"] = str(root)
    return root


def auth_secret(settings: Settings | None = None) -> str:
    """CHAINLIT_AUTH_SECRET, or one kept under CHIEF_HOME (made once, readable only by its owner)."""
    if os.environ.get("CHAINLIT_AUTH_SECRET"):
        return os.environ["CHAINLIT_AUTH_SECRET"]
    path = (settings or Settings()).home / "chat-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def auth_enabled() -> bool:
    """Whether the chat asks for a password (`CHIEF_CHAT_AUTH=1`, set by `chief chat`)."""
    return os.environ.get("CHIEF_CHAT_AUTH", "0").lower() in ("1", "true", "yes", "on")


def confirm_plans() -> bool:
    """Whether a plan waits for a "Run" click (`CHIEF_CONFIRM_PLANS=1`)."""
    return os.environ.get("CHIEF_CONFIRM_PLANS", "0").lower() in ("1", "true", "yes", "on")


@dataclass
class ChatRuntime:
    """Everything the chat sessions share; one per process."""

    settings: Settings
    engine: Engine
    chat: ChatStore
    files: FileStore
    ingestor: Ingestor
    chief: ChiefOfStaff
    watchers: dict[str, set[asyncio.Task[Any]]] = field(default_factory=dict)

    @classmethod
    async def open(cls, settings: Settings | None = None, *, registry: Any = None) -> ChatRuntime:
        """Open the engine (store, bus, embedded workers) and the chat's own parts."""
        settings = settings or Settings()
        engine = await Engine.open(settings, registry=registry, workers=1)
        try:  # runs left unfinished by a chat (or CLI) process that died go on here; they are not lost
            await engine.recover()
        except ChiefError:
            log.exception("recovering unfinished executions at start-up failed; `chief recover` retries")
        files = FileStore(settings.home / "files")
        chief = ChiefOfStaff(engine.registry, provider=settings.provider, model=settings.model)
        return cls(settings=settings, engine=engine, chat=ChatStore(engine.store), files=files,
                   ingestor=Ingestor(files, engine.registry.extractors), chief=chief)

    async def close(self) -> None:
        """Stop watching runs and close the engine (runs stay resumable)."""
        for tasks in self.watchers.values():
            for task in tasks:
                task.cancel()
        await self.engine.close()


_runtime: ChatRuntime | None = None


async def open_runtime(settings: Settings | None = None, *, registry: Any = None) -> ChatRuntime:
    """Open the process-wide runtime (once)."""
    global _runtime
    if _runtime is None:
        _runtime = await ChatRuntime.open(settings, registry=registry)
    return _runtime


def get_runtime() -> ChatRuntime:
    """The process-wide runtime; it is opened at app start-up."""
    if _runtime is None:
        raise RuntimeError("the chat runtime is not open (the app's start-up did not run)")
    return _runtime


async def close_runtime() -> None:
    """Close the process-wide runtime."""
    global _runtime
    if _runtime is not None:
        runtime, _runtime = _runtime, None
        await runtime.close()
